"""The two sides of ``effbench ab``, and the worker process each runs in.

A side is a Python interpreter (a venv's ``bin/python``: its packages are what differ) or a git ref of
the suite (checked out into a temporary worktree and run with this interpreter: the code is what differs),
plus environment variables (``--a-env KEY=VALUE``). Its worker is
``PYTHON -m bench_lib.gate.ab_worker`` started in that side's tree with the tree first on PYTHONPATH, so
the side measures with its own harness and suites. :class:`WorkerProcess` speaks the worker's JSON-lines
protocol (:mod:`bench_lib.gate.ab_worker`) with a time limit on every reply; a worker that dies or stops
answering raises :class:`WorkerDied` / :class:`WorkerTimeout`, and the run restarts it for the next case.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_lib.harness.runfile import BadInput


class WorkerDied(Exception):
    """The worker process exited (killed, segfault, out of host memory) before it replied."""


class WorkerTimeout(Exception):
    """The worker did not reply within the time limit; it has been killed."""


@dataclass(frozen=True)
class Side:
    """name: ``A`` or ``B``; spec: what the user gave; python: the interpreter; tree: the checkout whose
    bench_lib and benchmarks/ the worker uses; ref: the git ref when the side is one; env: added variables."""

    name: str
    spec: str
    python: str
    tree: str
    ref: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "python": self.python, "tree": self.tree, "ref": self.ref, "env": dict(self.env)}


def parse_env(pairs: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{flag} {item!r}: write KEY=VALUE (e.g. {flag} EFFBENCH_PLANT_SLOWDOWN='attention/*=1.1')")
        out[key] = value
    return out


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def resolve(name: str, spec: str, env: dict[str, str], repo: Path) -> Side:
    """``spec`` as an interpreter (an existing executable file) or else a git ref of ``repo``."""
    path = Path(spec).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return Side(name, spec, str(path), str(repo), None, env)
    if path.is_dir() and (path / "bin" / "python").is_file():
        return Side(name, spec, str(path / "bin" / "python"), str(repo), None, env)
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}").returncode == 0:
        return Side(name, spec, sys.executable, "", spec, env)
    raise BadInput(f"--{name.lower()} {spec!r} is neither a Python interpreter (a venv's bin/python) nor a git ref "
                   f"of {repo}")


@contextlib.contextmanager
def checked_out(side: Side, repo: Path):
    """The side with its tree ready: a git ref is checked out into a temporary worktree, removed afterwards."""
    if side.ref is None:
        yield side
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"effbench-ab-{side.name.lower()}-"))
    tree = tmp / "tree"
    added = _git(repo, "worktree", "add", "--detach", str(tree), side.ref)
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInput(f"cannot check out {side.ref!r}: {added.stderr.strip()}")
    try:
        if not (tree / "bench_lib" / "gate" / "ab_worker.py").is_file():
            raise BadInput(f"git ref {side.ref!r} has no bench_lib/gate/ab_worker.py (it predates effbench ab): "
                           "pick a ref that has it, or a venv's python with that code installed")
        yield Side(side.name, side.spec, side.python, str(tree), side.ref, side.env)
    finally:
        _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)


def parse_cpus(text: str | None) -> list[int] | None:
    """``"0"``, ``"0,1"`` or ``"0-3"`` -> sorted core numbers (None: leave the affinity as it is)."""
    if not text:
        return None
    cpus = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise BadInput(f"--cpus {text!r}: write core numbers like 0 or 0,1 or 0-3") from None
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(cpus)
    if not cpus or not cpus <= usable:
        raise BadInput(f"--cpus {text!r}: this process may use cores {sorted(usable)} only")
    return sorted(cpus)


PRIORITIES = ("normal", "high", "realtime")


def check_priority(level: str, cpus: list[int] | None) -> None:
    if level not in PRIORITIES:
        raise BadInput(f"--priority {level!r}: choose one of {', '.join(PRIORITIES)}")
    if level == "realtime" and not cpus:
        raise BadInput("--priority realtime needs --cpus (e.g. --cpus 0): a real-time worker left free on every core "
                       "would take the whole machine; pinned, it holds only those cores")


def _set_priority(level: str) -> None:
    """In the worker, before exec: ``high`` = nice -20, ``realtime`` = SCHED_FIFO 1 (nice -20 where refused).

    Refusal (no root / CAP_SYS_NICE) leaves the worker as it was; :func:`applied_priority` reads what it got.
    """
    if level == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            return
        except (OSError, AttributeError):
            pass
    if level in ("high", "realtime"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -20)


def applied_priority(pid: int) -> str | None:
    """What process ``pid`` runs at: ``SCHED_FIFO <prio>`` or ``nice <n>`` (None where not readable)."""
    try:
        if os.sched_getscheduler(pid) == os.SCHED_FIFO:
            return f"SCHED_FIFO {os.sched_getparam(pid).sched_priority}"
        return f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"
    except (OSError, AttributeError):
        return None


class WorkerProcess:
    """One side's worker: ``request(op, timeout_s)`` sends a request and waits for its reply line.

    ``cpus``: cores the worker is pinned to (both sides get the same list). Two workers left free to sit on
    different cores of a shared machine meet different neighbours: on the 2-core test machine at load 10,
    single-threaded A/A pairs then disagreed by -34% and +30% for whole cases; pinned to one core, by 1-6%.

    ``priority``: ``high`` (nice -20) or ``realtime`` (SCHED_FIFO) keeps the machine's other work from
    preempting the timed calls; both sides get the same. On the 2-core test machine with three busy
    neighbours (load 4), A/A pairs' spread (1.48 MAD of log b/a, median over 15 cases) was 0.080 at nice 0,
    0.034 at nice -20 and 0.026 under SCHED_FIFO. ``applied`` is what the running worker got.
    """

    def __init__(self, side: Side, profile: str, device: str, command: list[str] | None = None,
                 stderr_path: str | None = None, cpus: list[int] | None = None, priority: str = "normal"):
        self.side, self.profile, self.device, self.cpus = side, profile, device, cpus
        self.priority, self.applied = priority, None
        self.command = command or [side.python, "-m", "bench_lib.gate.ab_worker", "--profile", profile, "--device", device]
        self.stderr_path = stderr_path
        self.proc: subprocess.Popen | None = None
        self._buffer = b""
        self.setup: list[dict[str, Any]] = []  # replayed on every (re)start, e.g. the collect request
        self.startup_timeout_s: float | None = 900.0

    def start(self) -> None:
        env = {**os.environ, **self.side.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.side.tree, os.environ.get("PYTHONPATH", "")) if p)
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(open(self.stderr_path, "ab")) if self.stderr_path else subprocess.DEVNULL
            cpus, priority = self.cpus, self.priority

            def prepare() -> None:  # in the child, before exec
                if cpus:
                    os.sched_setaffinity(0, cpus)
                _set_priority(priority)

            needed = bool(cpus) or priority != "normal"
            self.proc = subprocess.Popen(self.command, cwd=self.side.tree or None, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, preexec_fn=prepare if needed else None)
        self.applied = applied_priority(self.proc.pid)
        self._buffer = b""
        for request in self.setup:
            reply = self.request(request, self.startup_timeout_s)
            if not reply.get("ok"):
                raise WorkerDied(f"side {self.side.name}'s worker could not start: {reply.get('error')}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The running worker's process id (recorded with each block of pairs it takes)."""
        return self.proc.pid if self.proc is not None else None

    def send(self, request: dict[str, Any]) -> None:
        if not self.alive():
            self.start()
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._died()) from None

    def receive(self, timeout_s: float | None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out = self.proc.stdout
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.kill()
                    raise WorkerTimeout(f"side {self.side.name}'s worker gave no reply within {timeout_s:g} s")
                if not sel.select(left):
                    continue
                chunk = os.read(out.fileno(), 1 << 16)
                if not chunk:
                    raise WorkerDied(self._died())
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        self.send(request)
        return self.receive(timeout_s)

    def _died(self) -> str:
        code = self.proc.wait() if self.proc is not None else None
        self.proc = None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return f"side {self.side.name}'s worker died ({how}) while this case was running"

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def quit(self) -> None:
        if self.alive():
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        self.kill()
