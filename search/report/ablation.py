"""The ablation's analysis: per-cell mean ± std, paired differences with intervals, verdicts, CSV and chart.

Every cell of the grid (see :mod:`search.spec.grid`) runs the same seeds, so the difference between
two cells with the same seed is a paired observation. Per seed, the difference ``level − reference`` is
averaged over the other factors' level combinations; the primary interval is a paired t-interval over
seeds, with a percentile bootstrap interval alongside. Only COMPLETE trials that trained are used.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from search.spec.grid import Ablation, cell_name, format_level, parse_ablation, trial_key
from search.task.plateau import PLATEAU_MARGIN, left_plateau_step

__all__ = [
    "BOOTSTRAP_N",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "METRICS",
    "ablation_artifacts",
    "ablation_report",
    "bootstrap_interval",
    "paired_t_interval",
]

CONFIDENCE = 0.95
BOOTSTRAP_N = 10_000
BOOTSTRAP_SEED = 0
#: Reported metrics: (id, label). ``val.*``/``test.*`` read the trial's metric dicts; the rest are costs.
METRICS: tuple[tuple[str, str], ...] = (
    ("val.pck_0.05", "val PCK@0.05"),
    ("test.pck_0.05", "test PCK@0.05"),
    ("val.pck_0.1", "val PCK@0.1"),
    ("test.pck_0.1", "test PCK@0.1"),
    ("val.mpe_px", "val err px"),
    ("test.mpe_px", "test err px"),
    ("params", "params"),
    ("flops", "FLOPs"),
    ("latency_ms", "latency ms"),
)


# ----------------------------------------------------------------------------------------------------------
# statistics


def paired_t_interval(diffs: Any, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, half_width, lo, hi)`` of the paired t-interval; NaN width with fewer than 2 pairs."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return (math.nan,) * 4
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, half, mean - half, mean + half


def bootstrap_interval(
    diffs: Any, n: int = BOOTSTRAP_N, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference (fixed RNG seed → reproducible)."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------------------------------------
# report


def _metric(trial: Any, metric: str) -> float:
    split, _, key = metric.partition(".")
    v = trial.user_attrs.get(split, {}).get(key) if key else trial.user_attrs.get(split)
    return float(v) if v is not None else math.nan


def _never_left(trial: Any, constant: dict[str, Any] | None, acc: str) -> float:
    """1.0 if the run never left the constant-predictor plateau, 0.0 if it did, NaN if unknown."""
    ua = trial.user_attrs
    if "left_plateau_step" in ua:
        return float(ua["left_plateau_step"] is None)
    if ua.get("curve") and constant:  # trained before the flag existed: recompute from the curve
        step = left_plateau_step(
            ua["curve"], constant["val"][acc], margin=constant.get("margin", PLATEAU_MARGIN)
        )
        return float(step is None)
    return math.nan


def _collect(study: Any, ab: Ablation, acc: str = "pck_0.05") -> dict[tuple[str, int], dict[str, float]]:
    """``{(cell name, seed): {metric: value, "never_left": 1/0/NaN}}`` of COMPLETE, trained cell trials
    (first one wins)."""
    wanted = {cell_name(c, s): (cell_name(c), s) for s in ab.seeds for c in ab.cells()}
    constant = study.user_attrs.get("constant_predictor")
    out: dict[tuple[str, int], dict[str, float]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        key = wanted.get(trial_key(t) or "")
        if t.state.name != "COMPLETE" or key is None or key in out or "test" not in t.user_attrs:
            continue
        out[key] = {m: _metric(t, m) for m, _ in METRICS}
        out[key]["never_left"] = _never_left(t, constant, acc)
    return out


def _plateau_counts(results: dict, ab: Ablation, factor: str, level: Any) -> tuple[int, int]:
    """(runs that never left the plateau, runs whose status is known) over every cell with factor=level."""
    vals = [
        results[(cell_name(c), s)]["never_left"]
        for c in ab.cells()
        if format_level(c[factor]) == format_level(level)
        for s in ab.seeds
        if (cell_name(c), s) in results
    ]
    vals = [v for v in vals if not math.isnan(v)]
    return int(sum(vals)), len(vals)


def _per_seed_level(
    results: dict[tuple[str, int], dict[str, float]],
    ab: Ablation,
    factor: str,
    level: Any,
    seed: int,
    metric: str,
) -> float:
    """Mean of ``metric`` over the other factors' combinations at (factor=level, seed); NaN if any is missing."""
    others = {k: v for k, v in ab.factors.items() if k != factor}
    vals = []
    for combo in itertools.product(*others.values()):
        cell = dict(zip(others, combo, strict=True))
        cell[factor] = level
        r = results.get((cell_name({k: cell[k] for k in ab.factors}), seed))
        vals.append(r[metric] if r else math.nan)
    return float(np.mean(vals)) if vals and not any(math.isnan(v) for v in vals) else math.nan


