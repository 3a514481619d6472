"""How many torch threads a worker uses, and how its OpenMP threads wait.

Measured (README "Threads under load", `bench/bench_threads.py`): with other work on the cores, OpenMP's
default spin-waiting makes two threads many times slower than one, because a spinning thread burns the
time slice its sibling needs; passive waiting removes most of that, and one thread per busy core avoids it.
So every harness process sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (unless the user set it), and
the default thread count is the cores this process may use, divided among the workers, reduced by the
load other processes put on the machine. The knob: ``--threads`` on `run`/`worker`, ``FS_THREADS``, or
``[train] threads`` in the spec; any of these wins over the default.
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
    if requested > 0:
        return requested, "as requested; default: free cores / workers"
    cores = available_cores()
    share = max(1, cores // max(1, jobs))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    free = max(1, int(cores - load + 0.5))  # cores other processes leave idle (1-minute load average)
    threads = max(1, min(share, free // max(1, jobs) or 1))
    why = f"{cores} cores, load {load:.1f}; set --threads, FS_THREADS or [train] threads to override"
    return threads, why
