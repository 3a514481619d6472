"""Learning-curve tables: full training curves of many configurations, recorded once, replayed by the simulator.

A table is a JSON-lines file (gzip when the name ends in ``.gz``): one ``header`` record (how, where and
from what it was made: command, code version, data hash, machine, spec and its hash), then one ``row``
per configuration (written by ``bench/record_curves.py``). A row holds the sampled params, the resolved
config, the costs measured before training, the val and test metrics at every recorded step, and the
time a step, an evaluation and the cost measurement took. Over-budget rows hold costs only
(``trained: false``): a live study never trains them either.

Writes are atomic (write a temporary file, fsync, rename): a crash leaves the previous table intact, so
a recording loses at most the configuration it was training.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.task.plateau import left_plateau_step

__all__ = [
    "FORMAT",
    "TableError",
    "Table",
    "read_table",
    "write_table",
    "config_key",
    "measured_parts",
    "param_distance",
]

#: Version of the record layout; a reader refuses other versions.
FORMAT = 1


class TableError(ValueError):
    """A missing, corrupt or incompatible table (CLI exit code 2, one line)."""


def _open(path: Path, mode: str):
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_table(path: str | Path) -> Table:
    """Read a table written by :func:`write_table`.

    Raises:
        TableError: no such file, not a table, or a bad record (names the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such table file")
    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    try:
        with _open(path, "r") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TableError(f"{path}: line {n}: not JSON ({e.msg})") from None
                kind = rec.get("kind") if isinstance(rec, dict) else None
                if n == 1 and kind != "header":
                    raise TableError(f"{path}: line 1: expected the header record, got kind={kind!r}")
                if kind == "header":
                    header = rec
                elif kind == "row":
                    rows.append(rec)
                else:
                    raise TableError(f"{path}: line {n}: unknown record kind {kind!r}; allowed: header, row")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TableError(f"{path}: unreadable table ({type(e).__name__}: {e})") from None
    if header is None:
        raise TableError(f"{path}: empty table (no header record)")
    if header.get("format") != FORMAT:
        raise TableError(f"{path}: table format {header.get('format')!r}; this code reads format {FORMAT}")
    return Table(path=path, header=header, rows=rows)


def write_table(path: str | Path, header: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the whole table atomically (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in [header, *rows])
    if path.name.endswith(".gz"):
        # mtime=0: the same rows give the same bytes, so re-running a finished recording changes nothing.
        data = gzip.compress(text.encode(), compresslevel=9, mtime=0)
    else:
        data = text.encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some filesystems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Spec parts that decide what a row's numbers mean (the space decides which points are drawn).
MEASURED = ("space", "model", "baseline_model", "data", "latency", "train")
#: Train keys that change when and how often a run is measured, not what it learns.
_RUN_KEYS = ("threads", "eval_every", "eval_steps")


def measured_parts(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a spec (``StudySpec.to_dict()``) that a recorded row depends on. The sampler, the
    stopping rule, the study budget or the hypervolume reference may change without touching a row."""
    parts = {key: spec.get(key) for key in MEASURED}
    parts["train"] = {k: v for k, v in (parts["train"] or {}).items() if k not in _RUN_KEYS}
    # The clock of a live study's latency is not the recording's: a table's latencies are timed with the
    # clock in its header (`latency_clock`) and put on its reference baseline's scale either way.
    parts["latency"] = {k: v for k, v in (parts["latency"] or {}).items() if k != "clock"}
    return parts


def config_key(config: Mapping[str, Any]) -> str:
    """What identifies a configuration in a table: its model and train config, minus how it was run
    (threads, evaluation schedule) — those change when and how often it is measured, not what it learns."""
    train = {k: v for k, v in config["train"].items() if k not in _RUN_KEYS}
    return json.dumps({"model": config["model"], "train": train}, sort_keys=True, separators=(",", ":"))


def _coord(dim: Any, v: Any) -> float:
    """A numeric value's position in [0, 1] along its dimension (log scale when the dimension is log)."""
    lo, hi = float(dim.low), float(dim.top())
    x = float(v)
    if dim.log and lo > 0 and x > 0:
        lo, hi, x = math.log(lo), math.log(hi), math.log(x)
    return 0.0 if hi <= lo else (x - lo) / (hi - lo)


def param_distance(a: Mapping[str, Any], b: Mapping[str, Any], space: Mapping[str, Any]) -> float:
    """L1 distance of two sampled points of ``space`` (name → `Dimension`).

    A categorical dimension adds 0 (same choice) or 1; a numeric one adds its normalised difference
    (log scale for log dimensions), at most 1. A conditional dimension sampled in only one of the
    two points (``arch.mid_depth_ratio`` below 3 stages) adds 1.
    """
    d = 0.0
    for name, dim in space.items():
        if (name in a) != (name in b):
            d += 1.0
        elif name not in a:
            continue
        elif dim.kind == "categorical":
            d += 0.0 if a[name] == b[name] else 1.0
        else:
            d += abs(_coord(dim, a[name]) - _coord(dim, b[name]))
    return d


@dataclass
class Table:
    """A read table: ``header`` and ``rows`` as stored, plus look-ups.

    Args:
        path: where it was read from.
        header: the header record.
        rows: the row records, in recording order.
    """

    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]]

    def sampled_rows(self) -> list[dict[str, Any]]:
        """Rows drawn from the search space (not the baseline or other fixed trials)."""
        return [r for r in self.rows if r.get("role", "search") == "search"]

    def nearest(self, params: Mapping[str, Any], space: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
        """The sampled row closest to ``params`` (see :func:`param_distance`); ties go to the earlier row.

        Returns:
            (row, distance); distance 0 means the identical point.
        """
        best, best_d = None, math.inf
        for r in self.sampled_rows():
            d = param_distance(params, r["params"], space)
            if d < best_d:
                best, best_d = r, d
        if best is None:
            raise TableError(f"{self.path}: the table has no sampled rows")
        return best, best_d

    def reference_latency_ms(self) -> float | None:
        """The first baseline row's latency: the scale :meth:`latency_ms` puts every row on."""
        return next((float(r["costs"]["latency_ms"]) for r in self.rows if r.get("role") == "baseline"), None)

    def latency_ms(self, row: Mapping[str, Any]) -> float:
        """The row's latency on the reference baseline's scale: its ratio to the baseline timed in the same
        recording session, times :meth:`reference_latency_ms`. A table recorded over several sessions of
        a shared machine has absolute latencies that drift between sessions (the baseline itself moved
        0.55-0.80 ms on this machine), while the ratio is timed side by side. Raw ``latency_ms`` when the
        row or table has no ratio or baseline."""
        c, ref = row["costs"], self.reference_latency_ms()
        if ref is None or not c.get("latency_ratio"):
            return float(c["latency_ms"])
        return float(c["latency_ratio"]) * ref

    def constant_val(self, metric: str) -> float | None:
        """The constant predictor's val ``metric`` on the recording's data (header ``constant``), or None."""
        return ((self.header.get("constant") or {}).get("val") or {}).get(metric)

    def reference_val(self, metric: str) -> float | None:
        """The best final val ``metric`` among the trained baseline rows (the study's reference), or None."""
        vals = [self.final(r, metric) for r in self.rows if r.get("role") == "baseline" and r.get("trained")]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals) if vals else None

    @staticmethod
    def final(row: Mapping[str, Any], metric: str, split: str = "val") -> float:
        """The row's last recorded ``split`` ``metric`` (NaN when untrained, failed or not recorded)."""
        values = (row.get(split) or {}).get(metric) or []
        v = values[-1] if values and not row.get("failed") else None
        return float("nan") if v is None else float(v)

    def regions(self, objectives: Any, reference: float | None = None) -> dict[int, str]:
        """Trained row index → ``"in"``, ``"plateau"`` or ``"below floor"``: the region of interest of
        ``objectives`` (a spec's ``ObjectiveSpec``), as a live study's report judges its trials
        (`search.report.records.region`), with the reference baseline's val ``reference`` (default: the
        best baseline row). Without a recorded constant predictor nothing counts as plateau."""
        metric = objectives.accuracy
        reference = self.reference_val(metric) if reference is None else reference
        constant, floor = self.constant_val(metric), objectives.accuracy_floor(reference)
        out = {}
        for r in self.rows:
            if not r.get("trained"):
                continue
            v = self.final(r, metric)
            curve = list(zip(r.get("steps") or [], (r.get("val") or {}).get(metric) or [], strict=False))
            if (
                constant is not None
                and left_plateau_step([c for c in curve if c[1] is not None], constant) is None
            ):
                out[r["index"]] = "plateau"
            elif not math.isfinite(v) or (floor is not None and v < floor):
                out[r["index"]] = "below floor"
            else:
                out[r["index"]] = "in"
        return out

    def fixed(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row recorded with exactly this resolved config (fixed trials: the baseline), or None."""
        key = config_key(config)
        return next((r for r in self.rows if config_key(r["config"]) == key), None)

    @staticmethod
    def metric_at(row: Mapping[str, Any], split: str, metric: str, step: int) -> float:
        """The recorded ``split`` (``"val"`` / ``"test"``) ``metric`` at ``step``.

        Raises:
            TableError: the row was not trained, or ``step`` / ``metric`` was not recorded.
        """
        if not row.get("trained", False):
            raise TableError(f"row {row.get('index')}: not trained (over budget when recorded)")
        try:
            i = row["steps"].index(int(step))
        except ValueError:
            raise TableError(
                f"row {row.get('index')}: step {step} not recorded; recorded steps: {row['steps']}"
            ) from None
        values = row[split].get(metric)
        if values is None:
            raise TableError(f"row {row.get('index')}: metric {split}.{metric} not recorded")
        v = values[i]
        return float("nan") if v is None else float(v)
