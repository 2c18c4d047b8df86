"""``effbench compare`` on frozen real runs with planted changes, and on plain pytest-benchmark files.

Planted changes are made by :mod:`bench_lib.gate.plant` on a copy of a real run, never by editing frozen files.
"""

import itertools
import json

import numpy as np
import pytest
from runfactory import (
    DATA,
    assemble,
    case_record,
    drifting_runs,
    environment,
    load,
    quiet_runs,
    real_runs,
    strip_effbench,
    synthetic_run,
    write,
)

from bench_lib import cli
from bench_lib.gate import plant, stats
from bench_lib.gate.compare import Settings, compare_runs
from bench_lib.harness.runfile import parse_run


def compare(capsys, *args):
    """Run ``effbench compare ARGS`` as a user would; return (exit status, stdout, stderr)."""
    rc = cli.main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def real():
    runs = real_runs()
    assert runs, "tests/data/compare/ must hold frozen real CPU quick runs (cpu-quick-*.json)"
    return load(runs[0])


def quietest_case(run: dict) -> str:
    """The measured case with the smallest relative IQR: a 20% slowdown there is beyond its noise threshold."""
    cases = [c for c in run["effbench"]["cases"] if c["outcome"] == "ok" and len(c["samples_s"]) >= 5]
    best = min(cases, key=lambda c: stats.relative_iqr(c["samples_s"]))
    assert stats.relative_iqr(best["samples_s"]) < 0.09, "the frozen run is too noisy to plant a 20% slowdown"
    return f"{best['suite']}/{best['id']}"


def test_run_against_itself_is_no_regression(tmp_path, capsys, real):
    path = write(tmp_path, "run.json", real)
    rc, out, _ = compare(capsys, path, path)
    assert rc == 0
    assert "**OK: 0 regression(s)**" in out
    report = json.loads(compare(capsys, path, path, "--format", "json")[1])
    assert report["regression"] is False
    assert report["time"] and all(t["verdict"] in ("same", "inconclusive") for t in report["time"])
    assert all(t["ratio"] == 1.0 for t in report["time"])


def test_planted_20pct_slowdown_fails_and_names_the_case(tmp_path, capsys, real):
    key = quietest_case(real)
    base = write(tmp_path, "base.json", real)
    cand = write(tmp_path, "cand.json", plant.slow_down(real, key, 1.2))
    rc, out, _ = compare(capsys, base, cand)
    assert rc == 1
    regressions = out.split("### Regressions")[1].split("###")[0]
    assert f"`{key}`" in regressions and "+20.0%" in regressions
    report = json.loads(compare(capsys, base, cand, "--format", "json")[1])
    assert [t["case"] for t in report["time"] if t["regression"]] == [key]
    (slow,) = [t for t in report["time"] if t["case"] == key]
    assert slow["verdict"] == "slower" and slow["p_value"] < 0.01
    assert slow["ci"][0] <= 1.2 <= slow["ci"][1]


def test_planted_speedup_is_an_improvement_not_a_failure(tmp_path, capsys, real):
    key = quietest_case(real)
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", real), write(tmp_path, "c.json", plant.slow_down(real, key, 0.8)))
    assert rc == 0
    assert f"| faster | `{key}`" in out.split("### Improvements")[1]


def test_independent_same_code_runs_raise_no_false_alarm(capsys):
    # frozen real quick runs of one commit on the shared 2-core machine: every ordered pair
    runs = real_runs()
    assert len(runs) >= 2
    for base, cand in itertools.permutations(runs, 2):
        rc, out, _ = compare(capsys, base, cand, "--format", "json")
        report = json.loads(out)
        assert rc != 1 and not report["regression"], f"false alarm between {base.name} and {cand.name}"
        if report["time_judged"]:
            assert rc == 0
        else:  # this machine's load moved cases by up to 5x between runs: said so, exit 2, no regression claimed
            assert rc == 2 and report["stability"]["spread"] > report["stability"]["limit"]


