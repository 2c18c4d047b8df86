"""The pytest plugin: ``pytest benchmarks/`` as plain pytest-benchmark, with effbench's rules underneath.

- options ``--profile``, ``--device``, ``--model``, ``--effbench-journal``, ``--effbench-resume``,
  ``--effbench-case-timeout``;
- parametrizes ``case`` in modules marked ``effbench_suite(name)`` from that suite's grid;
- the ``measure`` fixture runs a case through :func:`bench_lib.harness.runner.run_case` and hands the timed
  rounds, as effbench measured them, to pytest-benchmark's ``pedantic`` (``iterations`` = calls per sample),
  so ``--benchmark-json`` and ``pytest-benchmark compare`` see the same samples,
  journals the record, and turns the outcome into a pytest outcome: ``ok`` passes, ``unsupported`` and
  ``oom`` skip with their reason (they are data), ``error``/``timeout`` fail;
- adds the environment to ``machine_info["effbench"]`` and every case record to the JSON's ``effbench`` key.

Nothing that can skip or fail runs inside ``pedantic`` (it only replays measured samples), whose exceptions
pytest-benchmark would treat as errors and leave out of the file: a skip never costs the run file.
"""

from __future__ import annotations

import contextlib
import gc
import json
from pathlib import Path

import pytest

from bench_lib.harness import device as devices
from bench_lib.harness import env, journal, memory, profiles, resume, runner
from bench_lib.harness.workload import Case, Context, Unsupported

CALIBRATION = "calibration"


def pytest_addoption(parser):
    group = parser.getgroup("effbench")
    group.addoption("--profile", default="quick", choices=profiles.PROFILE_CHOICES,
                    help="grid and measuring effort: smoke (tiny, every case once), quick (default), full (nightly)")
    group.addoption("--device", default="auto", choices=devices.DEVICE_CHOICES, help="where cases run (auto: CUDA if present)")
    group.addoption("--model", default=None, metavar="PATH_OR_ID",
                    help="a real checkpoint for quality numbers instead of random-weight presets")
    group.addoption("--effbench-journal", default=None, metavar="PATH.jsonl",
                    help="journal file (default: beside --benchmark-json)")
    group.addoption("--effbench-resume", action="store_true",
                    help="skip cases the journal already holds; run an interrupted case again (once)")
    group.addoption("--effbench-case-timeout", type=resume.case_timeout_s, default=None, metavar="S",
                    help="per-case time limit in seconds (default: the profile's)")
    group.addoption("--effbench-shard", default=None, metavar="R/N",
                    help="run only rank R's share of N (a sharded sweep; effbench run under torchrun sets it)")


