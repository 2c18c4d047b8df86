"""``effbench run``: the suite in a supervised child process, crash-safe and resumable.

The child is plain ``pytest benchmarks/`` writing the journal. The supervisor prints one line per finished
case as the journal grows, cuts a case that outlives its time limit (a hang inside one C call, which the
child's own alarm cannot interrupt) and records it as ``timeout``, and when the child dies mid-case it
records that case as ``crashed`` and starts a new child with ``--effbench-resume`` for the rest. A stop from
outside (SIGINT, SIGTERM; or SIGKILL of the whole run, seen on ``--resume``) leaves the running case to be run
again. The supervisor holds the journal's lock for the whole run, so a second run on the same output refuses.
At the end the run JSON is assembled from the journal, so nothing finished is ever lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench_lib.harness import device as devices
from bench_lib.harness import journal, resume, runner
from bench_lib.harness.units import format_bytes

# beyond the per-case limit, before the watchdog kills a child stuck in C code (env override for tests)
GRACE_S = float(os.environ.get("EFFBENCH_WATCHDOG_GRACE_S", 30.0))


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the supervisor: a stop from outside, not the running case's fault."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def _raise_interrupt(signum, frame):
    raise Interrupted(signum)


def _death(rc: int) -> str:
    """A child's exit status in words: ``signal SIGSEGV`` or ``exit 3``."""
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-rc).name}"
    return f"exit {rc}"


def _die_with_parent():
    """In the child: get SIGKILL when the supervisor dies, so a killed run leaves no orphan writing."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def format_seconds(s) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def live_line(n: int, rec: dict) -> str:
    m = rec.get("metrics", {})
    detail = rec.get("reason") or ""
    return (f"[{n:4d}] {rec['outcome']:<11} {rec['suite']}/{rec['id']:<60} {format_seconds(m.get('time_s')):>10} "
            f"peak {format_bytes(m.get('peak_bytes')):>10}  {detail[:100]}")


def prepare_line(rec: dict) -> str:
    """A preparation's live line: what was trained before the cases, and how long it took."""
    if rec.get("outcome") != "ok":
        return f"[prep] {rec.get('outcome')!s:<11} {rec.get('name')}  {str(rec.get('reason') or '')[:100]}"
    done = "found in the cache" if rec.get("reused") else f"trained in {format_seconds(rec.get('trained_here_s'))}"
    return f"[prep] ok          {rec.get('name')}  {done}"


