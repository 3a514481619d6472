"""`python -m search …` (console script `focalnet-search`).

Imports of modules that load torch, MLflow or the dataset code stay inside the commands that need them:
this module is imported before `main` sets ``OMP_WAIT_POLICY`` (torch reads it when it loads), and the
finished-study fast path of `run` must answer without loading either.

Bad input of any kind (spec, data, storage, arguments, configs) exits with code 2 and one line naming
the field and what is allowed. Ctrl-C exits 130 after one line. Storage and tracking URLs (which may hold
a password) can come from the environment (`FS_STORAGE`, `FS_TRACKING_URI`) or a file readable only by
its owner (`FS_STORAGE_FILE`), so they never appear on a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from search.efficiency.table import TableError, read_table
from search.report.finished import finished_line, finished_study, read_raw_spec
from search.report.plots import pareto_table
from search.report.publish import write_report_files
from search.report.records import study_records
from search.report.text import report_text
from search.storage.connect import DEFAULT_STORAGE, NoStorage, StorageError, load_stored_study, make_storage
from search.storage.faults import StorageOutage
from search.study.threads import choose_threads, passive_openmp
from search.task.errors import DataError
from search.tracking.params import redact_url
from search.tracking.store import default_tracking_uri

__all__ = ["main"]

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from search.spec.parse import SpecError

    types: tuple[type[BaseException], ...] = (SpecError, StorageError, DataError, TableError)
    # Only a command that imported `reproduce` can raise its error; importing it here for every other
    # error would cost matplotlib's import (~0.8 s) on the way out.
    reproduce = sys.modules.get("search.tools.reproduce")
    return types + ((reproduce.ReproduceError,) if reproduce is not None else ())


def storage_url(args: argparse.Namespace, spec: Any = None) -> str | None:
    """--storage, else $FS_STORAGE, else the file named by $FS_STORAGE_FILE (mode 0600), else the spec's."""
    if args.storage is not None:
        return args.storage
    if os.environ.get("FS_STORAGE"):
        return os.environ["FS_STORAGE"]
    path = os.environ.get("FS_STORAGE_FILE")
    if path:
        p = Path(path)
        try:
            mode = p.stat().st_mode
            url = (p.read_text().strip().splitlines() or [""])[0].strip()
        except OSError as e:
            raise_bad("FS_STORAGE_FILE", f"{path}: {e.strerror}")
        if mode & 0o077:
            raise_bad(
                "FS_STORAGE_FILE", f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
            )
        return url
    return spec.storage if spec is not None else None


def tracking_uri(args: argparse.Namespace, spec: Any = None) -> str | None:
    """--tracking-uri, else $FS_TRACKING_URI, else the spec's (None: the default local store)."""
    return args.tracking_uri or os.environ.get("FS_TRACKING_URI") or (spec.tracking_uri if spec else None)


def _threads(args: argparse.Namespace) -> int:
    raw = args.threads if args.threads is not None else os.environ.get("FS_THREADS") or 0
    try:
        threads = int(raw)
    except ValueError:
        raise_bad("FS_THREADS", f"must be an integer, got {raw!r}")
    if threads < 0:
        raise_bad("--threads", f"must be >= 0 (0 = choose), got {threads}")
    return threads


def _load_spec(path: str) -> Any:
    from search.spec.parse import load_spec

    return load_spec(path)


def cmd_inspect(args: argparse.Namespace) -> int:
    from search.tools.modulators import inspect_study

    args.storage, args.tracking_uri = storage_url(args), tracking_uri(args)
    return inspect_study(args)