def test_without_the_stability_guard_this_machine_cries_wolf(capsys):
    runs = real_runs()
    rc, out, _ = compare(capsys, runs[0], runs[1], "--allow-unstable", "--format", "json")
    report = json.loads(out)
    assert rc == 1 and report["time_judged"] and report["summary"]["time"]["slower"] > 0


def test_planted_30pct_memory_rise_is_a_regression(tmp_path, capsys, real):
    key = next(f"{c['suite']}/{c['id']}" for c in real["effbench"]["cases"] if c["outcome"] == "ok" and c["memory"])
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", real), write(tmp_path, "c.json", plant.grow_memory(real, key, 1.3)))
    assert rc == 1
    regressions = out.split("### Regressions")[1].split("###")[0]
    assert f"`{key}`" in regressions and "+30.0%" in regressions
    assert "peak" in regressions


def test_planted_oom_is_a_regression_and_the_reverse_an_improvement(tmp_path, capsys, real):
    key = next(f"{c['suite']}/{c['id']}" for c in real["effbench"]["cases"] if c["outcome"] == "ok")
    ok, oom = write(tmp_path, "ok.json", real), write(tmp_path, "oom.json",
                                                       plant.set_outcome(real, key, "oom", "OutOfMemoryError: planted"))
    rc, out, _ = compare(capsys, ok, oom)
    assert rc == 1
    assert f"| `{key}` | ok | oom | regression | OutOfMemoryError: planted |" in out
    rc, out, _ = compare(capsys, oom, ok)
    assert rc == 0
    assert f"| `{key}` | oom | ok | improvement |" in out


@pytest.mark.parametrize("outcome", ["error", "timeout", "crashed"])
def test_every_failure_outcome_is_a_regression(outcome):
    base = synthetic_run(1)
    cand = plant.set_outcome(base, "synthetic/case-2", outcome, "planted")
    result = compare_runs(parse_run(base), parse_run(cand), Settings())
    assert [(o.case, o.kind) for o in result.outcomes] == [("synthetic/case-2", "regression")]


def test_ok_to_unsupported_is_listed_but_does_not_fail():
    base = synthetic_run(1)
    result = compare_runs(parse_run(base), parse_run(plant.set_outcome(base, "synthetic/case-0", "unsupported", "gone")),
                          Settings())
    assert [o.kind for o in result.outcomes] == ["coverage-lost"] and not result.regressions()


def test_plain_pytest_benchmark_json_compares_on_time(tmp_path, capsys, real):
    plain = strip_effbench(real)
    assert "effbench" not in plain and "effbench" not in plain["machine_info"]
    key = quietest_case(real)
    fullname = next(c["nodeid"] for c in real["effbench"]["cases"] if f"{c['suite']}/{c['id']}" == key)
    base = write(tmp_path, "plain-base.json", plain)
    rc, _, _ = compare(capsys, base, base)
    assert rc == 0
    rc, out, _ = compare(capsys, base, write(tmp_path, "plain-cand.json", plant.slow_down(plain, fullname, 1.2)))
    assert rc == 1
    assert f"`{fullname}`" in out.split("### Regressions")[1]


def test_plain_json_without_raw_samples_uses_welch_on_summaries(tmp_path, capsys):
    run = synthetic_run(5, rounds=20, noise=0.02)
    base = strip_effbench(run, keep_data=False)
    cand = strip_effbench(plant.slow_down(run, "synthetic/case-3", 1.2), keep_data=False)
    assert all("data" not in b["stats"] for b in cand["benchmarks"])
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand), "--format", "json")
    assert rc == 1
    report = json.loads(out)
    (slow,) = [t for t in report["time"] if t["regression"]]
    assert slow["case"].endswith("[case-3]") and slow["test"] == "welch-summary"
    assert slow["ratio"] == pytest.approx(1.2)