class Supervisor:
    def __init__(self, output: Path, benchmarks: list[str], profile: str, device: str, case_timeout_s: float | None,
                 pytest_args: list[str], stream=sys.stdout, locked: journal.Journal | None = None):
        self.output = output
        self.journal = locked or journal.Journal(journal.journal_path(output))
        self.lock_fd = self.journal.lock()
        self.log_path = output.with_suffix(".log")
        self.benchmarks, self.profile, self.device = benchmarks, profile, device
        self.case_timeout_s = case_timeout_s
        self.pytest_args = pytest_args
        self.stream = stream
        self.seen = 0
        self.seen_prepared = 0
        self._child: subprocess.Popen | None = None
        self._log_offset = 0  # where the current child's output starts in the log

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "pytest", *self.benchmarks, f"--profile={self.profile}", f"--device={self.device}",
               f"--effbench-journal={self.journal.path}", "-p", "no:cacheprovider", "-q", "-rN"]
        if self.journal.exists():
            cmd.append("--effbench-resume")
        if self.case_timeout_s:
            cmd.append(f"--effbench-case-timeout={self.case_timeout_s}")
        return cmd + self.pytest_args

    def _limit(self) -> float:
        from bench_lib.harness import profiles

        return (self.case_timeout_s or profiles.get(self.profile).case_timeout_s) + GRACE_S

    def _print_new(self) -> None:
        if not self.journal.path.exists():
            return
        _, records = journal.read(self.journal.path)
        for rec in records[self.seen:]:
            self.seen += 1
            print(live_line(self.seen, rec), file=self.stream, flush=True)
        prepared = journal.preparations(self.journal.path)
        for rec in prepared[self.seen_prepared:]:
            self.seen_prepared += 1
            print(prepare_line(rec), file=self.stream, flush=True)

    def _watchdog(self, child: subprocess.Popen) -> bool:
        """Kill a child whose current case outlived its limit; record it as timeout. True if killed."""
        info = self.journal.running()
        if not info or info.get("pid") != child.pid:
            return False
        started = datetime.fromisoformat(info["started_at"]).timestamp()
        if time.time() - started <= self._limit():
            return False
        child.kill()
        child.wait()
        self.journal.append({
            "type": "case", "id": info["id"], "suite": info["suite"], "nodeid": info.get("nodeid"), "case": {},
            "outcome": "timeout", "reason": f"still running after {self._limit():.0f} s (hung in native code?); "
                                            "killed by the effbench run watchdog",
            "metrics": {}, "memory": {}, "samples_s": [], "series": {}, "started_at": info["started_at"],
            "finished_at": runner.now()})
        self.journal.clear_running()
        return True

    def run(self, max_restarts: int = 1000) -> int:
        """Run until every case has an outcome; on SIGINT/SIGTERM keep what finished and stop (exit 130)."""
        previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            last_rc = self._loop(max_restarts)
        except KeyboardInterrupt as exc:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
                self._child.wait()
            self.journal.settle_running(runner.now(), signal_name=getattr(exc, "signal_name", "SIGINT"))
            self._print_new()
            print("effbench: interrupted; the finished cases are kept (continue with --resume "
                  f"{self.output})", file=self.stream, flush=True)
            if self.journal.exists():  # else stopped before the header: there is no run to write
                self._finish_or_say()
            return 130
        except OSError as exc:
            if not journal.is_disk_full(exc):
                raise
            return self._disk_full()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if last_rc == journal.DISK_FULL_EXIT or (last_rc not in (0, 1, 5) and _disk_full_at(self.output.parent)):
            return self._disk_full()
        if not self.journal.exists():  # the child died before its header: pytest refused to start
            self._show_child_log()
            return 2 if last_rc in (0, 4, 5) else last_rc
        data = self._finish_or_say()
        if data is None:
            return self._disk_full(writing_run_file=True)
        if last_rc not in (0, 1, 5):
            self._show_child_log()
            return last_rc  # pytest itself failed (usage or internal error)
        cases = data["effbench"]["cases"]
        if not cases:
            print("effbench: no case ran; nothing measured", file=self.stream)
            return 2
        return 1 if any(c["outcome"] in ("error", "timeout", "crashed") for c in cases) else 0

    def _loop(self, max_restarts: int) -> int:
        restarts, last_rc = 0, 0
        env = {**os.environ, journal.LOCK_FD_ENV: str(self.lock_fd)}
        while True:
            before = len(journal.read(self.journal.path)[1]) if self.journal.exists() else 0
            with open(self.log_path, "a") as log:
                log.write(f"\n$ {' '.join(self._command())}\n")
                log.flush()
                self._log_offset = log.tell()
                self._child = child = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                                       preexec_fn=_die_with_parent, env=env, pass_fds=(self.lock_fd,))
                killed = False
                while child.poll() is None:
                    time.sleep(0.3)
                    self._print_new()
                    killed = self._watchdog(child) or killed
                last_rc = child.returncode
            self._print_new()
            if last_rc == journal.DISK_FULL_EXIT:
                break
            crashed = self.journal.settle_running(runner.now(), died=_death(last_rc))
            if crashed:
                self._print_new()
            # the child also ends itself (CONTEXT_LOST_EXIT) after a sticky CUDA error, its case recorded
            if not (killed or crashed or last_rc < 0 or last_rc == devices.CONTEXT_LOST_EXIT):
                break
            after = len(journal.read(self.journal.path)[1])
            restarts += 1
            print(f"effbench: the child process {'was killed by the watchdog' if killed else f'died ({_death(last_rc)})'}; "
                  "resuming with the remaining cases", file=self.stream, flush=True)
            if restarts > max_restarts or (after == before and not killed):
                break
        if last_rc == 5 and not (self.journal.exists() and journal.read(self.journal.path)[1]):
            print(f"effbench: pytest collected no benchmarks from {' '.join(self.benchmarks)}", file=self.stream)
        elif last_rc not in (0, 1, journal.DISK_FULL_EXIT):
            print(f"effbench: pytest exited {last_rc}; see {self.log_path}", file=self.stream)
        return last_rc

    def _disk_full(self, writing_run_file: bool = False) -> int:
        """The disk under the output is full: say where the run stopped and how to go on; exit 1."""
        info = self.journal.running()
        self.journal.clear_running()  # the case whose record could not be written is run again on resume
        _, records = journal.read(self.journal.path) if self.journal.exists() else (None, [])
        if writing_run_file:
            where = f"writing the run file {self.output}"
        elif info:
            where = f"at case {info['suite']}/{info['id']}"
        else:
            where = f"after case {records[-1]['suite']}/{records[-1]['id']}" if records else "before the first case"
        print(f"effbench: disk full {where}: free space and run --resume {self.output} "
              f"({len(records)} finished cases are kept in {self.journal.path})", file=self.stream, flush=True)
        return 1

    def _show_child_log(self) -> None:
        """What pytest said, from the log: a refused argument or a failed start is explained there."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(self._log_offset)
                lines = [line for line in f.read().splitlines() if line.strip()]
        except OSError:
            lines = []
        print("effbench: pytest stopped before the run started:" if not self.journal.exists() else
              "effbench: pytest stopped:", file=sys.stderr)
        for line in lines[-15:]:
            print(f"  {line}", file=sys.stderr)
        print(f"(full log: {self.log_path})", file=sys.stderr)

    def _finish_or_say(self) -> dict | None:
        """:meth:`finish`, or None when the disk is too full to write the run file (the journal has it all)."""
        try:
            return self.finish()
        except OSError as exc:
            if not journal.is_disk_full(exc):
                raise
            return None

    def finish(self) -> dict:
        from bench_lib.harness import env

        data = journal.assemble(self.journal.path, finished_at=runner.now())
        data["effbench"]["gpu_after"] = env.gpu_state()
        journal.write_atomic(self.output, json.dumps(data, indent=1, allow_nan=True, default=str))
        print_summary(data["effbench"]["cases"], self.stream)
        print(f"run: {self.output}\njournal: {self.journal.path}\nlog: {self.log_path}", file=self.stream)
        return data


def _disk_full_at(folder: Path, probe_bytes: int = 16384) -> bool:
    """True when ``folder`` cannot take another journal line: a child that failed oddly may have hit ENOSPC
    while writing its log before it could say so."""
    probe = folder / ".effbench-space-probe"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return journal.is_disk_full(exc)
    finally:
        probe.unlink(missing_ok=True)
    return False


def print_summary(cases: list[dict], stream=sys.stdout) -> None:
    from collections import Counter

    by_suite: dict[str, Counter] = {}
    for c in cases:
        by_suite.setdefault(c["suite"], Counter())[c["outcome"]] += 1
    outcomes = ("ok", "unsupported", "oom", "error", "timeout", "crashed")
    print(f"\n{'suite':<14}" + "".join(f"{o:>12}" for o in outcomes), file=stream)
    for suite, counts in by_suite.items():
        print(f"{suite:<14}" + "".join(f"{counts.get(o, 0):>12}" for o in outcomes), file=stream)


def run_from_args(args) -> tuple[int, Path | None]:
    """Run the suite as ``effbench run`` was asked: (exit code, the run file, or None when nothing ran)."""
    benchmarks = args.benchmarks or ["benchmarks"]
    for b in benchmarks:
        if not Path(b.split("::")[0]).exists():
            print(f"effbench run: {b} not found. Run from an effbench checkout (it has benchmarks/) or pass "
                  "--benchmarks PATH.", file=sys.stderr)
            return 2, None
    try:
        output, profile, device, locked = resume.prepare(args)
    except resume.RunRefused as exc:
        print(f"effbench run: {exc}", file=sys.stderr)
        return 2, None
    extra = ["--model", args.model] if getattr(args, "model", None) else []
    sup = Supervisor(output, benchmarks, profile, device, args.case_timeout, extra + list(args.pytest_args or []),
                     locked=locked)
    print(f"effbench run: profile {profile}, device {device}, output {output}", flush=True)
    rc = sup.run()
    return rc, output if output.exists() else None
