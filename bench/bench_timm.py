"""Speed of the project's FocalNet against timm's, same weights, same torch, one process.

    python bench/bench_timm.py [--threads 2] [--repeats 10] [--configs t-srf deep-thin 2222-d32] [--quick]

timm is never a project dependency. On first use this script runs
``pip install --target ~/.cache/focalnet-search/timm-<version> --no-deps timm==<version>`` (pure
Python) and puts that folder on ``sys.path`` of this process only. ``timm.models.focalnet`` needs
nothing else from the project's venv but numpy and pillow (huggingface_hub, safetensors and pyyaml
are optional imports timm skips). It does, however, import torchvision unconditionally (via
``timm.data`` and ``timm.layers.create_norm``), so when torchvision is absent a stub package is
installed in ``sys.modules`` for this process only: every ``torchvision.*`` name is an inert
placeholder class, and ``InterpolationMode`` is a small Enum (timm builds dicts from it at import
time). Nothing FocalNet runs touches the stub.

For every config both models are built, timm's weights are copied into the project's model with
:func:`timm_to_project` (1x1 convs -> Linear, ``stem`` -> ``patch_embed``, ``layers.{i}.downsample``
-> ``layers.{i-1}.downsample`` ...), and the pooled features, the loss and every gradient are
checked to agree. Then, alternating which model runs first in each pair (A B, B A, A B, ...):

* train fp32 / train bf16: forward + backward + AdamW step on a batch of 64 random 64x64 images;
  the loss is the MSE of a linear head (same initial weights for both) on the pooled features.
  bf16 is ``torch.autocast("cpu", bfloat16)`` only (no channels_last, same input for both).
* b1 latency: eval forward of one image under ``inference_mode``; one sample = mean of 20 calls.
* peak memory, two ways: ``alloc`` = peak of live tensor bytes during one (warmed-up) fp32 train
  step above what was live when it started, summed from the torch profiler's allocation events
  (activations, gradients, temporaries; deterministic); ``rss`` = peak RSS during three train
  steps minus RSS before them (``VmHWM`` after resetting it, Linux) in a fresh subprocess per
  model: adds the optimizer state, malloc slack and oneDNN workspaces the allocator view misses.

Each ratio is project / timm per pair; the table gives the median with [min, max] over pairs,
the median absolute times, and ``uptime`` before and after each config (the machine is shared).
"""

from __future__ import annotations

import argparse
import enum
import gc
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from any directory
from focalnet import FocalNet, FocalNetConfig  # noqa: E402

TIMM_VERSION = "1.0.31"
DEFAULT_TIMM_DIR = Path.home() / ".cache" / "focalnet-search" / f"timm-{TIMM_VERSION}"

CONFIGS: dict[str, dict] = {
    "t-srf": {},  # FocalNet-T SRF: 2-2-6-2, embed 96, focal levels 2, window 3
    "deep-thin": {"embed_dim": 64, "depths": (3, 3, 16, 3)},
    "2222-d32": {"embed_dim": 32, "depths": (2, 2, 2, 2)},
}
HEAD_OUT = 32  # width of the linear head the loss is computed on