def test_too_few_rounds_is_inconclusive_not_a_regression(tmp_path, capsys):
    base = synthetic_run(2, rounds=3)  # 3 vs 3: the smallest possible two-sided p is 0.1
    cand = plant.slow_down(base, "synthetic/case-1", 1.5)
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand), "--format", "json")
    assert rc == 0
    (t,) = [t for t in json.loads(out)["time"] if t["case"] == "synthetic/case-1"]
    assert t["verdict"] == "inconclusive" and "too few samples" in t["note"]
    assert t["ratio"] == pytest.approx(1.5) and t["p_value"] is None


def test_noisy_case_needs_a_larger_change():
    rng = np.random.default_rng(0)
    quiet, noisy = rng.lognormal(0, 0.01, 30), rng.lognormal(0, 0.15, 30)
    env = environment()
    base = assemble([case_record("s", "quiet", quiet), case_record("s", "noisy", noisy)], env)
    cand = assemble([case_record("s", "quiet", quiet * 1.12), case_record("s", "noisy", noisy * 1.12)], env)
    result = {t.case: t for t in compare_runs(parse_run(base), parse_run(cand), Settings(noise_multiple=2.0)).time}
    assert result["s/quiet"].verdict == "slower"
    assert result["s/noisy"].threshold == pytest.approx(2 * stats.relative_iqr(noisy))
    assert result["s/noisy"].verdict == "same" and not result["s/noisy"].regression


def test_scattered_ratios_withhold_time_verdicts_but_not_outcomes(tmp_path, capsys):
    base = synthetic_run(1, n_cases=12)
    cand = base
    for k, factor in enumerate([0.5, 2.0, 1.0, 3.0, 0.4, 1.7, 1.0, 0.6, 2.5, 1.3, 0.8, 1.0]):
        cand = plant.slow_down(cand, f"synthetic/case-{k}", factor)
    b, c = write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand)
    rc, out, err = compare(capsys, b, c)
    assert rc == 2 and "Times not judged" in out and "times not judged" in err
    assert "| inconclusive | `synthetic/case-3` |" in out and "not judged: machine unstable" in out
    rc, out, _ = compare(capsys, b, c, "--allow-unstable")
    assert rc == 1 and "| slower | `synthetic/case-3` |" in out
    crashed = write(tmp_path, "crash.json", plant.set_outcome(cand, "synthetic/case-2", "crashed", "segfault"))
    assert compare(capsys, b, crashed)[0] == 1


def test_zero_median_is_inconclusive_not_infinite():
    env = environment()
    base = assemble([case_record("s", "coarse", [0.0] * 10)], env)
    cand = assemble([case_record("s", "coarse", [1e-6] * 10)], env)
    (t,) = compare_runs(parse_run(base), parse_run(cand), Settings()).time
    assert t.verdict == "inconclusive" and t.ratio is None and "too coarse" in t.note


def test_new_and_missing_cases_are_listed(tmp_path, capsys):
    base = synthetic_run(1, n_cases=4)
    cand = synthetic_run(1, n_cases=4)
    cand["effbench"]["cases"][3]["id"] = "case-new"
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand))
    assert rc == 0
    assert "- new: `synthetic/case-new`" in out and "- missing: `synthetic/case-3`" in out


def test_journal_with_a_torn_last_line_compares(tmp_path, capsys):
    run = synthetic_run(1)
    lines = [json.dumps({"type": "header", "schema_version": 1, "machine_info": run["machine_info"]})]
    lines += [json.dumps({"type": "case", **c}) for c in run["effbench"]["cases"]]
    journal = tmp_path / "run.jsonl"
    journal.write_text("\n".join(lines) + '\n{"type": "case", "id": "torn')
    rc, out, _ = compare(capsys, write(tmp_path, "run.json", run), journal)
    assert rc == 0 and "6 same" in out


def test_regressions_come_first_in_markdown(tmp_path, capsys):
    base = synthetic_run(1, n_cases=4)
    cand = plant.grow_memory(plant.slow_down(base, "synthetic/case-2", 1.3), "synthetic/case-0", 1.5)
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand))
    assert rc == 1
    assert out.index("### Regressions") < out.index("### Time, every case")
    assert "(time 1, memory 1, outcome 0)" in out


