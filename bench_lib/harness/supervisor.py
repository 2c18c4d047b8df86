"""``effbench run``: the suite in a supervised child process, crash-safe and resumable.

The child is plain ``pytest benchmarks/`` writing the journal. The supervisor prints one line per finished
case as the journal grows, cuts a case that outlives its time limit (a hang inside one C call, which the
child's own alarm cannot interrupt) and records it as ``timeout``, and when the child dies mid-case it
starts a new child with ``--effbench-resume``, which records that case as ``crashed`` and runs the rest.
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
from datetime import datetime, timezone
from pathlib import Path

from bench_lib.harness import device as devices
from bench_lib.harness import journal, runner
from bench_lib.harness.units import format_bytes

# beyond the per-case limit, before the watchdog kills a child stuck in C code (env override for tests)
GRACE_S = float(os.environ.get("EFFBENCH_WATCHDOG_GRACE_S", 30.0))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _die_with_parent():
    """In the child: get SIGKILL when the supervisor dies, so a killed run leaves no orphan writing."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def default_output(results_dir: Path, device: str, profile: str) -> Path:
    from bench_lib.harness import env

    gpu = env.gpu_info() if device == "cuda" else None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return results_dir / env.machine_slug(env.cpu_info(), gpu) / f"{stamp}-{profile}.json"


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


class Supervisor:
    def __init__(self, output: Path, benchmarks: list[str], profile: str, device: str, case_timeout_s: float | None,
                 pytest_args: list[str], stream=sys.stdout):
        self.output = output
        self.journal = journal.Journal(journal.journal_path(output))
        self.log_path = output.with_suffix(".log")
        self.benchmarks, self.profile, self.device = benchmarks, profile, device
        self.case_timeout_s = case_timeout_s
        self.pytest_args = pytest_args
        self.stream = stream
        self.seen = 0
        self._child: subprocess.Popen | None = None

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
        """Run until every case has an outcome; on SIGINT/SIGTERM keep what finished and stop."""
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            last_rc = self._loop(max_restarts)
        except KeyboardInterrupt:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
                self._child.wait()
            self._print_new()
            print("effbench: interrupted; the finished cases are kept (continue with --resume "
                  f"{self.output})", file=self.stream, flush=True)
            self.finish()
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        data = self.finish()
        if last_rc not in (0, 1, 5):
            return last_rc  # pytest itself failed (usage or internal error)
        cases = data["effbench"]["cases"]
        if not cases:
            print("effbench: no case ran; nothing measured", file=self.stream)
            return 2
        return 1 if any(c["outcome"] in ("error", "timeout", "crashed") for c in cases) else 0

    def _loop(self, max_restarts: int) -> int:
        restarts, last_rc = 0, 0
        while True:
            before = len(journal.read(self.journal.path)[1]) if self.journal.exists() else 0
            with open(self.log_path, "a") as log:
                log.write(f"\n$ {' '.join(self._command())}\n")
                log.flush()
                self._child = child = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                                       preexec_fn=_die_with_parent)
                killed = False
                while child.poll() is None:
                    time.sleep(0.3)
                    self._print_new()
                    killed = self._watchdog(child) or killed
                last_rc = child.returncode
            self._print_new()
            # the child also ends itself (CONTEXT_LOST_EXIT) after a sticky CUDA error, its case recorded
            interrupted = (killed or self.journal.running() is not None or last_rc < 0
                           or last_rc == devices.CONTEXT_LOST_EXIT)
            if not interrupted:
                break
            after = len(journal.read(self.journal.path)[1])
            restarts += 1
            print(f"effbench: the child process {'was killed by the watchdog' if killed else f'died (exit {last_rc})'}; "
                  "resuming with the remaining cases", file=self.stream, flush=True)
            if restarts > max_restarts or (after == before and not killed and self.journal.running() is None):
                break
        if last_rc == 5:
            print(f"effbench: pytest collected no benchmarks from {' '.join(self.benchmarks)}", file=self.stream)
        elif last_rc not in (0, 1):
            print(f"effbench: pytest exited {last_rc}; see {self.log_path}", file=self.stream)
        return last_rc

    def finish(self) -> dict:
        from bench_lib.harness import env

        data = journal.assemble(self.journal.path, finished_at=runner.now())
        data["effbench"]["gpu_after"] = env.gpu_state()
        journal.write_atomic(self.output, json.dumps(data, indent=1, allow_nan=True, default=str))
        print_summary(data["effbench"]["cases"], self.stream)
        print(f"run: {self.output}\njournal: {self.journal.path}\nlog: {self.log_path}", file=self.stream)
        return data


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
    from bench_lib.harness import device as devices

    benchmarks = args.benchmarks or ["benchmarks"]
    for b in benchmarks:
        if not Path(b.split("::")[0]).exists():
            print(f"effbench run: {b} not found. Run from an effbench checkout (it has benchmarks/) or pass "
                  "--benchmarks PATH.", file=sys.stderr)
            return 2, None
    if args.resume:
        output = Path(args.resume)
        if not journal.journal_path(output).exists():
            print(f"effbench run --resume: no journal {journal.journal_path(output)} beside {output}", file=sys.stderr)
            return 2, None
        header, _ = journal.read(journal.journal_path(output))
        profile, device = header["profile"], header["device"]
    else:
        profile = args.profile
        try:
            device = devices.resolve(args.device).type
        except (ValueError, RuntimeError) as exc:
            print(f"effbench run: {exc}", file=sys.stderr)
            return 2, None
        output = Path(args.output) if args.output else default_output(Path(args.results_dir), device, profile)
        if journal.journal_path(output).exists():
            print(f"effbench run: {journal.journal_path(output)} exists; use --resume {output} or another --output",
                  file=sys.stderr)
            return 2, None
    output.parent.mkdir(parents=True, exist_ok=True)
    extra = ["--model", args.model] if getattr(args, "model", None) else []
    sup = Supervisor(output, benchmarks, profile, device, args.case_timeout, extra + list(args.pytest_args or []))
    print(f"effbench run: profile {profile}, device {device}, output {output}", flush=True)
    return sup.run(), output