def cmd_run(args: argparse.Namespace) -> int:

    if args.jobs is not None and args.jobs < 1:
        raise_bad("--jobs", f"must be >= 1, got {args.jobs}")
    if args.n_trials is not None and args.n_trials < 1:
        raise_bad("--n-trials", f"must be >= 1, got {args.n_trials}")
    raw = read_raw_spec(args.spec)
    study_table = (raw or {}).get("study") or {}
    n_trials = args.n_trials if args.n_trials is not None else study_table.get("n_trials")
    tracking = args.tracking_uri or study_table.get("tracking_uri") or ""
    done = finished_study(
        raw,
        storage_url=args.storage if args.storage is not None else str(study_table.get("storage", "")),
        n_trials=n_trials if isinstance(n_trials, int) and n_trials >= 1 else None,
        tracking=tracking != "none",
    )
    if done is not None and not args.report:  # nothing to run: no torch, dataset or MLflow (seconds each)
        print(finished_line(done, n_trials))
        return 0

    spec = _load_spec(args.spec)  # before importing the runner: a bad spec exits without torch's import
    from search.study.run import run_study

    study = run_study(
        spec,
        n_trials=args.n_trials,
        jobs=args.jobs or spec.jobs,
        storage_url=storage_url(args, spec),
        tracking_uri=tracking_uri(args, spec),
        allow_changed_spec=args.allow_changed_spec,
        progress=not args.no_progress,
        threads=_threads(args),
    )
    if args.report:
        print(report_text(study, spec))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from search.spec.schema import SAMPLERS, STOPPING_RULES
    from search.tools.simulate import DEFAULT_TABLE, simulate

    spec = _load_spec(args.spec)
    for name in ("seeds", "workers", "threads", "n_trials"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise_bad(f"--{name.replace('_', '-')}", f"must be >= 1, got {getattr(args, name)}")
    samplers = tuple(args.samplers.split(","))
    stoppings = tuple(args.stopping.split(",")) if args.stopping else None
    for s in samplers:
        if s not in SAMPLERS:
            raise_bad("--samplers", f"unknown sampler {s!r}; allowed: {', '.join(SAMPLERS)}")
    for s in stoppings or ():
        if s not in ("none", *STOPPING_RULES):
            raise_bad("--stopping", f"unknown rule {s!r}; allowed: none, {', '.join(STOPPING_RULES)}")
    warm = {"both": (False, True), "on": (True,), "off": (False,), None: None}[args.warm]
    if warm is not None and True in warm and not spec.warm_start:
        raise_bad("--warm", "the spec has no study.warm_start table; allowed without it: off")
    timeout_s = (
        -1.0 if args.timeout_min is None else (None if args.timeout_min == 0 else args.timeout_min * 60)
    )
    lines = simulate(
        spec,
        read_table(args.table or DEFAULT_TABLE),
        seeds=args.seeds,
        workers=args.workers,
        threads=args.threads,
        out_dir=args.out,
        n_trials=args.n_trials,
        timeout_s=timeout_s,
        samplers=samplers,
        stoppings=stoppings,
        warm=warm,
        clock=args.clock,
        draws=args.draws,
        clock_factor=args.clock_factor,
    )
    print("\n".join(lines))
    print(
        f"wrote {Path(args.out) / 'simulate.csv'}, simulate_trials.csv, simulate_summary.json, simulate.png"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from search.tools.plan import plan

    if args.draws < 1:
        raise_bad("--draws", f"must be >= 1, got {args.draws}")
    if args.jobs is not None and args.jobs < 1:
        raise_bad("--jobs", f"must be >= 1, got {args.jobs}")
    print("\n".join(plan(_load_spec(args.spec), draws=args.draws, workers=args.jobs)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from search.study.workers import run_worker

    spec = _load_spec(args.spec)
    threads, _ = choose_threads(requested=_threads(args) or int(spec.train.get("threads") or 0))
    # The study's budget and timeout bound its search; queued trials (the seed check) just run.
    search = not args.queued_only
    run_worker(
        spec,
        storage_url=storage_url(args, spec),
        tracking_uri=tracking_uri(args, spec) or default_tracking_uri(),
        n_trials=args.n_trials if args.n_trials is not None else (spec.n_trials if search else None),
        timeout_s=args.timeout_s if args.timeout_s is not None else (spec.timeout_s if search else None),
        threads=threads,
        progress=not args.no_progress,
        allow_changed_spec=args.allow_changed_spec,
        queued_only=args.queued_only,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:

    study, spec = load_stored_study(args.name, storage_url(args))
    if spec.ablation:
        from search.report.ablation import ablation_report

        text, _ = ablation_report(study, spec, csv_path=args.csv)
        print(text)
    else:
        print(report_text(study, spec))
        if args.csv:
            pareto_table(study_records(study, spec), Path(args.csv))
    if args.out:
        files, _, _ = write_report_files(study, spec, Path(args.out), importances=False)
        print(f"wrote {len(files)} files to {args.out}: {', '.join(f.name for f in files)}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from search.tools.reproduce import reproduce

    study, spec = load_stored_study(args.name, storage_url(args))
    return reproduce(
        study,
        spec,
        trial=args.trial,
        pick=args.pick,
        seeds=args.seeds,
        out_dir=args.out,
        tracking_uri=tracking_uri(args),
        tolerance=args.tolerance,
        progress=not args.no_progress,
    )


def cmd_list(args: argparse.Namespace) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(args) or DEFAULT_STORAGE
    try:
        storage = make_storage(url, heartbeat=False, read_only=True)
    except NoStorage:
        print(f"no studies in {redact_url(url)}")
        return 0
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        print("no studies")
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        kind = "ablation" if (study.user_attrs.get("spec_raw") or {}).get("ablation") else "search"
        print(
            f"{s.study_name:<32} {kind:<9} " + " ".join(f"{k.lower()}={v}" for k, v in sorted(counts.items()))
        )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from search.tools.ui import serve_ui

    uri = tracking_uri(args)
    if args.name and uri is None:
        _, spec = load_stored_study(args.name, storage_url(args))
        uri = spec.tracking_uri
    uri = uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"the study logs to a tracking server: open {uri}")
        return 0
    return serve_ui(uri=uri, name=args.name, host=args.host, port=args.port)


def cmd_train(args: argparse.Namespace) -> int:
    """One training run from run.json (keys in the README); relative data paths resolve against its folder."""
    from search.task.data import load_data_config
    from search.task.train import train

    path = Path(args.config)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise_bad("--config", f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise_bad("--config", f"{path}: cannot read ({e})")
    except json.JSONDecodeError as e:
        raise_bad("--config", f"{path}: invalid JSON at line {e.lineno}: {e.msg}")
    if not isinstance(cfg, dict):
        raise_bad(f"{path}", f"expected a JSON object with model, train, data; got {type(cfg).__name__}")
    unknown = set(cfg) - {"model", "train", "data"}
    if unknown:
        raise_bad(f"{path}: {sorted(unknown)[0]}", "unknown top-level key; allowed: model, train, data")
    model_cfg, train_cfg, data_cfg = _validate_run_config(cfg, path)
    data = load_data_config(data_cfg, base_dir=path.parent)
    if data_cfg.get("hash") and data_cfg["hash"] != data.data_hash:
        raise_bad(
            f"{path}: data.hash",
            f"the dataset now hashes to {data.data_hash[:12]}, the config says {str(data_cfg['hash'])[:12]}",
        )
    model_cfg = _model_for_data(model_cfg, cfg.get("model", {}), data, path)
    result = train(model_cfg, train_cfg, data, progress=not args.no_progress)
    out = {
        "val": result.val,
        "test": result.test,
        "steps": result.steps_done,
        "wall_s": result.wall_s,
        "data_hash": data.data_hash,
        "config": {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "data": data_cfg},
    }
    print(json.dumps({"val": result.val, "test": result.test, "wall_s": round(result.wall_s, 2)}, indent=1))
    if args.out:
        import torch

        from search.task.gallery import model_gallery

        outdir = Path(args.out)
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "metrics.json").write_text(json.dumps(out, indent=1))
        torch.save(result.state_dict, outdir / "model.pt")
        from focalnet import build_model

        model = build_model(model_cfg)
        model.load_state_dict(result.state_dict)
        model_gallery(model, data, outdir / "gallery.png")
        print(f"wrote {outdir}/metrics.json, model.pt, gallery.png")
    return 0


def _validate_run_config(cfg: dict[str, Any], path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(ModelConfig, TrainConfig, completed data config) of a run.json; any problem exits 2 naming the key."""
    from focalnet import ModelConfig
    from search.task.data import DataConfigError, data_config
    from search.task.train_config import TrainConfig

    for key in ("model", "train", "data"):
        if not isinstance(cfg.get(key, {}), dict):
            raise_bad(f"{path}: {key}", f"expected an object, got {type(cfg[key]).__name__}")
    try:
        model_cfg = ModelConfig.from_dict(cfg.get("model", {}))
    except (ValueError, TypeError) as e:
        raise_bad(f"{path}: model", str(e))
    try:
        train_cfg = TrainConfig.from_dict(cfg.get("train", {}))
    except (ValueError, TypeError) as e:
        raise_bad(f"{path}: train", str(e))
    raw = dict(cfg.get("data", {}))
    stored_hash = raw.pop("hash", None)  # a trial's stored config carries the hash of the data it used
    if stored_hash is not None and not isinstance(stored_hash, str):
        raise_bad(f"{path}: data.hash", f"expected a string, got {stored_hash!r}")
    try:
        data_cfg = data_config(raw)
    except DataConfigError as e:
        raise_bad(f"{path}: data.{e.key}", e.problem)
    if stored_hash:
        data_cfg["hash"] = stored_hash
    return model_cfg, train_cfg, data_cfg


def _model_for_data(model_cfg: Any, model_raw: dict[str, Any], data: Any, path: Path) -> Any:
    """The dataset decides K when run.json leaves model.num_keypoints out; a different K is refused."""
    import dataclasses

    k = data.num_keypoints
    if "num_keypoints" not in model_raw:
        return dataclasses.replace(model_cfg, num_keypoints=k)
    if model_cfg.num_keypoints != k:
        raise_bad(
            f"{path}: model.num_keypoints",
            f"{model_cfg.num_keypoints}, but the dataset has {k} joints; leave it out to take K from the data",
        )
    return model_cfg


class BadInput(Exception):
    pass


def raise_bad(field: str, message: str) -> None:
    raise BadInput(f"{field}: {message}")


def _storage_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: journal:PATH (default journal:mlruns/optuna.journal) or postgresql://…; "
        "with a password, prefer $FS_STORAGE or $FS_STORAGE_FILE (a command line is visible in ps)",
    )
    q.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default $FS_TRACKING_URI, else sqlite:///mlruns/mlflow.db; 'none' = no logging)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m search", description="FocalNet architecture search and ablation harness")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_commands(sub)
    _add_simulate_command(sub)
    _add_result_commands(sub)
    return p


def _add_run_commands(sub: Any) -> None:
    """``run``, ``worker`` and ``plan``: start, join or preview a study."""
    q = sub.add_parser("run", help="create or continue a study (search or ablation)")
    q.add_argument("spec")
    q.add_argument("--n-trials", type=int, default=None)
    q.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes on this machine (default: the spec's study.jobs, else 1; threads = cores / jobs)",
    )
    q.add_argument("--allow-changed-spec", action="store_true")
    q.add_argument("--report", action="store_true", help="print the report at the end")
    q.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: free cores / jobs)"
    )
    q.add_argument("--no-progress", action="store_true")
    _storage_flags(q)
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("worker", help="join a study as one worker (any machine that reaches the storage)")
    q.add_argument("spec")
    q.add_argument("--n-trials", type=int, default=None)
    q.add_argument("--timeout-s", type=float, default=None)
    q.add_argument("--threads", type=int, default=None, help="torch threads (default: free cores)")
    q.add_argument("--allow-changed-spec", action="store_true")
    q.add_argument(
        "--queued-only", action="store_true", help="run only queued trials (the seed check), then exit"
    )
    q.add_argument("--no-progress", action="store_true")
    _storage_flags(q)
    q.set_defaults(func=cmd_worker)

    q = sub.add_parser(
        "plan", help="dry run: the space, trainable share, seconds per trial, what fits (writes nothing)"
    )
    q.add_argument("spec")
    q.add_argument("--draws", type=int, default=100, help="random draws for the trainable share")
    q.add_argument("--jobs", type=int, default=None, help="workers (default: the spec's study.jobs)")
    q.set_defaults(func=cmd_plan)


def _add_simulate_command(sub: Any) -> None:
    q = sub.add_parser("simulate", help="replay studies against a learning-curve table (simulated clock)")
    q.add_argument("spec")
    q.add_argument(
        "--table", default=None, help="learning-curve table (default bench/tables/default.jsonl.gz)"
    )
    q.add_argument("--seeds", type=int, default=20, help="studies per arm")
    q.add_argument(
        "--workers", type=int, default=None, help="workers per study (default: the spec's study.jobs)"
    )
    q.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: 2 // workers, as `run` on 2 cores; picks the clock factor)",
    )
    q.add_argument(
        "--timeout-min",
        type=float,
        default=None,
        help="deadline for starting trials (default: the spec's; 0 = none)",
    )
    q.add_argument(
        "--warm",
        choices=("both", "on", "off"),
        default=None,
        help="warm-start arms (default: both when the spec has one)",
    )
    q.add_argument("--out", default="simulate", help="folder for simulate.csv and simulate.png")
    q.add_argument("--n-trials", type=int, default=None, help="trials per study (default: the spec's)")
    q.add_argument("--samplers", default="random,tpe,nsga2", help="comma-separated samplers")
    q.add_argument(
        "--stopping",
        default=None,
        help="comma-separated: none and rules (default: none, mo-asha, the default rule)",
    )
    q.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: recorded seconds; cpu: scaled by each row's CPU share (tables recorded on a busy machine)",
    )
    q.add_argument(
        "--draws",
        choices=("table", "nearest"),
        default="table",
        help="table: a random draw (random search, TPE's start-up) replays a uniformly drawn table row (exact "
        "for a uniformly sampled table), a model's draw its nearest row; nearest: every draw its nearest row",
    )
    q.add_argument(
        "--clock-factor",
        type=float,
        default=1.0,
        help="what-if: a further factor on every recorded second (e.g. a measured faster training step); "
        "accuracy stays the table's",
    )
    q.set_defaults(func=cmd_simulate)


def _add_result_commands(sub: Any) -> None:
    """``report``, ``reproduce``, ``list``, ``ui``, ``train`` and ``inspect``: read, retrain, look."""
    q = sub.add_parser("report", help="Pareto table (or ablation report) of a study")
    q.add_argument("name")
    q.add_argument("--csv", default=None, help="also write the table as CSV")
    q.add_argument(
        "--out",
        default=None,
        help="also write the report files the parent run carries (report.txt, pareto.csv, verify.csv, "
        "Pareto and hypervolume plots) into this folder",
    )
    _storage_flags(q)
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("reproduce", help="retrain a trial's stored config and compare")
    q.add_argument("name")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--trial", type=int, default=None)
    g.add_argument("--pick", choices=["knee", "accuracy", "params", "latency"], default=None)
    q.add_argument("--seeds", type=int, nargs="*", default=None, help="extra seeds: report mean ± std")
    q.add_argument("--out", default="exports", help="folder for the exported model")
    q.add_argument("--tolerance", type=float, default=1e-6, help="allowed |difference| of val/test metrics")
    q.add_argument("--no-progress", action="store_true")
    _storage_flags(q)
    q.set_defaults(func=cmd_reproduce)

    q = sub.add_parser("list", help="studies in a storage with trial counts by state")
    _storage_flags(q)
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("ui", help="start the MLflow UI on localhost")
    q.add_argument("name", nargs="?", default=None)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=5000)
    _storage_flags(q)
    q.set_defaults(func=cmd_ui)

    q = sub.add_parser("train", help="train one model config from a JSON file")
    q.add_argument("--config", required=True)
    q.add_argument("--out", default=None)
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("inspect", help="modulator maps of a trained trial, logged to MLflow")
    q.add_argument("name")
    q.add_argument("--trial", type=int, required=True)
    q.add_argument("--out", default=None)
    q.add_argument("--n", type=int, default=4, help="patches to draw")
    _storage_flags(q)
    q.set_defaults(func=cmd_inspect)


def main(argv: list[str] | None = None) -> int:

    passive_openmp()  # before anything imports torch
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except StorageOutage as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if isinstance(e, _bad_input_types()):
            print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