# ------------------------------------------------------------------------------------------------ bad input
def test_unreadable_file_exits_2(tmp_path, capsys):
    good = write(tmp_path, "good.json", synthetic_run(1))
    rc, _, err = compare(capsys, good, tmp_path / "missing.json")
    assert rc == 2 and "cannot read" in err and "missing.json" in err
    (tmp_path / "bad.json").write_text("{not json")
    rc, _, err = compare(capsys, tmp_path / "bad.json", good)
    assert rc == 2 and "bad.json is not valid JSON" in err
    (tmp_path / "other.json").write_text('{"hello": 1}')
    rc, _, err = compare(capsys, good, tmp_path / "other.json")
    assert rc == 2 and "no 'benchmarks' list" in err


def test_newer_schema_is_refused(tmp_path, capsys):
    run = synthetic_run(1)
    run["effbench"]["schema_version"] = 99
    rc, _, err = compare(capsys, write(tmp_path, "new.json", run), write(tmp_path, "old.json", synthetic_run(1)))
    assert rc == 2 and "schema 99" in err


def test_no_cases_in_common_exits_2(tmp_path, capsys):
    a = synthetic_run(1, n_cases=2)
    b = json.loads(json.dumps(a))
    for c in b["effbench"]["cases"]:
        c["suite"] = "other"
    rc, _, err = compare(capsys, write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    assert rc == 2 and "no cases in common" in err


def test_different_gpu_or_driver_is_refused_unless_allowed(tmp_path, capsys):
    h100 = synthetic_run(1, env=environment("cuda", "NVIDIA H100 80GB HBM3"))
    h200 = synthetic_run(1, env=environment("cuda", "NVIDIA H200"))
    new_driver = synthetic_run(1, env=environment("cuda", "NVIDIA H100 80GB HBM3", driver="560.28.03"))
    base = write(tmp_path, "h100.json", h100)
    rc, _, err = compare(capsys, base, write(tmp_path, "h200.json", h200))
    assert rc == 2 and "gpu name: NVIDIA H100 80GB HBM3 -> NVIDIA H200" in err
    rc, _, err = compare(capsys, base, write(tmp_path, "drv.json", new_driver))
    assert rc == 2 and "gpu driver: 550.54.15 -> 560.28.03" in err
    rc, out, _ = compare(capsys, base, tmp_path / "h200.json", "--allow-different-machines")
    assert rc == 0 and "- gpu name: NVIDIA H100 80GB HBM3 -> NVIDIA H200" in out


def test_software_differences_are_reported_not_refused(tmp_path, capsys):
    env = environment()
    newer = json.loads(json.dumps(env))
    newer["torch"]["version"] = "2.14.0"
    rc, out, _ = compare(capsys, write(tmp_path, "a.json", synthetic_run(1, env=env)),
                         write(tmp_path, "b.json", synthetic_run(1, env=newer)))
    assert rc == 0 and "- torch: 2.13.0 -> 2.14.0" in out


def test_bad_threshold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "a.json", "b.json", "--threshold", "150"])
    assert exc.value.code == 2
    assert "write 5% or 0.05" in capsys.readouterr().err


def test_smoke_run_with_one_round_is_inconclusive_but_outcomes_still_count(tmp_path, capsys):
    smoke = load(DATA / "cpu-smoke-cal-attn.json")  # real smoke run: one timed round per case, many unsupported
    key = next(f"{c['suite']}/{c['id']}" for c in smoke["effbench"]["cases"] if c["outcome"] == "ok")
    base = write(tmp_path, "smoke.json", smoke)
    rc, out, _ = compare(capsys, base, write(tmp_path, "slow.json", plant.slow_down(smoke, key, 2.0)), "--format", "json")
    report = json.loads(out)
    assert rc == 0 and report["time"] and {t["verdict"] for t in report["time"]} == {"inconclusive"}
    rc, out, _ = compare(capsys, base, write(tmp_path, "err.json", plant.set_outcome(smoke, key, "error", "wrong")))
    assert rc == 1 and f"| `{key}` | ok | error | regression | wrong |" in out


