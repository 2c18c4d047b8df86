"""Run files for compare's tests: real frozen runs from tests/data/compare/, and synthetic ones.

Synthetic runs are built the way the harness builds a run file (``journal.benchmark_entry`` and
``journal.effbench_block`` from case records) with samples drawn from a log-normal around each case's
true time, so their noise is known. Real runs are preferred wherever a test is about real noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench_lib.harness import journal

DATA = Path(__file__).parent / "data" / "compare"


def real_runs() -> list[Path]:
    """Frozen same-code CPU quick runs from one machine (``cpu-quick-*.json``), oldest first. Taken while other
    jobs shared the 2 cores: cases moved by up to 8x between runs."""
    return sorted(DATA.glob("cpu-quick-*.json"))


def quiet_runs() -> list[Path]:
    """Frozen same-code CPU quick runs taken back to back with nothing else running (``history/*.json``)."""
    return sorted((DATA / "history").glob("cpu-quiet-quick-*.json"))


def drifting_runs(n_runs: int, n_cases: int = 20, drift: float = 0.05, noise: float = 0.01, seed: int = 0,
                  env: dict | None = None) -> list[dict]:
    """Same-code runs on a drifting machine: in each run every case's true time is moved by its own
    log-normal factor (sigma ``drift``), as a shared machine moves a case between runs; within a run the
    rounds scatter by ``noise`` around it."""
    rng = np.random.default_rng(seed)
    return [synthetic_run(seed * 1000 + i, n_cases=n_cases, noise=noise, env=env,
                          factors={f"synthetic/case-{k}": float(f) for k, f in
                                   enumerate(rng.lognormal(0.0, drift, n_cases))})
            for i in range(n_runs)]


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write(tmp_path: Path, name: str, run: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(run))
    return str(path)


def environment(device="cpu", gpu_name=None, driver="550.54.15", cpu_model="Test CPU @ 2.0GHz", profile="full"):
    gpu = None if gpu_name is None else {"name": gpu_name, "count": 1, "driver": driver, "cuda": "12.4"}
    return {
        "schema_version": 1, "device": device, "profile": profile,
        "machine_slug": "test-machine", "cpu": {"model": cpu_model, "usable_cores": 2},
        "gpu": gpu, "torch": {"version": "2.13.0"}, "packages": {"torch": "2.13.0"},
    }


def case_record(suite, case_id, samples, peak_bytes=2**30, outcome="ok", reason=None):
    samples = [float(s) for s in samples]
    return {
        "type": "case", "id": case_id, "suite": suite, "nodeid": f"benchmarks/test_{suite}.py::test_{suite}[{case_id}]",
        "case": {"n": 1}, "outcome": outcome, "reason": reason,
        "metrics": {"time_s": float(np.median(samples)) if samples else None, "rounds": len(samples)},
        "memory": {"primary": "cpu_peak_rss_bytes", "cpu_peak_rss_bytes": peak_bytes,
                   "cpu_rss_before_bytes": peak_bytes // 2} if outcome == "ok" else {},
        "samples_s": samples, "series": {}, "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
    }


def synthetic_run(seed: int, n_cases: int = 6, rounds: int = 15, noise: float = 0.02, env: dict | None = None,
                  factors: dict[str, float] | None = None) -> dict:
    """A run of ``n_cases`` cases ``synthetic/case-k`` (true time 1 ms * (k+1)), samples log-normal with sigma
    ``noise``; ``factors`` slows chosen cases by a true factor (drawn, not scaled after the fact)."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n_cases):
        case_id = f"case-{k}"
        true_s = 1e-3 * (k + 1) * (factors or {}).get(f"synthetic/{case_id}", 1.0)
        records.append(case_record("synthetic", case_id, true_s * rng.lognormal(0.0, noise, rounds)))
    return assemble(records, env or environment())


def assemble(records: list[dict], env: dict) -> dict:
    """The run file the harness writes for these records (``journal.assemble`` without a journal)."""
    header = {"profile": env.get("profile"), "device": env.get("device"), "started_at": "2026-01-01T00:00:00+00:00"}
    return {
        "machine_info": {"node": env.get("machine_slug"), "effbench": env},
        "commit_info": {},
        "benchmarks": [journal.benchmark_entry(r) for r in records if r["outcome"] == "ok" and r["samples_s"]],
        "datetime": "2026-01-01T00:00:02+00:00",
        "version": "5.2.3",
        "effbench": journal.effbench_block(header, records, "2026-01-01T00:00:02+00:00"),
    }


def strip_effbench(run: dict, keep_data: bool = True) -> dict:
    """What plain pytest-benchmark writes for the same measurements: no effbench keys (optionally no raw data)."""
    out = json.loads(json.dumps(run))
    out.pop("effbench", None)
    out["machine_info"].pop("effbench", None)
    out["machine_info"]["cpu"] = {"brand_raw": "Test CPU @ 2.0GHz"}
    for entry in out["benchmarks"]:
        entry["extra_info"] = {}
        if not keep_data:
            entry["stats"].pop("data", None)
    return out