# --------------------------------------------------------------------------- timm, outside the project


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``torchvision[.x]`` import with an inert module (this process only)."""

    class _Meta(type):
        def __getattr__(cls, name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)
            return cls

    class Placeholder(metaclass=_Meta):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("torchvision is a stub in bench_timm.py")

    InterpolationMode = enum.Enum(
        "InterpolationMode",
        {m.upper(): m for m in ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")},
    )

    class _Module(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):
                raise AttributeError(name)
            if name == "InterpolationMode":
                return _TorchvisionStub.InterpolationMode
            return _TorchvisionStub.Placeholder

    def find_spec(
        self, name: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = self._Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm_focalnet(
    timm_dir: Path, version: str = TIMM_VERSION, install: bool = True
) -> types.ModuleType:
    """Import ``timm.models.focalnet`` from ``timm_dir`` (pip-installing timm there if absent)."""
    if not (timm_dir / "timm" / "__init__.py").exists():
        if not install:
            raise SystemExit(f"timm not found in {timm_dir} (run without --no-install)")
        print(f"installing timm=={version} into {timm_dir} (--no-deps, outside the project)", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(timm_dir)]
        subprocess.run([*cmd, f"timm=={version}"], check=True)
    if importlib.util.find_spec("torchvision") is None:
        sys.meta_path.insert(0, _TorchvisionStub())
    sys.path.insert(0, str(timm_dir))
    import timm.models.focalnet as tfn

    return tfn


def build_timm(tfn: types.ModuleType, cfg: FocalNetConfig) -> nn.Module:
    """timm FocalNet with the same architecture as ``cfg``, returning pooled features."""
    if cfg.patch_size != 4 or cfg.focal_factor != 2 or cfg.contexts != "sequential":
        raise ValueError("timm's FocalNet has patch 4, focal_factor 2 and sequential contexts only")
    return tfn.FocalNet(
        in_chans=cfg.in_chans,
        num_classes=0,  # head = global average pool + flatten
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        mlp_ratio=cfg.mlp_ratio,
        focal_levels=cfg.stage_focal_levels,
        focal_windows=cfg.stage_focal_windows,
        use_overlap_down=cfg.overlapped_embed,
        use_post_norm=cfg.use_postln,
        use_post_norm_in_modulation=cfg.use_postln_in_modulation,
        normalize_modulator=cfg.normalize_modulator,
        layerscale_value=cfg.layerscale_value if cfg.use_layerscale else None,
        drop_rate=cfg.drop_rate,
        proj_drop_rate=cfg.drop_rate,
        drop_path_rate=cfg.drop_path_rate,  # timm's default is 0.1; ours 0
    )


def timm_key_to_project(key: str) -> str | None:
    """Name of timm FocalNet parameter ``key`` in :class:`focalnet.FocalNet` (None: classifier head).

    timm (NCHW throughout) vs ours/official: ``stem`` is ``patch_embed``; timm downsamples at the
    start of stage i, we (and the official code) at the end of stage i-1; layerscale ``ls{n}.gamma``
    is ``gamma_{n}``; post-norms ``norm{n}_post`` reuse ``norm{n}``; the in-modulation norm ``norm``
    is ``ln``. Shapes differ only where timm has a 1x1 Conv2d and we a Linear (f, proj, mlp.fc*).
    """
    if key.startswith("head."):
        return None
    if key.startswith("stem."):
        return "patch_embed." + key.removeprefix("stem.")
    m = re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key)
    if m:
        return f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
    key = re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", key)
    key = re.sub(r"\.norm([12])_post\.", r".norm\1.", key)
    return key.replace(".modulation.norm.", ".modulation.ln.")


def timm_to_project(timm_state: dict[str, Tensor], project: nn.Module) -> dict[str, Tensor]:
    """timm FocalNet state dict -> a state dict ``project.load_state_dict(..., strict=True)`` accepts."""
    target = project.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in timm_state.items():
        new = timm_key_to_project(key)
        if new is None:
            continue
        if new not in target:
            raise KeyError(f"{key} -> {new}: not a parameter of the project's FocalNet")
        if value.numel() != target[new].numel():
            raise ValueError(f"{key} -> {new}: {tuple(value.shape)} vs {tuple(target[new].shape)}")
        out[new] = value.reshape(target[new].shape).clone()
    missing = sorted(set(target) - set(out))
    if missing:
        raise KeyError(f"not set from timm: {missing}")
    return out


# --------------------------------------------------------------------------- the pair of models


class Pair:
    """Both models with identical weights, each with its own identical head, optimizer and data."""

    def __init__(
        self, tfn: types.ModuleType, cfg: FocalNetConfig, batch: int, only: str | None = None
    ) -> None:
        torch.manual_seed(0)
        self.models: dict[str, nn.Module] = {}
        if only in (None, "timm"):
            self.models["timm"] = build_timm(tfn, cfg)
        if only in (None, "project"):
            self.models["project"] = FocalNet(cfg)
        if only is None:
            state = timm_to_project(self.models["timm"].state_dict(), self.models["project"])
            self.models["project"].load_state_dict(state, strict=True)
        head = nn.Linear(cfg.num_features, HEAD_OUT)
        self.heads = {
            k: head if i == 0 else nn.Linear(cfg.num_features, HEAD_OUT) for i, k in enumerate(self.models)
        }
        for h in self.heads.values():
            h.load_state_dict(head.state_dict())
        self.opts = {
            k: torch.optim.AdamW([*m.parameters(), *self.heads[k].parameters()], lr=1e-4, weight_decay=0.05)
            for k, m in self.models.items()
        }
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(batch, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g)
        self.y = torch.rand(batch, HEAD_OUT, generator=g)
        self.x1 = self.x[:1].clone()

    def loss(self, which: str, bf16: bool) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = self.heads[which](self.models[which](self.x))
        return F.mse_loss(out.float(), self.y)

    def step_fn(self, which: str, bf16: bool) -> Callable[[], None]:
        opt = self.opts[which]

        def step() -> None:
            loss = self.loss(which, bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    def latency_fn(self, which: str, calls: int) -> Callable[[], None]:
        model, x1 = self.models[which], self.x1

        def infer() -> None:
            with torch.inference_mode():
                for _ in range(calls):
                    model(x1)

        return infer

    def check_equal(self) -> dict[str, float]:
        """Max abs differences of eval features, train loss and all gradients (fp32, before any step)."""
        for m in self.models.values():
            m.eval()
        project, timm = self.models["project"], self.models["timm"]
        with torch.no_grad():
            feat = (project(self.x) - timm(self.x)).abs().max().item()
        losses = {}
        for k, m in self.models.items():
            m.train()
            m.zero_grad(set_to_none=True)
            self.heads[k].zero_grad(set_to_none=True)
            losses[k] = self.loss(k, bf16=False)
            losses[k].backward()
        proj_params = dict(project.named_parameters())
        grad = 0.0
        for key, p in timm.named_parameters():
            q = proj_params[timm_key_to_project(key)]
            grad = max(grad, (p.grad.reshape(q.shape) - q.grad).abs().max().item())
        for m in (*self.models.values(), *self.heads.values()):
            m.zero_grad(set_to_none=True)
        return {"features": feat, "loss": abs(losses["project"].item() - losses["timm"].item()), "grad": grad}


# --------------------------------------------------------------------------- measurements


def interleaved(
    fns: dict[str, Callable[[], None]],
    repeats: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of ``fns['project']`` and ``fns['timm']``, run in alternating-order pairs."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        order = ("project", "timm") if r % 2 == 0 else ("timm", "project")
        for k in order:
            t0 = clock()
            fns[k]()
            times[k].append(clock() - t0)
    return times


def peak_alloc_bytes(step: Callable[[], None], opt: torch.optim.Optimizer) -> int:
    """Peak live tensor bytes allocated during one ``step()`` above those live at its start.

    Gradients are freed first: the profiler cannot credit frees of blocks allocated before it
    started, so nothing the step frees may predate it (optimizer state persists, params are
    updated in place).
    """
    from torch.profiler import ProfilerActivity, profile

    opt.zero_grad(set_to_none=True)
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_growth_child(args: argparse.Namespace) -> None:
    """Subprocess entry: print the peak RSS growth (bytes) over 3 train steps of one model.

    Uses /proc/self/status, not ``ru_maxrss``: Linux carries the parent's peak RSS into a child's
    ``ru_maxrss`` across fork + exec, which hides any growth below the parent's peak. The high-water
    mark ``VmHWM`` is reset to the current RSS first (``/proc/self/clear_refs``), so the growth is
    peak-during-steps minus RSS-before-steps.
    """
    torch.set_num_threads(args.threads)
    which, name = args.rss_child
    tfn = import_timm_focalnet(args.timm_dir, install=False)
    pair = Pair(tfn, FocalNetConfig(**CONFIGS[name]), args.batch_size, only=which)
    step = pair.step_fn(which, bf16=False)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to VmRSS
    before = _proc_status_kib("VmRSS")
    for _ in range(3):
        step()
    print(json.dumps({"rss_growth": (_proc_status_kib("VmHWM") - before) * 1024}))


def rss_growth(args: argparse.Namespace, which: str, name: str) -> int:
    cmd = [sys.executable, __file__, "--rss-child", which, name, "--timm-dir", str(args.timm_dir)]
    cmd += ["--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["rss_growth"]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def ratio_cell(times: dict[str, list[float]]) -> str:
    r = [p / t for p, t in zip(times["project"], times["timm"], strict=True)]
    return f"{statistics.median(r):.3f} [{min(r):.3f}, {max(r):.3f}]"


def ms_cell(times: dict[str, list[float]], scale: float = 1e3) -> str:
    return (
        f"{statistics.median(times['project']) * scale:.1f} / {statistics.median(times['timm']) * scale:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=10, help="timed pairs per measurement")
    ap.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), help="default: all (--quick: t-srf 2222-d32)"
    )
    ap.add_argument("--quick", action="store_true", help="3 pairs, t-srf and 2222-d32, no rss subprocesses")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latency-calls", type=int, default=20, help="b1 forwards per latency sample")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: this thread's CPU time (needs --threads 1; robust when other jobs share the cores)",
    )
    ap.add_argument("--timm-dir", type=Path, default=DEFAULT_TIMM_DIR)
    ap.add_argument("--no-install", action="store_true", help="fail instead of pip-installing timm")
    ap.add_argument("--rss-child", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_growth_child(args)
        return 0
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.no_rss = True
    if args.configs is None:
        args.configs = ["t-srf", "2222-d32"] if args.quick else list(CONFIGS)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1 (idle OpenMP workers spin, so CPU time is not work)")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    tfn = import_timm_focalnet(args.timm_dir, install=not args.no_install)
    import timm

    stubbed = isinstance(sys.modules.get("torchvision"), _TorchvisionStub._Module)
    print(
        f"torch {torch.__version__}, timm {timm.__version__} from {args.timm_dir}"
        f"{' (torchvision stubbed)' if stubbed else ''}; threads={torch.get_num_threads()}, "
        f"batch {args.batch_size}, 64x64, {args.repeats} interleaved pairs per figure, {args.clock} clock"
    )
    print("ratio = project / timm per pair: median [min, max]; ms = median project / timm")
    rows = []
    for name in args.configs:
        cfg = FocalNetConfig(**CONFIGS[name])
        print(f"\n== {name}  {uptime()}", flush=True)
        pair = Pair(tfn, cfg, args.batch_size)
        diff = pair.check_equal()
        print("max abs diff: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()), flush=True)
        if diff["features"] > 1e-4 or diff["loss"] > 1e-5:
            raise SystemExit(f"{name}: models disagree: {diff}")
        for m in pair.models.values():
            m.train()
        modes = [("train fp32", False)] + ([] if args.no_bf16 else [("train bf16", True)])
        for label, bf16 in modes:
            t = interleaved({k: pair.step_fn(k, bf16) for k in pair.models}, args.repeats, clock=clock)
            rows.append((name, label, ratio_cell(t), ms_cell(t)))
            print(f"  {label:<11} {rows[-1][2]:<24} {rows[-1][3]} ms", flush=True)
        alloc = {k: peak_alloc_bytes(pair.step_fn(k, False), pair.opts[k]) for k in pair.models}
        for m in pair.models.values():
            m.eval()
        calls = args.latency_calls
        fns = {k: pair.latency_fn(k, calls) for k in pair.models}
        t = interleaved(fns, max(args.repeats, 5), warmup=1, clock=clock)
        rows.append((name, "b1 latency", ratio_cell(t), ms_cell(t, 1e3 / calls)))
        print(f"  {'b1 latency':<11} {rows[-1][2]:<24} {rows[-1][3]} ms", flush=True)
        r = alloc["project"] / alloc["timm"]
        rows.append(
            (
                name,
                "peak alloc",
                f"{r:.3f}",
                f"{alloc['project'] / 2**20:.0f} / {alloc['timm'] / 2**20:.0f} MiB",
            )
        )
        print(f"  {'peak alloc':<11} {rows[-1][2]:<24} {rows[-1][3]}", flush=True)
        del pair
        if not args.no_rss:
            rss = {k: rss_growth(args, k, name) for k in ("project", "timm")}
            r = rss["project"] / rss["timm"]
            rows.append(
                (
                    name,
                    "peak rss +",
                    f"{r:.3f}",
                    f"{rss['project'] / 2**20:.0f} / {rss['timm'] / 2**20:.0f} MiB",
                )
            )
            print(f"  {'peak rss +':<11} {rows[-1][2]:<24} {rows[-1][3]}", flush=True)
        print(f"   {uptime()}", flush=True)
    print()
    header = f"| {'config':<9} | {'measure':<11} | {'project/timm':<24} | {'project / timm':<18} |"
    print(header)
    print(re.sub(r"[^|]", "-", header))
    for row in rows:
        print(f"| {row[0]:<9} | {row[1]:<11} | {row[2]:<24} | {row[3]:<18} |")
    print(uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())