def test_a_shift_of_every_case_is_pointed_out(tmp_path, capsys):
    base = synthetic_run(1, n_cases=10)
    cand = base
    for k in range(10):
        cand = plant.slow_down(cand, f"synthetic/case-{k}", 1.3)
    rc, out, _ = compare(capsys, write(tmp_path, "b.json", base), write(tmp_path, "c.json", cand))
    # everything 30% slower together is steady, so judged: regressions, the gate does not explain them away
    assert rc == 1 and "(time 10, memory 0, outcome 0)" in out
    assert "Note: the median case moved +30.0%" in out


# ------------------------------------------------------------------------------- several baseline runs (drift)
def test_one_baseline_run_mistakes_drift_for_change_and_several_do_not(tmp_path, capsys):
    # 8% drift between runs, 1% within: a single baseline run sees "significant" 10-20% changes everywhere
    runs = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(drifting_runs(4, n_cases=30, drift=0.08, seed=4))]
    rc, out, _ = compare(capsys, runs[0], runs[3], "--allow-unstable", "--format", "json")
    assert rc == 1 and json.loads(out)["summary"]["time"]["slower"] > 0
    rc, out, _ = compare(capsys, *runs[:3], runs[3], "--format", "json")
    report = json.loads(out)
    assert rc == 0 and report["time_judged"] and not report["regression"]
    assert report["summary"]["baseline_runs"] == 3 and report["baseline_runs"] == runs[:3]
    assert report["drift"]["pooled_sd"] == pytest.approx(0.08, rel=0.35)
    assert all(t["drift"] is not None and t["threshold"] >= t["drift"] for t in report["time"])


def test_with_a_history_baseline_a_change_beyond_the_drift_fails_and_names_the_case(tmp_path, capsys):
    runs = drifting_runs(4, n_cases=30, drift=0.08, seed=5)
    base = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(runs[:3])]
    report = json.loads(compare(capsys, *base, write(tmp_path, "same.json", runs[3]), "--format", "json")[1])
    threshold = next(t["threshold"] for t in report["time"] if t["case"] == "synthetic/case-7")
    slow = write(tmp_path, "slow.json", plant.slow_down(runs[3], "synthetic/case-7", (1 + threshold) * 1.5))
    rc, out, _ = compare(capsys, *base, slow, "--format", "json")
    assert rc == 1 and [t["case"] for t in json.loads(out)["time"] if t["regression"]] == ["synthetic/case-7"]
    # the same change inside the case's drift is not called
    within = write(tmp_path, "within.json", plant.slow_down(runs[3], "synthetic/case-7", 1.0 + threshold / 3))
    assert compare(capsys, *base, within)[0] == 0


def test_baseline_folder_is_every_run_in_it(tmp_path, capsys):
    runs = drifting_runs(4, n_cases=12, drift=0.05, seed=6)
    folder = tmp_path / "baselines" / "test-machine"
    folder.mkdir(parents=True)
    files = [write(folder, f"r{i}.json", r) for i, r in enumerate(runs[:3])]
    cand = write(tmp_path, "cand.json", runs[3])
    by_folder = json.loads(compare(capsys, folder, cand, "--format", "json")[1])
    by_files = json.loads(compare(capsys, *files, cand, "--format", "json")[1])
    assert by_folder["time"] == by_files["time"] and by_folder["baseline_runs"] == files
    (tmp_path / "empty").mkdir()
    rc, _, err = compare(capsys, tmp_path / "empty", cand)
    assert rc == 2 and "holds no run files" in err


