"""`python -m search ARGS` and `python -c CODE` in processes forked from one that has imported the heavy libraries.

The end-to-end tests start about 70 such commands and 30 racing processes; each fresh interpreter pays
~3 CPU-s to import torch, MLflow, Optuna and their dependencies before doing a second of work, a fifth of
the suite's CPU on a 2-core machine (README, "Tests"). A zygote imports those third-party libraries once
per pytest process and forks a child per command. The child is a separate process in every way a test can observe: its own
pid, working directory and environment, stdin from /dev/null, stdout and stderr captured to files, exit
code and atexit handlers as a real exit. `search` itself is imported anew in each child, after its
environment is set, because some of its modules read settings from the environment when they load.
Commands whose environments differ in what a library reads when it loads (OpenMP, MKL, torch, MLflow
variables) get zygotes of their own.

Fork safety: the zygote is single-threaded (`serve` asserts it before the first fork) and has run no torch
operation, so no OpenMP pool exists to be lost in a child.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Read by a library when it loads, so a child inherits the zygote's value whatever its own environment says.
_LOAD_TIME_PREFIXES = (
    "OMP_",
    "MKL_",
    "KMP_",
    "GOMP_",
    "TORCH",
    "PYTORCH",
    "MLFLOW_",
    "OPTUNA_",
    "PYTHON",
    "MPL",
)

#: What the zygote imports: every heavy third-party module a `search` command loads (not `search`).
_PRELOAD = (
    "numpy",
    "torch",
    "torch._dynamo",  # torch.optim and the FLOP counter import it on first use (~1 CPU-s)
    "torch.utils.flop_counter",
    "optuna",
    "optuna.importance",
    "sklearn.ensemble",
    "mlflow",
    "mlflow.tracking",
    "sqlalchemy",
    "alembic",
    "matplotlib",
    "tqdm.auto",
    "PIL.Image",
)


def _load_time_key(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of ``env`` that libraries read when they load: commands that agree on it share a zygote."""
    env = {"OMP_WAIT_POLICY": "PASSIVE", **env}  # what a harness process sets before torch loads
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(_LOAD_TIME_PREFIXES)))


# --------------------------------------------------------------------------------------------------
# The zygote process
# --------------------------------------------------------------------------------------------------


def serve(requests_fd: int, replies_fd: int) -> None:
    """Import the heavy libraries, then fork one child per request until the request pipe closes."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    assert threading.active_count() == 1, "the zygote must be single-threaded to fork safely"
    gc.freeze()  # the children's collections skip the preloaded objects (and leave their pages shared)
    sys.stdout.flush()
    sys.stderr.flush()
    requests = os.fdopen(requests_fd, "r")
    replies = os.fdopen(replies_fd, "w", buffering=1)
    for line in requests:
        request = json.loads(line)
        if "reap" in request:  # the child has ended (the caller saw its pidfd): its exit code
            _, status = os.waitpid(request["reap"], 0)
            replies.write(f"{os.waitstatus_to_exitcode(status)}\n")
            continue
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            _child(request)  # never returns
        replies.write(f"{pid}\n")


def _child(request: dict) -> None:
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_TRUNC),
        ):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        if request.get("code") is None:
            sys.path[:] = [os.getcwd(), *(p for p in sys.path[1:] if p)]  # as `python -m` sets it
            sys.argv = ["-m", *request["args"]]  # runpy puts the module's path first, as `python -m` does
        else:
            sys.path[:] = ["", *(p for p in sys.path[1:] if p)]  # as `python -c` sets it
            sys.argv = ["-c", *request["args"]]
        code = _run(request.get("code"))
    finally:
        os._exit(code)


def _run(code_text: str | None) -> int:
    """`python -m search` (no code) or `python -c CODE`, with the interpreter's exit behaviour."""
    import runpy
    import traceback

    try:
        if code_text is None:
            runpy.run_module("search", run_name="__main__", alter_sys=True)
        else:
            exec(compile(code_text, "<string>", "exec"), {"__name__": "__main__"})
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        _flush_and_run_atexit()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # die by the signal, as the interpreter does
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    _flush_and_run_atexit()
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _flush_and_run_atexit() -> None:
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


# --------------------------------------------------------------------------------------------------
# The test side
# --------------------------------------------------------------------------------------------------


class _Zygote:
    def __init__(self, env: dict[str, str]) -> None:
        requests_r, self._requests = os.pipe()
        self._replies, replies_w = os.pipe()
        code = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import zygote; zygote.serve({requests_r}, {replies_w})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(requests_r, replies_w),
            env={"OMP_WAIT_POLICY": "PASSIVE", **env},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        os.close(requests_r)
        os.close(replies_w)
        self._reader = os.fdopen(self._replies, "r")
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._requests)  # EOF: the zygote leaves its loop
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def call(self, request: dict) -> int:
        """Send one request; its reply (a pid, or an exit code) comes at once."""
        with self._lock:
            os.write(self._requests, (json.dumps(request) + "\n").encode())
            line = self._reader.readline()
        if not line:
            raise RuntimeError(f"the test zygote exited (code {self.proc.poll()})")
        return int(line)


class Child:
    """A process forked from a zygote, used like `subprocess.Popen` with its output in files."""

    def __init__(
        self, zygote: _Zygote, args: list[str], cwd: Path, env: dict[str, str], code: str | None
    ) -> None:
        self._zygote = zygote
        self._tmp = tempfile.TemporaryDirectory(prefix="zygote-")
        self._out, self._err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        self._out.touch()
        self._err.touch()
        self.args = ["python", *(["-m", "search"] if code is None else ["-c", code]), *args]
        self.returncode: int | None = None
        request = {"args": args, "cwd": str(cwd), "env": env, "code": code}
        self.pid = zygote.call({**request, "stdout": str(self._out), "stderr": str(self._err)})

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            fd = os.pidfd_open(self.pid)  # readable once the child has ended (it is the zygote's to reap)
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    raise subprocess.TimeoutExpired(self.args, timeout)
            finally:
                os.close(fd)
            self.returncode = self._zygote.call({"reap": self.pid})
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait (killing the child after ``timeout``, as `subprocess.run` does) and return its output."""
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        finally:
            out, err = self._out.read_text(errors="replace"), self._err.read_text(errors="replace")
            if self.returncode is not None:
                self._tmp.cleanup()
        return out, err


_zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}


def spawn(args: list[str], cwd: Path, env: dict[str, str], *, code: str | None = None) -> Child:
    """Start `python -m search ARGS` (or `python -c CODE ARGS`) in ``cwd`` with exactly ``env``, forked from
    a zygote started with the same load-time environment (one per such environment and pytest process)."""
    key = _load_time_key(env)
    zygote = _zygotes.get(key)
    if zygote is None or zygote.proc.poll() is not None:
        zygote = _zygotes[key] = _Zygote(env)
    return Child(zygote, args, cwd, env, code)


def run_search(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """`python -m search ARGS` to its end, like `subprocess.run(..., capture_output=True, text=True)`."""
    child = spawn(args, cwd, env)
    out, err = child.communicate(timeout)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)
