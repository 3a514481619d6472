"""How many torch threads a worker uses, and how its OpenMP threads wait.

Measured (README, "Threads under load"; `bench/bench_threads.py`): with OpenMP's default waiting (spin,
then sleep), two threads on a busy 2-core machine were 4-13x slower per train step than one, because a
spinning thread burns the time slice its sibling needs. With ``OMP_WAIT_POLICY=PASSIVE`` two threads were
as fast as one under extra load (ratio 1.04 and 0.18) and 2.6-4x faster otherwise. So every harness process
sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (unless the user set it), and the default is every core
this process may use (CPU affinity / cpuset, not the machine's total), divided among the workers. The knob:
``--threads`` on `run`/`worker`, ``FS_THREADS``, or ``[train] threads`` in the spec.
"""

from __future__ import annotations

import os

__all__ = ["available_cores", "choose_threads", "passive_openmp"]


def passive_openmp() -> None:
    """Default ``OMP_WAIT_POLICY=PASSIVE`` (read by OpenMP when torch loads; no effect afterwards)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, cgroup cpusets), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_threads(*, jobs: int = 1, requested: int = 0) -> tuple[int, str]:
    """Torch threads per worker, and why, in words (printed when a study starts).

    Args:
        jobs: worker processes on this machine.
        requested: threads asked for (flag, ``FS_THREADS`` or the spec); 0 = choose.
    """
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    if requested > 0:
        return requested, f"as requested; OpenMP wait policy {wait}"
    cores = available_cores()
    try:
        load = f", load {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    why = (
        f"{cores} usable cores / {max(1, jobs)} worker(s){load}; OpenMP wait policy {wait}; "
        "override with --threads, FS_THREADS or [train] threads"
    )
    return max(1, cores // max(1, jobs)), why