def test_pooled_baseline_memory_is_the_largest_run_and_outcomes_the_first(tmp_path, capsys):
    runs = drifting_runs(3, n_cases=6, drift=0.02, seed=7)
    runs[1] = plant.grow_memory(runs[1], "synthetic/case-2", 1.25)  # one baseline run peaked higher
    base = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(runs[:2])]
    up = write(tmp_path, "up.json", plant.grow_memory(runs[2], "synthetic/case-2", 1.2))
    assert compare(capsys, *base, up)[0] == 0  # within what the baseline runs themselves reached
    up = write(tmp_path, "up2.json", plant.grow_memory(runs[2], "synthetic/case-2", 1.6))  # 28% over the largest
    assert compare(capsys, *base, up)[0] == 1
    oom = write(tmp_path, "oom.json", plant.set_outcome(runs[2], "synthetic/case-0", "oom", "planted"))
    assert compare(capsys, *base, oom)[0] == 1


def test_baseline_runs_from_different_machines_are_refused(tmp_path, capsys):
    a = write(tmp_path, "a.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200")))
    b = write(tmp_path, "b.json", synthetic_run(2, env=environment("cuda", "NVIDIA H100 80GB HBM3")))
    c = write(tmp_path, "c.json", synthetic_run(3, env=environment("cuda", "NVIDIA H200")))
    rc, _, err = compare(capsys, a, b, c)
    assert rc == 2 and "baseline runs" in err and "NVIDIA H200 -> NVIDIA H100 80GB HBM3" in err


def test_require_resolution_fails_a_gate_too_noisy_to_see_that_change(tmp_path, capsys):
    runs = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(drifting_runs(4, n_cases=20, drift=0.10, seed=8))]
    report = json.loads(compare(capsys, *runs[:3], runs[3], "--format", "json")[1])
    resolution = report["summary"]["resolution"]
    assert resolution > 0.10  # 10% drift between runs: a 10% regression is invisible, and the gate says so
    rc, _, err = compare(capsys, *runs[:3], runs[3], "--require-resolution", "10%")
    assert rc == 2 and f"{resolution * 100:.1f}%" in err and "would hide" in err
    assert compare(capsys, *runs[:3], runs[3], "--require-resolution", f"{resolution * 100 + 1:.0f}%")[0] == 0
    rc, out, _ = compare(capsys, *runs[:3], runs[3])
    assert rc == 0 and f"The median case's threshold is {resolution * 100:.1f}%" in out


# ------------------------------------------------- real same-code runs on this machine, with drift and reruns
@pytest.fixture(scope="module")
def quiet():
    runs = quiet_runs()
    assert len(runs) >= 5, "tests/data/compare/history/ must hold frozen quiet same-code CPU quick runs"
    return runs


def test_quiet_runs_are_judged_and_independent_same_code_runs_exit_0(capsys, quiet):
    """Each run is a candidate, the next its rerun, the three after that its baseline (as at night: baseline
    folder, candidate, rerun of the suspects). No time verdict is withheld and none is a false alarm."""
    n = len(quiet)
    for j in range(n):
        bases = [quiet[(j + 2 + i) % n] for i in range(3)]
        rc, out, _ = compare(capsys, *bases, quiet[j], "--confirm", quiet[(j + 1) % n], "--format", "json")
        report = json.loads(out)
        assert report["time_judged"] and report["drift"] is not None
        assert rc == 0 and not report["regression"], (quiet[j].name, report["summary"])


def test_a_stall_during_one_case_is_a_false_alarm_unless_a_rerun_must_confirm_it(capsys, quiet):
    # the fourth quiet run met a host stall: llama-34m fp4 b1 decode took 5x its time in the other runs
    bases, cand, rerun = quiet[:3], quiet[3], quiet[4]
    rc, out, _ = compare(capsys, *bases, cand, "--format", "json")
    report = json.loads(out)
    stalled = "precision/llama-34m-fp4-b1-p16-n16"
    assert rc == 1 and [t["case"] for t in report["time"] if t["regression"]] == [stalled]
    assert [s["case"] for s in report["suspects"]] == [stalled]
    assert report["suspects"][0]["nodeid"] == "benchmarks/test_precision.py::test_precision[llama-34m-fp4-b1-p16-n16]"
    rc, out, _ = compare(capsys, *bases, cand, "--confirm", rerun, "--format", "json")
    report = json.loads(out)
    (t,) = [t for t in report["time"] if t["case"] == stalled]
    assert rc == 0 and t["verdict"] == "not-reproduced" and "did not reproduce" in t["note"]


