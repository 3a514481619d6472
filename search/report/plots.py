"""Report plots and tables for a search: Pareto fronts, the Pareto table, hypervolume, importances.

Input is a list of plain trial records built by the runner from Optuna ``FrozenTrial`` objects::

    {"number": 7, "state": "COMPLETE", "role": "search", "name": "t007-...",
     "values": {"accuracy": 0.81, "params": 120_000, "latency_ms": 1.9, "flops": 3_000_000},
     "feasible": True, "pareto": True, "params_flat": {"arch.embed_dim": 32, ...}}

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot global state), so
plotting is thread-safe and never opens a window.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from search.report.records import family

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OBJECTIVE_DIRECTIONS",
    "compute_importances",
    "dominates",
    "hypervolume_plot",
    "importance_plot",
    "simulation_plot",
    "pareto_plots",
    "pareto_table",
]

log = logging.getLogger(__name__)

Record = Mapping[str, Any]

# Direction of every objective a record may carry: accuracy up, costs down.
OBJECTIVE_DIRECTIONS: dict[str, str] = {
    "accuracy": "maximize",
    "params": "minimize",
    "latency_ms": "minimize",
    "flops": "minimize",
}

_TABLE_COLUMNS = [
    "number",
    "role",
    "name",
    "accuracy",
    "params",
    "flops",
    "latency_ms",
    "latency_ratio",
    "feasible",
    "pareto",
    "dominates_baseline",
    "plateau",
    "region",
    "family",
    "family_pareto",
]


# --------------------------------------------------------------------------------------------------
# Record helpers
# --------------------------------------------------------------------------------------------------


def _completed(records: Sequence[Record]) -> list[Record]:
    """Records of COMPLETE trials that carry objective values."""
    return [r for r in records if str(r.get("state", "")).upper() == "COMPLETE" and r.get("values")]


def _baseline(records: Sequence[Record]) -> Record | None:
    """The reference baseline: the record flagged ``reference``, else the first completed baseline."""
    base = [r for r in _completed(records) if r.get("role") == "baseline"]
    flagged = [r for r in base if r.get("reference")]
    return (flagged or [min(base, key=lambda r: r.get("number", 0))])[0] if base else None


def _on_plateau(record: Record) -> bool:
    """The trial trained but never left the constant-predictor plateau (``plateau == "never"``)."""
    return record.get("plateau") == "never"


def _val(record: Record, key: str) -> float | None:
    value = (record.get("values") or {}).get(key)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def dominates(a: Record, b: Record, objectives: Sequence[str] | None = None) -> bool:
    """Whether record ``a`` Pareto-dominates ``b`` (no worse everywhere, strictly better somewhere).

    Args:
        a: candidate record.
        b: reference record.
        objectives: objective keys to compare (default: those of :data:`OBJECTIVE_DIRECTIONS` that
            both records carry). Accuracy is maximised, costs minimised.
    """
    keys = objectives or [
        k for k in OBJECTIVE_DIRECTIONS if _val(a, k) is not None and _val(b, k) is not None
    ]
    strictly = False
    for key in keys:
        va, vb = _val(a, key), _val(b, key)
        if va is None or vb is None:
            return False
        if OBJECTIVE_DIRECTIONS.get(key, "minimize") == "maximize":
            va, vb = -va, -vb
        if va > vb:
            return False
        strictly = strictly or va < vb
    return bool(keys) and strictly


def _front_2d(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """2-D non-dominated points (minimise x, maximise y), sorted by x."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 5.0) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _seed_check(ax: Axes, records: Sequence[Record], done: Sequence[Record], x_key: str) -> None:
    """Seed-check trials (role ``verify``): mean ± std of their accuracy at their source trial's cost."""
    by_number = {r.get("number"): r for r in done}
    groups: dict[Any, list[float]] = {}
    for r in _completed(records):
        if r.get("role") == "verify" and r.get("verifies") in by_number and _val(r, "accuracy") is not None:
            groups.setdefault(r["verifies"], []).append(_val(r, "accuracy"))  # type: ignore[arg-type]
    if not groups:
        return
    xs = [_val(by_number[n], x_key) for n in groups]
    means = [sum(v) / len(v) for v in groups.values()]
    stds = [
        (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
        for v, m in zip(groups.values(), means, strict=True)
    ]
    ax.errorbar(xs, means, yerr=stds, fmt="_", ms=12, color="black", capsize=3, lw=1.0, zorder=7,
                label="seed check (mean ± std)")  # fmt: skip


def _in_region(record: Record) -> bool:
    """Inside the region of interest (records without a ``region``, e.g. hand-made ones, are inside)."""
    return record.get("region") in (None, "in")


def _fronts(ax: Axes, inside: Sequence[Record], x_key: str, xy: Any) -> None:
    """The front of this pair (staircase over the region of interest) and the study's Pareto members: a
    red ring on the members this pair's front holds, an orange dashed ring, labelled, on members that
    this pair dominates (they are on the front through another cost)."""
    stair = _front_2d([(_val(r, x_key), _val(r, "accuracy")) for r in inside])  # type: ignore[misc]
    if stair:
        xs, ys = zip(*stair, strict=True)
        ax.step(
            xs, ys, where="post", color="tab:red", lw=1.4, alpha=0.8, label="front of this pair", zorder=4
        )
    on_stair = set(stair)
    flagged = [r for r in inside if r.get("pareto")]
    here = [r for r in flagged if (_val(r, x_key), _val(r, "accuracy")) in on_stair]
    elsewhere = [r for r in flagged if r not in here]
    if here:
        ax.scatter(*xy(here), s=70, facecolors="none", edgecolors="tab:red", linewidths=1.4,
                   label="Pareto member", zorder=5)  # fmt: skip
    if elsewhere:
        ax.scatter(*xy(elsewhere), s=70, facecolors="none", edgecolors="tab:orange", linewidths=1.2,
                   linestyle="--", label="Pareto member by another cost (dominated in this pair)", zorder=5)  # fmt: skip


#: Per family, when a study searches both: (trial colour, trial marker); its front is dashed in that colour.
_FAMILY_STYLE = {"baseline": ("tab:green", "^"), "focalnet": ("tab:blue", "o")}


def _searched_families(inside: Sequence[Record]) -> list[str]:
    """The families with search trials in the region of interest, when there are two (else [])."""
    searched = sorted({family(r) for r in inside if r.get("role") == "search"})
    return searched if len(searched) > 1 else []


def _family_fronts(ax: Axes, inside: Sequence[Record], x_key: str) -> None:
    """With two model families searched in the region of interest, each family's front in this pair, dashed.

    A study that searches one family (the baseline is only its fixed reference trials) draws none: its
    "baseline family" would be the reference point alone, and its FocalNet front the front itself.
    Drawn above the pair's front, so a family front that coincides with it stays visible.
    """
    families = sorted({family(r) for r in inside}) if _searched_families(inside) else []
    for f in families:
        stair = _front_2d([(_val(r, x_key), _val(r, "accuracy")) for r in inside if family(r) == f])  # type: ignore[misc]
        xs, ys = zip(*stair, strict=True)
        color, marker = _FAMILY_STYLE.get(f, ("tab:gray", "o"))
        # markers on the corners: a one-member front is a point, which a line alone would not show
        ax.step(xs, ys, where="post", color=color, lw=1.3, ls="--", alpha=0.95, marker=marker, markersize=9,
                markerfacecolor="none", label=f"{f} family's front", zorder=4.5)  # fmt: skip


def _pareto_axes(
    ax: Axes,
    records: Sequence[Record],
    *,
    x_key: str,
    x_label: str,
    y_label: str,
    constant: float | None = None,
) -> None:
    """One accuracy-vs-cost panel: points, 2-D staircase front, flagged front, baseline, seed check,
    constant-predictor level, labels."""
    done = [
        r
        for r in _completed(records)
        if _val(r, x_key) is not None and _val(r, "accuracy") is not None and r.get("role") != "verify"
    ]
    if not done:
        _empty(ax, "no completed trials")
        return
    feasible = [r for r in done if r.get("feasible", True)]
    infeasible = [r for r in done if not r.get("feasible", True)]

    def xy(rs: Sequence[Record]) -> tuple[list[float], list[float]]:
        return [_val(r, x_key) for r in rs], [_val(r, "accuracy") for r in rs]  # type: ignore[misc]

    # Hollow markers: trials that never left the constant-predictor plateau (their accuracy is no verdict).
    def points(rs: Sequence[Record], label: str, *, color: str, **kw: Any) -> None:
        for hollow in (False, True):
            sel = [r for r in rs if _on_plateau(r) == hollow]
            if sel:
                style = {"facecolors": "none", "edgecolors": color} if hollow else {"c": color}
                suffix = " (never left the plateau)" if hollow else ""
                ax.scatter(*xy(sel), **style, **kw, label=label + suffix)

    inside = [r for r in feasible if _in_region(r)]
    outside = [r for r in feasible if not _in_region(r)]
    if outside:  # not a trade-off anyone would pick: never drawn as a candidate for the front
        ax.scatter(*xy(outside), s=18, marker="o", facecolors="none", edgecolors="0.65", zorder=2,
                   label="outside the region of interest (plateau or below the floor)")  # fmt: skip
    plain = [r for r in inside if r.get("role") not in ("baseline", "variant", "cell")]
    families = _searched_families(inside)
    if families:  # two families searched: which point is which family is the point of the picture
        for f in families:
            color, marker = _FAMILY_STYLE.get(f, ("tab:gray", "o"))
            points([r for r in plain if family(r) == f], f"{f} family trials", s=24, marker=marker,
                   color=color, alpha=0.6, zorder=2)  # fmt: skip
    else:
        points(plain, "trials", s=22, color="tab:blue", alpha=0.55, zorder=2)
    cells = [r for r in inside if r.get("role") == "cell"]
    points(cells, "ablation cells", s=30, marker="D", color="tab:purple", alpha=0.7, zorder=3)
    variants = [r for r in inside if r.get("role") == "variant"]
    if variants:
        points(variants, "variants", s=40, marker="s", color="tab:green", zorder=3)
        for r in variants:
            ax.annotate(
                str(r.get("name", r.get("number"))),
                (_val(r, x_key), _val(r, "accuracy")),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
                color="tab:green",
            )
    if infeasible:
        ax.scatter(*xy(infeasible), s=26, marker="x", c="0.6", label="infeasible", zorder=2)
    _fronts(ax, inside, x_key, xy)
    _family_fronts(ax, inside, x_key)
    floor = next((r.get("floor") for r in done if r.get("floor") is not None), None)
    if floor is not None:
        ax.axhline(floor, color="tab:orange", ls="-.", lw=0.9, zorder=1, label=f"accuracy floor {floor:.3f}")

    others = [r for r in feasible if r.get("role") == "baseline" and r is not _baseline(records)]
    if others:
        ax.scatter(
            *xy(others), s=70, marker="*", c="khaki", edgecolors="0.4", label="baseline, other lr", zorder=5
        )
    _seed_check(ax, records, done, x_key)
    if constant is not None:
        ax.axhline(constant, color="tab:gray", ls="--", lw=1.0, zorder=1, label="constant predictor")

    base = _baseline(records)
    if base is not None and _val(base, x_key) is not None:
        bx, by = _val(base, x_key), _val(base, "accuracy")
        ax.scatter([bx], [by], s=220, marker="*", c="gold", edgecolors="black", label="baseline", zorder=6)
        ax.annotate(
            str(base.get("name") or "baseline"),
            (bx, by),
            textcoords="offset points",
            xytext=(8, -12),
            fontsize=8,
            fontweight="bold",
        )
        # dotted guides: the quadrant up-left of the star dominates the baseline in this projection
        ax.axhline(by, color="0.5", ls=":", lw=0.8, zorder=1)
        ax.axvline(bx, color="0.5", ls=":", lw=0.8, zorder=1)

    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")


def pareto_plots(
    records: Sequence[Record],
    *,
    accuracy_name: str,
    out_dir: str | os.PathLike[str],
    constant: float | None = None,
) -> list[Path]:
    """Accuracy-vs-params (log x) and accuracy-vs-latency scatter plots with the Pareto front.

    Completed feasible trials are points, infeasible ones grey crosses, trials outside the region of
    interest grey rings; the front of each pair (over the region of interest) is a staircase, Pareto
    members on it are ringed red and members that pair dominates (on the front by the other cost) ringed
    orange and labelled so; the accuracy floor is a dash-dot line; the baseline is a labelled star and
    variants are labelled by name. Pruned / failed / running trials are left out. Trials that never left the
    constant-predictor plateau (``plateau == "never"``) are hollow, the constant predictor's level is a
    dashed line, and seed-check trials (role ``verify``) are black mean ± std bars at their source's cost.

    Args:
        records: trial records (see module docstring).
        accuracy_name: y-axis label, e.g. ``"val pck_0.1"``.
        out_dir: folder for ``pareto_accuracy_vs_params.png`` and ``pareto_accuracy_vs_latency.png``.
        constant: the constant predictor's accuracy (same metric and split), or None.

    Returns:
        The two PNG paths.
    """
    out = Path(out_dir)
    paths = []
    for x_key, x_label, fname in (
        ("params", "parameters", "pareto_accuracy_vs_params.png"),
        ("latency_ms", "latency (ms)", "pareto_accuracy_vs_latency.png"),
    ):
        fig = _figure()
        ax = fig.add_subplot()
        _pareto_axes(ax, records, x_key=x_key, x_label=x_label, y_label=accuracy_name, constant=constant)
        xs = [_val(r, x_key) for r in _completed(records)]
        xs = [x for x in xs if x is not None and x > 0]
        # params always span orders of magnitude; latency only sometimes
        if xs and (x_key == "params" or max(xs) / min(xs) > 20):
            ax.set_xscale("log")
        ax.set_title(f"{accuracy_name} vs {x_label}")
        paths.append(_save(fig, out / fname))
    return paths


def pareto_table(
    records: Sequence[Record],
    path: str | os.PathLike[str],
    *,
    objectives: Sequence[str] | None = None,
) -> Path:
    """CSV of all completed trials, sorted by accuracy (descending).

    Columns: number, role, name, accuracy, params, flops, latency_ms, latency_ratio (latency / the
    baseline's), feasible, pareto, region (``in`` / ``plateau`` / ``below floor``: only trials in the region
    of interest are Pareto members), dominates_baseline (``true``/``false``), plateau (``left@<step>`` /
    ``never`` / empty), then the union of the records' ``params_flat`` keys (sorted). Ratio and dominance
    are empty without a baseline; dominance is empty for seed-check (``verify``) rows.

    Args:
        records: trial records.
        path: CSV path.
        objectives: objective keys used for ``dominates_baseline`` (default: all the records carry).

    Returns:
        ``path``.
    """
    done = _completed(records)
    base = _baseline(records)
    base_lat = _val(base, "latency_ms") if base is not None else None
    flat_keys = sorted({k for r in done for k in (r.get("params_flat") or {})})

    def fmt_bool(value: Any) -> str:
        return "true" if value else "false"

    rows = []
    for r in sorted(done, key=lambda r: (-(_val(r, "accuracy") or -math.inf), r.get("number", 0))):
        vals = r.get("values") or {}
        lat = _val(r, "latency_ms")
        row: dict[str, Any] = {
            "number": r.get("number"),
            "role": r.get("role", "search"),
            "name": r.get("name", ""),
            "accuracy": vals.get("accuracy", ""),
            "params": vals.get("params", ""),
            "flops": vals.get("flops", ""),
            "latency_ms": vals.get("latency_ms", ""),
            "latency_ratio": f"{lat / base_lat:.4g}" if lat is not None and base_lat else "",
            "feasible": fmt_bool(r.get("feasible", True)),
            "pareto": fmt_bool(r.get("pareto", False)),
            "family": ((r.get("config") or {}).get("model") or {}).get("backbone", ""),
            "family_pareto": fmt_bool(r.get("family_pareto", False)),
            "region": r.get("region") or "",
            "dominates_baseline": ""
            if base is None or r.get("role") == "verify"
            else fmt_bool(r is not base and dominates(r, base, objectives)),
            "plateau": r.get("plateau") or "",
        }
        flat = r.get("params_flat") or {}
        for key in flat_keys:
            value = flat.get(key, "")
            row[key] = fmt_bool(value) if isinstance(value, bool) else value
        rows.append(row)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=_TABLE_COLUMNS + [k for k in flat_keys if k not in _TABLE_COLUMNS]
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def hypervolume_plot(
    history: Sequence[tuple[float, float]],
    path: str | os.PathLike[str],
    *,
    x_label: str = "trial",
) -> Path:
    """Hypervolume of the feasible front over the course of the study.

    Args:
        history: ``(trial number or elapsed seconds, hypervolume)`` pairs.
        path: PNG path.
        x_label: x-axis label (``"trial"`` or ``"elapsed (s)"``).

    Returns:
        ``path``.
    """
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    pts = sorted((float(x), float(y)) for x, y in history if y is not None and math.isfinite(float(y)))
    if pts:
        xs, ys = zip(*pts, strict=True)
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.6)
        ax.scatter(xs, ys, s=10, color="tab:blue")
        ax.set_xlabel(x_label)
        ax.set_ylabel("hypervolume")
        ax.grid(True, alpha=0.3)
    else:
        _empty(ax, "no hypervolume history")
    ax.set_title("Hypervolume of the feasible Pareto front")
    return _save(fig, path)


