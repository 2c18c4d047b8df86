"""Baselines: one folder of same-code runs per GPU model, promoted only on purpose, only from runs fit to judge by."""

import filecmp

from runfactory import environment, synthetic_run, write

from bench_lib import cli
from bench_lib.gate import baseline, plant
from bench_lib.harness.runfile import parse_run


def test_slug_names_the_gpu_model_only():
    run = parse_run(synthetic_run(1, env=environment("cuda", "NVIDIA H100 80GB HBM3")))
    assert baseline.baseline_slug(run) == "nvidia-h100-80gb-hbm3"
    assert str(baseline.baseline_path(run)) == "results/baselines/nvidia-h100-80gb-hbm3"
    cpu = parse_run(synthetic_run(1, env=environment("cpu")))
    assert baseline.baseline_slug(cpu) == "test-machine"  # CPU runs: the machine slug (model and cores)


def test_path_command_prints_the_folder_for_this_gpu(tmp_path, capsys):
    run = write(tmp_path, "run.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200")))
    assert cli.main(["baseline", "path", run, "--dir", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "b" / "nvidia-h200")


def test_promote_copies_the_runs_unchanged_and_replaces_the_whole_set(tmp_path, capsys):
    env = environment("cuda", "NVIDIA H200")
    runs = [write(tmp_path, f"night-{i}.json", synthetic_run(i, env=env)) for i in range(3)]
    assert cli.main(["baseline", "promote", *runs, "--dir", str(tmp_path / "b")]) == 0
    target = tmp_path / "b" / "nvidia-h200"
    assert sorted(p.name for p in target.iterdir()) == ["night-0.json", "night-1.json", "night-2.json"]
    assert all(filecmp.cmp(r, target / f"night-{i}.json", shallow=False) for i, r in enumerate(runs))
    out = capsys.readouterr()
    assert "created baseline" in out.out and "with 3 run(s)" in out.out and "note" not in out.err
    newer = write(tmp_path, "newer.json", synthetic_run(7, env=env))
    assert cli.main(["baseline", "promote", newer, "--dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert "replaced baseline" in out.out and "night-0.json, night-1.json, night-2.json" in out.out
    assert "fewer than 3 runs" in out.err
    assert [p.name for p in target.iterdir()] == ["newer.json"]  # the old set is gone, not mixed in
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_promote_refuses_runs_of_different_code_or_machines(tmp_path, capsys):
    env = environment("cuda", "NVIDIA H200")
    a = synthetic_run(1, env={**env, "git": {"commit": "a" * 40, "dirty": False}})
    b = synthetic_run(2, env={**env, "git": {"commit": "b" * 40, "dirty": False}})
    other = synthetic_run(3, env={**environment("cuda", "NVIDIA H100"), "git": {"commit": "a" * 40, "dirty": False}})
    paths = [write(tmp_path, n, r) for n, r in (("a.json", a), ("b.json", b), ("o.json", other))]
    assert cli.main(["baseline", "promote", paths[0], paths[1], "--dir", str(tmp_path / "b")]) == 2
    assert "different code (aaaaaaaaaa, bbbbbbbbbb)" in capsys.readouterr().err
    assert cli.main(["baseline", "promote", paths[0], paths[2], "--dir", str(tmp_path / "b")]) == 2
    assert "different machines (nvidia-h100, nvidia-h200)" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_promote_refuses_failed_cases_and_other_profiles_unless_forced(tmp_path, capsys):
    env = environment("cuda", "NVIDIA H200")
    failed = write(tmp_path, "failed.json", plant.set_outcome(synthetic_run(1, env=env), "synthetic/case-1", "error", "x"))
    quick = write(tmp_path, "quick.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200", profile="quick")))
    target = tmp_path / "b" / "nvidia-h200"
    assert cli.main(["baseline", "promote", failed, "--dir", str(tmp_path / "b")]) == 2
    assert "1 case(s) failed (synthetic/case-1)" in capsys.readouterr().err
    assert cli.main(["baseline", "promote", quick, "--dir", str(tmp_path / "b")]) == 2
    assert "profile is 'quick'" in capsys.readouterr().err
    assert not target.exists()
    assert cli.main(["baseline", "promote", failed, "--dir", str(tmp_path / "b"), "--force"]) == 0
    assert "warning: 1 case(s) failed" in capsys.readouterr().err
    assert target.exists()


def test_an_oom_does_not_block_promotion():
    run = parse_run(plant.set_outcome(synthetic_run(1), "synthetic/case-1", "oom", "out of memory"))
    assert baseline.promotion_problems(run) == []


def test_plain_pytest_benchmark_file_cannot_be_a_baseline(tmp_path, capsys):
    from runfactory import strip_effbench

    run = write(tmp_path, "plain.json", strip_effbench(synthetic_run(1)))
    assert cli.main(["baseline", "promote", run, "--dir", str(tmp_path)]) == 2
    assert "no effbench environment record" in capsys.readouterr().err


def test_max_failed_tolerates_a_few_failed_cases_and_lists_them(tmp_path, capsys):
    env = environment("cuda", "NVIDIA H200")
    one = plant.set_outcome(synthetic_run(1, env=env), "synthetic/case-1", "error", "illegal memory access")
    two = write(tmp_path, "two.json", plant.set_outcome(one, "synthetic/case-3", "timeout", "x"))
    one = write(tmp_path, "one.json", one)
    folder = str(tmp_path / "b")
    assert cli.main(["baseline", "promote", one, two, "--dir", folder, "--max-failed", "1"]) == 2
    assert "2 case(s) failed (synthetic/case-1, synthetic/case-3)" in capsys.readouterr().err  # two.json: 2 > 1
    assert cli.main(["baseline", "promote", one, two, "--dir", folder, "--max-failed", "2"]) == 0
    out = capsys.readouterr().out
    assert f"failed case kept in the baseline: synthetic/case-1 ({one})" in out
    assert f"failed case kept in the baseline: synthetic/case-3 ({two})" in out
    assert sorted(p.name for p in (tmp_path / "b" / "nvidia-h200").iterdir()) == ["one.json", "two.json"]