def _paired_diffs(results: dict, ab: Ablation, factor: str, level: Any, metric: str) -> list[float]:
    """Per seed: level − reference, each averaged over the other factors (seeds with gaps are dropped)."""
    ref = ab.reference[factor]
    out = []
    for s in ab.seeds:
        d = _per_seed_level(results, ab, factor, level, s, metric) - _per_seed_level(
            results, ab, factor, ref, s, metric
        )
        if not math.isnan(d):
            out.append(d)
    return out


def _fmt(metric: str, v: float, *, diff: bool = False) -> str:
    """PCK in percent(-points), error in px, params exact, FLOPs in millions."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    sign = "+" if diff else ""
    if "pck" in metric:
        return f"{100 * v:{sign}.1f}"
    if metric == "params":
        return f"{v:{sign},.0f}"
    if metric == "flops":
        return f"{v / 1e6:{sign}.2f}M"
    return f"{v:{sign}.2f}"


def _label(metric: str) -> str:
    return dict(METRICS)[metric]


def _verdict(
    factor: str,
    level: Any,
    ref: Any,
    metric: str,
    diffs: list[float],
    mean: float,
    half: float,
    lo: float,
    hi: float,
    plateau: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> str:
    """The plain-words verdict; ``plateau`` = (never-left, known) runs of the level, then of the reference."""
    verdict = _verdict_core(factor, level, ref, metric, diffs, mean, half, lo, hi)
    lvl_never, lvl_n, ref_never, ref_n = plateau
    if not (lvl_never or ref_never):
        return verdict
    where = (
        f"{lvl_never}/{lvl_n} runs with {factor}={format_level(level)} and {ref_never}/{ref_n} with "
        f"{format_level(ref)} never left the constant-predictor plateau"
    )
    if lvl_never == lvl_n and ref_never == ref_n:
        return f"{verdict} — but {where}: both sides sit on the plateau, no architecture effect can be read"
    return f"{verdict} — but {where}: the difference measures escaping the plateau, not the architecture"


def _verdict_core(
    factor: str,
    level: Any,
    ref: Any,
    metric: str,
    diffs: list[float],
    mean: float,
    half: float,
    lo: float,
    hi: float,
) -> str:
    n = len(diffs)
    unit = " pp" if "pck" in metric else ""
    head = f"{factor}={format_level(level)} vs {format_level(ref)}"
    if n == 0:
        return f"{head}: no paired results yet"
    if n == 1:
        return f"{head}: {_fmt(metric, mean, diff=True)}{unit} {_label(metric)}, no interval with 1 seed"
    sig = "significant" if lo > 0 or hi < 0 else "not significant"
    return (
        f"{head}: {_fmt(metric, mean, diff=True)} ± {_fmt(metric, half)}{unit} {_label(metric)} "
        f"({CONFIDENCE:.0%} CI [{_fmt(metric, lo, diff=True)}, {_fmt(metric, hi, diff=True)}]), {sig} at {n} seeds"
    )


_CSV_COLUMNS = (
    "section", "cell", "factor", "level", "reference", "metric", "n",
    "mean", "std", "diff", "half_width", "ci_lo", "ci_hi", "boot_lo", "boot_hi", "significant", "on_plateau",
    "verdict",
)  # fmt: skip


def _rows(study: Any, ab: Ablation, primary: str) -> tuple[list[dict[str, Any]], dict]:
    results = _collect(study, ab, primary.partition(".")[2])
    rows: list[dict[str, Any]] = []
    for cell in ab.cells():
        name = cell_name(cell)
        never = [results[(name, s)]["never_left"] for s in ab.seeds if (name, s) in results]
        never = [v for v in never if not math.isnan(v)]
        on_plateau = f"{int(sum(never))}/{len(never)}" if never else ""
        for metric, _ in METRICS:
            vals = np.array(
                [results[(name, s)][metric] for s in ab.seeds if (name, s) in results], dtype=float
            )
            vals = vals[~np.isnan(vals)]
            rows.append({
                "section": "cell", "cell": name, "metric": metric, "n": int(vals.size),
                "mean": float(vals.mean()) if vals.size else math.nan,
                "std": float(vals.std(ddof=1)) if vals.size > 1 else math.nan, "on_plateau": on_plateau,
            })  # fmt: skip
    for factor, levels in ab.factors.items():
        ref = ab.reference[factor]
        for level in levels:
            if format_level(level) == format_level(ref):
                continue
            plateau = (
                *_plateau_counts(results, ab, factor, level),
                *_plateau_counts(results, ab, factor, ref),
            )
            for metric, _ in METRICS:
                diffs = _paired_diffs(results, ab, factor, level, metric)
                mean, half, lo, hi = paired_t_interval(diffs)
                blo, bhi = bootstrap_interval(diffs)
                sig = bool(len(diffs) > 1 and (lo > 0 or hi < 0))
                rows.append({
                    "section": "diff", "factor": factor, "level": format_level(level), "reference": format_level(ref),
                    "metric": metric, "n": len(diffs), "diff": mean, "half_width": half, "ci_lo": lo, "ci_hi": hi,
                    "boot_lo": blo, "boot_hi": bhi, "significant": sig,
                    "on_plateau": f"{plateau[0]}/{plateau[1]} vs {plateau[2]}/{plateau[3]}",
                    "verdict": _verdict(factor, level, ref, metric, diffs, mean, half, lo, hi, plateau) if metric == primary else "",
                })  # fmt: skip
    return rows, results


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def ablation_report(
    study: Any, spec: Any, *, csv_path: str | Path | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Terminal report (per-cell mean ± std, paired differences with 95% CIs, verdicts) and its rows.

    ``rows`` are long-format dicts with the columns of the CSV (``section`` = ``cell`` or ``diff``);
    written to ``csv_path`` when given. Only COMPLETE trials that trained are used.
    """
    ab = parse_ablation(spec)
    primary = f"test.{spec.objectives.accuracy}"
    rows, results = _rows(study, ab, primary)
    n_cells = len(ab.cells())
    lines = [
        f"Ablation {spec.name}: {len(ab.factors)} factor(s), {n_cells} cells × {len(ab.seeds)} seeds "
        f"(seeds {', '.join(map(str, ab.seeds))}); {len(results)}/{n_cells * len(ab.seeds)} trials complete",
        f"reference: {cell_name(ab.reference)}",
        "",
        "Per cell: mean ± std over seeds (PCK in %, error in px)",
    ]
    by_cell = {(r["cell"], r["metric"]): r for r in rows if r["section"] == "cell"}
    body = []
    for cell in ab.cells():
        name = cell_name(cell)
        n = by_cell[(name, METRICS[0][0])]["n"]
        cols = [name, str(n)]
        for m, _ in METRICS:
            r = by_cell[(name, m)]
            std = "" if math.isnan(r["std"]) else f" ± {_fmt(m, r['std'])}"
            cols.append(_fmt(m, r["mean"]) + std)
        cols.append(by_cell[(name, METRICS[0][0])]["on_plateau"] or "—")
        body.append(cols)
    lines += _table(["cell", "n", *(label for _, label in METRICS), "on plateau"], body)
    lines += [
        f"on plateau = runs that never reached val {spec.objectives.accuracy} >= constant predictor + "
        f"{PLATEAU_MARGIN:g} / runs; {constant_summary(study, spec)}"
    ]
    lines += [
        "",
        "Paired differences vs reference: per seed, level − reference averaged over the other factors' levels;",
        f"CI = {CONFIDENCE:.0%} paired t-interval over seeds (primary); bootstrap = {CONFIDENCE:.0%} percentile "
        f"bootstrap of the mean ({BOOTSTRAP_N} resamples, seed {BOOTSTRAP_SEED})",
    ]
    body = []
    for r in rows:
        if r["section"] != "diff":
            continue
        m = r["metric"]
        body.append([
            f"{r['factor']}={r['level']} vs {r['reference']}", _label(m), str(r["n"]),
            _fmt(m, r["diff"], diff=True) + ("" if math.isnan(r["half_width"]) else f" ± {_fmt(m, r['half_width'])}"),
            f"[{_fmt(m, r['ci_lo'], diff=True)}, {_fmt(m, r['ci_hi'], diff=True)}]",
            f"[{_fmt(m, r['boot_lo'], diff=True)}, {_fmt(m, r['boot_hi'], diff=True)}]",
            "yes" if r["significant"] else "no",
        ])  # fmt: skip
    lines += _table(["comparison", "metric", "n", "diff", "t CI", "bootstrap CI", "sig"], body)
    lines += ["", f"Verdicts ({_label(primary)}, t-interval):"]
    lines += [f"  {r['verdict']}" for r in rows if r.get("verdict")]
    text = "\n".join(lines)
    if csv_path is not None:
        _write_csv(rows, Path(csv_path))
    return text, rows


