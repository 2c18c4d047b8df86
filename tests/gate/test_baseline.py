"""Baselines: one folder of same-code runs per GPU model, promoted only on purpose, only from runs fit to judge by."""

import filecmp

import pytest
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


# ---------------------------------------------------------------- no file value becomes a path (issue 18)
HOSTILE_SLUGS = ["../../victim", "..", ".", "", "/tmp/victim", "a/b", "cpu-x/../../victim", "A-Upper", "x" * 101,
                 "nul\x00byte", "~root", "-leading-dash", 7, ["list"], {"d": 1}]


@pytest.mark.parametrize("value", HOSTILE_SLUGS, ids=repr)
def test_promote_never_uses_a_hostile_machine_slug_as_a_folder(tmp_path, capsys, value):
    # a run file whose machine_slug was ../../victim made promote delete and replace victim/, exit 0
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    base_dir = tmp_path / "work" / "results" / "baselines"
    run = synthetic_run(1, env={**environment("cpu"), "machine_slug": value})
    path = write(tmp_path, "run.json", run)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert cli.main(["baseline", "promote", path, "--dir", str(base_dir), "--force"]) == 2
    assert "cannot name a baseline folder" in capsys.readouterr().err
    assert cli.main(["baseline", "path", path, "--dir", str(base_dir)]) == 2
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("device, env_change", [
    ("cuda", {"gpu": {"name": "../../victim"}}),  # slugged to "victim": stays inside --dir
    ("cuda", {"gpu": {"name": "..."}}),  # slugs to "": would have been --dir itself, replacing every baseline
    ("cuda", {"gpu": {"name": "/"}}),
    ("cpu", {"machine_slug": None, "cpu": {"model": "../.."}}),
    ("cpu", {"machine_slug": None, "cpu": {"model": "../../etc"}}),
])
def test_every_field_used_in_the_folder_name_stays_inside_the_baseline_dir(tmp_path, capsys, device, env_change):
    base_dir = tmp_path / "baselines"
    (base_dir / "nvidia-h200").mkdir(parents=True)
    (base_dir / "nvidia-h200" / "other.json").write_text("{}")
    env = {**environment(device, "NVIDIA H200" if device == "cuda" else None), **env_change}
    path = write(tmp_path, "run.json", synthetic_run(1, env=env))
    rc = cli.main(["baseline", "promote", path, "--dir", str(base_dir), "--force"])
    capsys.readouterr()
    assert (base_dir / "nvidia-h200" / "other.json").exists()  # another machine's baseline is untouched
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(base_dir) and p.name != "run.json"]
    assert outside == []  # nothing created beside the baseline folder
    if rc == 0:
        made = [p for p in base_dir.iterdir() if p.name != "nvidia-h200"]
        assert len(made) == 1 and baseline.SLUG_PATTERN.fullmatch(made[0].name)
        assert (made[0] / "run.json").is_file()
    else:
        assert rc == 2


def test_a_gpu_record_of_the_wrong_type_is_bad_input_not_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "run.json", synthetic_run(1, env={**environment("cuda"), "gpu": "NVIDIA H200"}))
    assert cli.main(["baseline", "path", path]) == 2
    assert "without a GPU name" in capsys.readouterr().err