class EffbenchSession:
    """Per-session state: device, profile, context, journal and every case record."""

    def __init__(self, config):
        self.config = config
        self.profile = profiles.get(config.getoption("profile"))
        self.device = devices.resolve(config.getoption("device"))
        self.ctx = Context(self.device, self.profile, options={"model": config.getoption("model")})
        self.timeout_s = config.getoption("effbench_case_timeout") or self.profile.case_timeout_s
        self.records: list[dict] = []
        self.prepared: list[dict] = []  # what the session prepared before its cases (Preparation records)
        self.started_at = runner.now()
        self.env = env.record(self.device, self.profile.name)
        _quiet_transformers()
        memory.settle_allocator()
        memory.warm_profiler(self.device)
        self.env_after = None
        path = config.getoption("effbench_journal")
        bench_json = _benchmark_json_path(config)
        if path is None and bench_json is not None:
            path = journal.journal_path(bench_json)
        self.journal = journal.Journal(path) if path else None
        self.resume = config.getoption("effbench_resume")
        self.disk_full = False
        self.done: set[tuple[str, str]] = set()
        if self.journal is not None:
            self._open_journal()

    def _open_journal(self):
        try:
            self.journal.lock()
        except journal.JournalLocked as exc:
            raise pytest.UsageError(str(exc)) from None
        if self.resume and self.journal.exists():
            try:
                header, _ = journal.read(self.journal.path)
            except (ValueError, UnicodeDecodeError) as exc:
                raise pytest.UsageError(f"{self.journal.path} cannot be resumed: {exc}") from None
            if header is None:
                raise pytest.UsageError(f"{self.journal.path} cannot be resumed: it has no header line")
            note = journal.repair_tail(self.journal.path)
            if note:
                print(f"\neffbench: {note}; the next record starts on a fresh line")
            settled = self.journal.settle_running(runner.now())  # a marker left by a pytest that died
            if settled:
                print(f"\neffbench: {settled['suite']}/{settled['id']}: {settled['reason']}")
            self.done = journal.done_keys(self.journal.path)
            for rec in journal.assemble(self.journal.path)["effbench"]["cases"]:
                self.update_ceilings(rec)  # a resumed run reports fractions of the same ceilings
            return
        if self.journal.exists():
            raise pytest.UsageError(
                f"{self.journal.path} already holds a run. Continue it with --effbench-resume "
                "(effbench run --resume RUN.json), or write to another file."
            )
        self.journal.write_header(self.header())

    def header(self) -> dict:
        from pytest_benchmark import __version__ as pb_version
        from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
        from pytest_benchmark.utils import get_commit_info

        machine = pytest_benchmark_generate_machine_info()
        update_machine_info(self, machine)
        return {
            "machine_info": machine,
            "commit_info": get_commit_info(),
            "profile": self.profile.name,
            "device": self.device.type,
            "started_at": self.started_at,
            "pytest_benchmark_version": pb_version,
        }

    def prepare(self, items) -> None:
        """Run every preparation the selected cases' suites ask for (``effbench_suite(..., prepare=FN)``,
        ``FN(cases, ctx) -> [Preparation]``) once, before the first case, each under the profile's
        ``prepare_timeout_s`` and outside every case's limit; journal each as a ``prepare`` record."""
        wanted: dict = {}
        for item in items:
            marker = item.get_closest_marker("effbench_suite")
            fn = marker.kwargs.get("prepare") if marker else None
            case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
            if fn is not None and isinstance(case, Case):
                wanted.setdefault(fn, []).append(case)
        seen: set[str] = set()
        for fn, cases in wanted.items():
            for prep in fn(cases, self.ctx):
                if prep.name not in seen:
                    seen.add(prep.name)
                    self._prepare_one(prep, cases[0].suite)

    def _prepare_one(self, prep, suite: str) -> None:
        rec = {"type": "prepare", "name": prep.name, "suite": suite, "outcome": None, "reason": None,
               "started_at": runner.now()}
        print(f"\neffbench: preparing {prep.name} for the {suite} cases", flush=True)
        limit = self.profile.prepare_timeout_s
        try:
            with runner.time_limit(limit):
                rec.update(prep.run())
            rec["outcome"] = "ok"
        except runner.CaseTimeout:
            rec["outcome"] = "timeout"
            rec["reason"] = f"preparation exceeded its limit of {limit:g} s (the profile's prepare_timeout_s)"
        except Exception as exc:  # the cases that need it end as errors naming this; the others run
            rec["outcome"], rec["reason"] = "error", runner._reason(exc)
        finally:
            rec["finished_at"] = runner.now()
            devices.release_memory(self.device)
        if rec["outcome"] != "ok":
            prep.failed(rec["reason"])
        self.prepared.append(rec)
        if self.journal is not None:
            with _stop_if_disk_full(self, f"preparation {prep.name}"):
                self.journal.append(rec)

    def update_ceilings(self, rec: dict):
        """Calibration results become the ceilings later cases report fractions of."""
        if rec["suite"] != CALIBRATION or rec["outcome"] != "ok":
            return
        m, params = rec["metrics"], rec["case"]
        if params.get("kind") == "matmul" and m.get("flop_per_s"):
            ceil = self.ctx.ceilings.setdefault("matmul_flop_per_s", {})
            ceil[params["dtype"]] = max(ceil.get(params["dtype"], 0.0), m["flop_per_s"])
        elif params.get("kind") == "copy" and m.get("bandwidth_bytes_per_s"):
            self.ctx.ceilings["copy_bytes_per_s"] = max(self.ctx.ceilings.get("copy_bytes_per_s", 0.0),
                                                        m["bandwidth_bytes_per_s"])