def constant_summary(study: Any, spec: Any) -> str:
    """``constant predictor: val pck_0.05=0.190, test …`` (or that the study did not record it)."""
    c = study.user_attrs.get("constant_predictor")
    acc = spec.objectives.accuracy
    if not c:
        return "constant predictor not recorded for this study"
    return f"constant predictor: val {acc}={c['val'][acc]:.3f}, test {acc}={c['test'][acc]:.3f}"


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})


def _chart(study: Any, spec: Any, ab: Ablation, path: Path) -> None:
    """One panel per factor: per-level mean of test and val accuracy, error bars = std over seeds; dashed
    lines at the constant predictor's test and val accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    acc = spec.objectives.accuracy
    results = _collect(study, ab, acc)
    constant = study.user_attrs.get("constant_predictor")
    fig = Figure(figsize=(4.2 * len(ab.factors), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ab.factors), squeeze=False)[0]
    for ax, (factor, levels) in zip(axes, ab.factors.items(), strict=True):
        x = np.arange(len(levels))
        for offset, split, color in ((-0.1, "test", "C0"), (0.1, "val", "C1")):
            means, stds = [], []
            for level in levels:
                per_seed = [
                    _per_seed_level(results, ab, factor, level, s, f"{split}.{acc}") for s in ab.seeds
                ]
                v = np.array([p for p in per_seed if not math.isnan(p)]) * 100
                means.append(v.mean() if v.size else np.nan)
                stds.append(v.std(ddof=1) if v.size > 1 else 0.0)
            ax.errorbar(x + offset, means, yerr=stds, fmt="o", capsize=4, color=color, label=f"{split} {acc}")
            if constant:  # the plateau: cells near this line learned nothing from the image
                ax.axhline(100 * constant[split][acc], color=color, ls="--", lw=0.8, alpha=0.6)
        ax.set_xticks(
            x,
            [
                format_level(v) + (" (ref)" if format_level(v) == format_level(ab.reference[factor]) else "")
                for v in levels
            ],
        )
        ax.set_title(factor)
        ax.set_ylabel(f"{acc.replace('pck_', 'PCK@')} (%)  mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec.name}: {len(ab.seeds)} seeds")
    fig.savefig(path, dpi=110)


def ablation_artifacts(study: Any, spec: Any, out_dir: str | Path) -> list[Path]:
    """Write ``ablation.csv``, ``ablation_report.txt`` and ``ablation.png`` to ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, txt_path, png_path = out / "ablation.csv", out / "ablation_report.txt", out / "ablation.png"
    text, _ = ablation_report(study, spec, csv_path=csv_path)
    txt_path.write_text(text + "\n")
    _chart(study, spec, parse_ablation(spec), png_path)
    return [csv_path, txt_path, png_path]
