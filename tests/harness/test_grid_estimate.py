"""grid_estimate: exact case counts from the grids, times per case measured from a run or labelled assumed."""

from bench_lib.harness import grid_estimate, profiles


def record(suite, started, finished):
    return {"suite": suite, "id": f"{suite}-{started}", "started_at": f"2026-01-01T00:00:{started:02d}+00:00",
            "finished_at": f"2026-01-01T00:00:{finished:02d}+00:00"}


def test_counts_are_the_grids_and_the_assumption_is_labelled():
    rows = grid_estimate.estimate("full", "cuda")
    assert [r.suite for r in rows] == list(profiles.GRIDS)
    for r in rows:
        assert r.cases == len(profiles.cases(r.suite, "full", "cuda")) and r.source == "assumed"
    attention = next(r for r in rows if r.suite == "attention")
    assert attention.total_s == attention.cases * grid_estimate.ASSUMED_S_PER_CASE[("cuda", "full")]["attention"]
    text = grid_estimate.format_estimate(rows, "full", "cuda")
    total_s = sum(r.total_s for r in rows)
    assert f"{sum(r.cases for r in rows)}  " in text.splitlines()[-1] and f"{total_s / 3600:.1f} h" in text


def test_measured_runs_replace_the_assumption_by_their_median_wall_time():
    run = {"effbench": {"cases": [record("attention", 0, 2), record("attention", 2, 6), record("attention", 6, 16),
                                  record("precision", 0, 30), {"suite": "precision", "started_at": None}]}}
    rows = {r.suite: r for r in grid_estimate.estimate("full", "cuda", [run])}
    assert rows["attention"].s_per_case == 4.0 and rows["attention"].source == "measured (3 cases)"
    assert rows["precision"].s_per_case == 30.0 and rows["precision"].source == "measured (1 cases)"
    assert rows["finetune"].source == "assumed"
    cpu = {r.suite: r for r in grid_estimate.estimate("full", "cpu")}
    assert cpu["attention"].s_per_case is None and cpu["attention"].source == "unknown"
    assert "unknown time left out" in grid_estimate.format_estimate(list(cpu.values()), "full", "cpu")


def test_cli_reads_runs_and_refuses_an_unreadable_one(tmp_path, capsys):
    assert grid_estimate.main(["--profile", "quick", "--device", "cuda"]) == 0
    assert "profile quick on cuda" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert grid_estimate.main(["--from", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