def test_real_slowdown_beyond_the_drift_is_caught_on_real_runs(tmp_path, capsys, quiet):
    bases, cand, rerun = quiet[:3], load(quiet[3]), load(quiet[4])
    report = json.loads(compare(capsys, *bases, quiet[4], "--format", "json")[1])
    t = min((t for t in report["time"] if t["p_value"] is not None), key=lambda t: t["threshold"])
    factor = (1 + t["threshold"]) * 1.5  # half again past what this case's drift allows
    slow = write(tmp_path, "slow.json", plant.slow_down(rerun, t["case"], factor))
    again = write(tmp_path, "again.json", plant.slow_down(cand, t["case"], factor))
    rc, out, _ = compare(capsys, *bases, slow, "--confirm", again, "--format", "json")
    assert rc == 1 and [r["case"] for r in json.loads(out)["time"] if r["regression"]] == [t["case"]]


def test_a_rerun_of_the_suspects_alone_is_judged_with_the_candidates_thresholds(tmp_path, capsys):
    # the nightly rerun holds only the suspect cases; judging it must not refit the drift model on them alone
    runs = drifting_runs(5, n_cases=30, drift=0.08, seed=5)
    base = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(runs[:3])]
    report = json.loads(compare(capsys, *base, write(tmp_path, "same.json", runs[3]), "--format", "json")[1])
    threshold = next(t["threshold"] for t in report["time"] if t["case"] == "synthetic/case-7")
    cand = write(tmp_path, "cand.json", plant.slow_down(runs[3], "synthetic/case-7", 3.0))
    # a rerun whose case-7 sits at the baseline's centre, moved by half the case's threshold: inside its drift
    within = plant.slow_down(runs[0], "synthetic/case-7", 1.0 + threshold / 2)
    alone = json.loads(json.dumps(within))
    alone["effbench"]["cases"] = [c for c in alone["effbench"]["cases"] if c["id"] == "case-7"]
    alone["benchmarks"] = [b for b in alone["benchmarks"] if b["extra_info"]["id"] == "case-7"]
    for rerun in (write(tmp_path, "full.json", within), write(tmp_path, "alone.json", alone)):
        rc, out, _ = compare(capsys, *base, cand, "--confirm", rerun, "--format", "json")
        (t,) = [t for t in json.loads(out)["time"] if t["case"] == "synthetic/case-7"]
        assert rc == 0 and t["verdict"] == "not-reproduced", (rerun, t["note"])


def test_a_memory_rise_that_the_rerun_does_not_show_is_not_counted(tmp_path, capsys):
    runs = drifting_runs(5, n_cases=8, drift=0.02, seed=12)
    base = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(runs[:3])]
    cand = write(tmp_path, "cand.json", plant.grow_memory(runs[3], "synthetic/case-2", 1.5))
    rc, out, _ = compare(capsys, *base, cand, "--confirm", write(tmp_path, "rerun.json", runs[4]), "--format", "json")
    report = json.loads(out)
    (m,) = [m for m in report["memory"] if m["case"] == "synthetic/case-2"]
    assert rc == 0 and m["not_reproduced"] and not m["regression"] and report["summary"]["not_reproduced"] == 1
    again = write(tmp_path, "again.json", plant.grow_memory(runs[4], "synthetic/case-2", 1.5))
    rc, out, _ = compare(capsys, *base, cand, "--confirm", again)
    assert rc == 1 and "reproduced in the rerun (+50.0%)" in out.split("### Regressions")[1]
    rc, out, _ = compare(capsys, *base, cand, "--confirm", tmp_path / "rerun.json")
    assert "did not reproduce in the rerun" in out.split("### Not reproduced")[1]