def importance_plot(importances: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """Horizontal bar chart of hyperparameter importances, one panel per objective.

    Args:
        importances: objective name → (param name → importance), e.g. from :func:`compute_importances`.
        path: PNG path.

    Returns:
        ``path``.
    """
    items = [(obj, imp) for obj, imp in importances.items() if imp]
    n_params = max((len(imp) for _, imp in items), default=1)
    fig = _figure(4.2 * max(1, len(items)), max(2.5, 0.32 * n_params + 1.2))
    if not items:
        _empty(fig.add_subplot(), "importances not computable (too few completed trials)")
        return _save(fig, path)
    axes = fig.subplots(1, len(items), squeeze=False)[0]
    for ax, (obj, imp) in zip(axes, items, strict=True):
        ranked = sorted(imp.items(), key=lambda kv: kv[1])  # largest on top
        ax.barh([k for k, _ in ranked], [float(v) for _, v in ranked], color="tab:blue")
        ax.set_title(obj)
        ax.set_xlabel("importance")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def compute_importances(study: optuna.Study, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Hyperparameter importances per objective; objectives not computable are left out.

    Uses ``optuna.importance.get_param_importances`` with ``target=lambda t: t.values[i]``. Objectives
    whose importances cannot be computed (too few completed trials, no varying params, a single
    fixed-trial-only study) are skipped, so the result may be ``{}``.

    Args:
        study: the Optuna study (single- or multi-objective).
        names: objective names, in the order of ``study.directions``.

    Returns:
        objective name → (param name → importance).
    """
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        # Optuna 5's default evaluator (PED-ANOVA) ranks params by how they reach LOW target values,
        # so maximised objectives are negated; variance-based evaluators are sign-agnostic anyway.
        try:
            sign = -1.0 if study.directions[i] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "too few trials" / direction notes: noise in reports
                imp = optuna.importance.get_param_importances(
                    study, target=lambda t, i=i, sign=sign: sign * t.values[i]
                )
        except Exception as exc:  # too few trials, empty search space, missing sklearn, ...
            log.info("importances for %s not computable: %s", name, exc)
            continue
        if imp:
            out[str(name)] = {str(k): float(v) for k, v in imp.items()}
    return out


def simulation_plot(
    curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]],
    path: str | os.PathLike[str],
    *,
    default: str = "",
    budget_s: float | None = None,
) -> Path:
    """Hypervolume share vs simulated time: median and interquartile band over seeds, one panel per sampler.

    Args:
        curves: arm (``"sampler/stopping[+warm]"``) → per seed, ``(seconds, hypervolume as a share of the
            table's best)`` after each finished trial.
        path: PNG path.
        default: the arm the spec's defaults run (drawn thicker, marked in the legend).
        budget_s: the study's deadline for starting trials (a vertical line), or None.

    Returns:
        ``path``.
    """
    samplers = list(dict.fromkeys(arm.split("/")[0] for arm in curves))
    fig = _figure(4.2 * max(1, len(samplers)), 3.8)
    axes = fig.subplots(1, max(1, len(samplers)), sharey=True, squeeze=False)[0]
    t_max = max((run[-1][0] for runs in curves.values() for run in runs if run), default=1.0) / 60
    grid = np.linspace(0.0, t_max, 300)
    colors: dict[str, str] = {}
    for arm, runs in curves.items():
        sampler, rest = arm.split("/", 1)
        ax = axes[samplers.index(sampler)]
        color = colors.setdefault(rest, f"C{len(colors)}")
        table = []
        for run in runs:  # each seed's share as a step function of time, held after its end
            ts = np.array([0.0, *(t / 60 for t, _ in run)])
            hv = np.array([0.0, *(h for _, h in run)])
            table.append(hv[np.searchsorted(ts, grid, side="right") - 1])
        if not table:
            continue
        q25, q50, q75 = np.quantile(np.array(table), [0.25, 0.5, 0.75], axis=0)
        label = rest + (" (default)" if arm == default else "")
        ax.plot(grid, q50, color=color, lw=2.4 if arm == default else 1.4, label=label)
        ax.fill_between(grid, q25, q75, color=color, alpha=0.18, lw=0)
    for ax, sampler in zip(axes, samplers, strict=False):
        if budget_s:
            ax.axvline(budget_s / 60, color="0.3", ls="--", lw=1, label="budget (no trial starts after)")
        ax.set_ylim(0.0, 1.02)
        ax.set_title(f"sampler {sampler}")
        ax.set_xlabel("simulated study time (min)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("hypervolume / the table's best (median, IQR)")
    return _save(fig, path)
