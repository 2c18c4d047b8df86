"""Baselines: one file per GPU model, promoted only on purpose and only from a run fit to judge others by."""

import filecmp

from runfactory import environment, synthetic_run, write

from bench_lib import baseline, cli, plant
from bench_lib.runfile import parse_run


def test_slug_names_the_gpu_model_only():
    run = parse_run(synthetic_run(1, env=environment("cuda", "NVIDIA H100 80GB HBM3")))
    assert baseline.baseline_slug(run) == "nvidia-h100-80gb-hbm3"
    assert str(baseline.baseline_path(run)) == "results/baselines/nvidia-h100-80gb-hbm3.json"
    cpu = parse_run(synthetic_run(1, env=environment("cpu")))
    assert baseline.baseline_slug(cpu) == "test-machine"  # CPU runs: the machine slug (model and cores)


def test_path_command_prints_the_file_for_this_gpu(tmp_path, capsys):
    run = write(tmp_path, "run.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200")))
    assert cli.main(["baseline", "path", run, "--dir", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "b" / "nvidia-h200.json")


def test_promote_copies_the_run_unchanged(tmp_path, capsys):
    run = write(tmp_path, "run.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200")))
    assert cli.main(["baseline", "promote", run, "--dir", str(tmp_path / "b")]) == 0
    target = tmp_path / "b" / "nvidia-h200.json"
    assert filecmp.cmp(run, target, shallow=False)
    assert "created baseline" in capsys.readouterr().out
    newer = write(tmp_path, "newer.json", synthetic_run(2, env=environment("cuda", "NVIDIA H200")))
    assert cli.main(["baseline", "promote", newer, "--dir", str(tmp_path / "b")]) == 0
    assert "replaced baseline" in capsys.readouterr().out
    assert filecmp.cmp(newer, target, shallow=False)


def test_promote_refuses_failed_cases_and_other_profiles_unless_forced(tmp_path, capsys):
    env = environment("cuda", "NVIDIA H200")
    failed = write(tmp_path, "failed.json", plant.set_outcome(synthetic_run(1, env=env), "synthetic/case-1", "error", "x"))
    quick = write(tmp_path, "quick.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200", profile="quick")))
    target = tmp_path / "b" / "nvidia-h200.json"
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