def _quiet_transformers():
    """No per-case "Loading weights" progress bars in the run log."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _benchmark_json_path(config) -> str | None:
    """--benchmark-json as a path: pytest-benchmark < 5.3 hands an open file, 5.3+ a Path."""
    value = getattr(config.option, "benchmark_json", None)
    if value is None:
        return None
    return value.name if hasattr(value, "write") else str(value)


def update_machine_info(session: EffbenchSession, machine_info: dict) -> None:
    machine_info["node"] = session.env["machine_slug"]  # never the hostname
    machine_info["effbench"] = session.env


def _session(config) -> EffbenchSession:
    return config._effbench


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "effbench_suite(name, grid=None): benchmark module of an effbench suite")
    if hasattr(config.option, "benchmark_save_data"):
        config.option.benchmark_save_data = True  # raw samples belong in the file
    config._effbench = None


def _ensure_session(config) -> EffbenchSession:
    if config._effbench is None:
        config._effbench = EffbenchSession(config)
    return config._effbench


def _suite_marker(metafunc_or_item):
    marker = metafunc_or_item.definition.get_closest_marker("effbench_suite") if hasattr(
        metafunc_or_item, "definition") else metafunc_or_item.get_closest_marker("effbench_suite")
    return marker


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    marker = _suite_marker(metafunc)
    if marker is None:
        return
    session = _ensure_session(metafunc.config)
    suite = marker.args[0]
    grid = marker.kwargs.get("grid")
    cases = grid(session.profile.name, session.device.type) if grid else profiles.cases(
        suite, session.profile.name, session.device.type)
    checkpoint = session.ctx.options.get("model")
    if checkpoint and suite == "precision":
        cases = profiles.precision_cases_for_checkpoint(cases, checkpoint)
    if not cases:
        cases = [pytest.param(None, marks=pytest.mark.skip(reason=f"suite {suite} has no cases for this profile/device"))]
        metafunc.parametrize("case", cases, ids=[f"{suite}-empty"])
        return
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(session, config, items):
    eff = config._effbench
    if eff is None:
        return
    # calibration first: its measured ceilings are what later cases report fractions of
    items.sort(key=lambda item: 0 if _item_suite(item) == CALIBRATION else 1)
    shard_opt = config.getoption("effbench_shard")
    if shard_opt:
        from bench_lib.harness import shard

        rank, n = shard.parse(shard_opt)
        keyed = [(item, _case_key(item)) for item in items]
        mine = shard.selected([k for _, k in keyed if k is not None], rank, n)
        drop = [item for item, k in keyed if k is not None and k not in mine]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item, k in keyed if k is None or k in mine]
    if eff.done:
        keep, drop = [], []
        for item in items:
            case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
            (drop if isinstance(case, Case) and (case.suite, case.id) in eff.done else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    """Preparations (shared trained weights) before the first case, none in --collect-only."""
    eff = getattr(session.config, "_effbench", None)
    if eff is not None and session.items and not session.config.option.collectonly:
        eff.prepare(session.items)
    yield


def pytest_collection_finish(session):
    # the interpreter holds ~10^5 long-lived objects after importing torch and transformers; freezing them
    # keeps each probe's gc.collect() (which makes its baseline honest) from costing a quarter second
    gc.collect()
    gc.freeze()


def _case_key(item):
    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    return (case.suite, case.id) if isinstance(case, Case) else None


def _item_suite(item):
    marker = item.get_closest_marker("effbench_suite")
    return marker.args[0] if marker else None


@pytest.fixture
def measure(request, benchmark):
    """``measure(build, case)``: run one case through the harness; see the module docstring."""
    eff = _ensure_session(request.config)

    def run(build, case: Case):
        if eff.journal is not None:
            with _stop_if_disk_full(eff, f"case {case.suite}/{case.id}"):
                eff.journal.mark_running(case.suite, case.id, request.node.nodeid, runner.now())

        def record_samples(samples):
            if benchmark.disabled:  # --benchmark-disable: still measured, just not handed to pytest-benchmark
                return
            benchmark.group = case.suite
            benchmark.params = dict(case.params)  # --benchmark-group-by=param:NAME sees the case's parameters
            # effbench timed the blocks (CUDA events or perf_counter); pytest-benchmark's clock replays them
            benchmark._timer = runner.timing.replay_clock(samples)
            benchmark.pedantic(lambda: None, rounds=len(samples.block_s), iterations=samples.calls_per_sample)

        shard_opt = request.config.getoption("effbench_shard")
        if shard_opt:
            from bench_lib.harness import shard

            nested = shard.nested_reason(case, shard_opt)
            if nested:
                build = lambda case, ctx, _why=nested: Unsupported(_why)  # noqa: E731
        rec = runner.run_case(build, case, eff.ctx, record_samples=record_samples, timeout_s=eff.timeout_s)
        rec["nodeid"] = request.node.nodeid
        lost = devices.context_error(eff.device)  # a sticky CUDA error leaves every later case failing
        if lost and rec["outcome"] != "ok":
            rec["reason"] = f"{rec['reason']}; the CUDA context is unusable after it ({lost})"
        benchmark.extra_info.update(journal.extra_info(rec))
        eff.records.append(rec)
        eff.update_ceilings(rec)
        if eff.journal is not None:
            with _stop_if_disk_full(eff, f"case {case.suite}/{case.id}"):
                eff.journal.append(rec)
            eff.journal.clear_running()
        if lost:  # the record is journaled: end this process; effbench run resumes the rest in a fresh one
            pytest.exit(f"effbench: CUDA context unusable after {case.suite}/{case.id} ({lost}); the remaining "
                        "cases need a fresh process: effbench run resumes them, or rerun with --effbench-resume",
                        returncode=devices.CONTEXT_LOST_EXIT)
        outcome, reason = rec["outcome"], rec["reason"]
        if outcome == "unsupported":
            pytest.skip(f"unsupported: {reason}")
        if outcome == "oom":
            pytest.skip(f"oom: {reason}")
        if outcome in ("error", "timeout"):
            pytest.fail(f"{outcome}: {reason}", pytrace=False)
        return rec

    return run


class _ParamsView:
    """A benchmark whose ``params`` holds every parameter name asked for, None where its suite has none."""

    def __init__(self, bench, names):
        self.bench, self.params = bench, {**dict.fromkeys(names), **(bench["params"] or {})}

    def __getitem__(self, key):
        return self.params if key == "params" else self.bench[key]


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_group_stats(config, benchmarks, group_by):
    """pytest-benchmark's grouping, for suites whose cases have different parameters.

    ``--benchmark-group-by=param:seq_len`` over the whole suite meets precision cases, which have no
    ``seq_len``: pytest-benchmark's own grouping then fails with a KeyError. Here such a case goes to the
    group ``seq_len=None``, and every other grouping is pytest-benchmark's.
    """
    from pytest_benchmark.plugin import pytest_benchmark_group_stats as grouped

    names = [g[len("param:"):] for g in group_by.split(",") if g.startswith("param:")]
    if not names:
        return None
    views = [_ParamsView(b, names) for b in benchmarks]
    return [(key, [v.bench for v in group]) for key, group in grouped(config, views, group_by)]


@contextlib.contextmanager
def _stop_if_disk_full(eff: EffbenchSession, where: str):
    """A full disk ends the session (every later record would be lost too): the journal keeps every finished
    case whole, the case is left marked as running for the supervisor to name, and --resume goes on."""
    try:
        yield
    except OSError as exc:
        if not journal.is_disk_full(exc):
            raise
        eff.disk_full = True
        pytest.exit(f"disk full at {where}: free space and run --resume (journal "
                    f"{eff.journal.path})", returncode=journal.DISK_FULL_EXIT)


def pytest_benchmark_update_machine_info(config, machine_info):
    update_machine_info(_ensure_session(config), machine_info)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    eff = _ensure_session(config)
    by_node = {r.get("nodeid"): r for r in eff.records}
    for entry in output_json["benchmarks"]:
        rec = by_node.get(entry.get("fullname"))
        if rec is not None:  # the Case object is not JSON: store its parameters
            entry["params"] = dict(rec["case"])
    output_json["effbench"] = journal.effbench_block(
        {"profile": eff.profile.name, "device": eff.device.type, "started_at": eff.started_at},
        eff.records, runner.now(), eff.prepared)
    output_json["effbench"]["gpu_after"] = env.gpu_state()


def pytest_sessionfinish(session, exitstatus):
    eff = getattr(session.config, "_effbench", None)
    if eff is None or eff.journal is None or eff.disk_full:
        return
    eff.journal.clear_running()
    # pytest-benchmark writes nothing when no case was measured (all unsupported, say): the run file is
    # still owed, with every outcome in it, so write it from the journal
    out = getattr(session.config.option, "benchmark_json", None)
    if out is None:
        return
    text = lambda: json.dumps(journal.assemble(eff.journal.path, finished_at=runner.now()), indent=1,  # noqa: E731
                              allow_nan=True, default=str)
    if hasattr(out, "write"):  # pytest-benchmark < 5.3: a file it opened and may have left empty
        if not out.closed and out.tell() == 0:
            out.write(text().encode())
            out.flush()
    elif not Path(out).exists() or Path(out).stat().st_size == 0:
        journal.write_atomic(Path(out), text())
