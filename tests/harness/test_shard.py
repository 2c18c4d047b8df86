"""Sharded sweeps: the split, the merge (every case once), and each rank's pinning."""

import pytest

from bench_lib.harness import shard

KEYS = [("attention", f"a{i}") for i in range(7)] + [("quant", f"q{i}") for i in range(4)] + [("calibration", "matmul")]


def run_of(keys, profile="smoke"):
    return {"machine_info": {"node": "x"}, "benchmarks": [],
            "effbench": {"profile": profile, "finished_at": "t", "cases": [{"suite": s, "id": i, "outcome": "ok"} for s, i in keys]}}


def test_split_is_deterministic_complete_and_balanced():
    n = 3
    shares = [shard.selected(reversed(KEYS), r, n) for r in range(n)]
    assert shares == [shard.selected(KEYS, r, n) for r in range(n)]  # order of collection does not matter
    non_cal = [s - {("calibration", "matmul")} for s in shares]
    assert set().union(*non_cal) == set(KEYS) - {("calibration", "matmul")}
    assert sum(len(s) for s in non_cal) == len(KEYS) - 1  # disjoint
    assert max(map(len, non_cal)) - min(map(len, non_cal)) <= 1
    assert all(("calibration", "matmul") in s for s in shares)  # every rank measures its own ceilings


def test_merge_holds_every_case_once_and_keeps_rank0_calibration():
    runs = [run_of(sorted(shard.selected(KEYS, r, 2))) for r in range(2)]
    merged = shard.merge(runs)
    ids = [(c["suite"], c["id"]) for c in merged["effbench"]["cases"]]
    assert sorted(ids) == sorted(KEYS) and len(ids) == len(set(ids))
    assert [c["shard_rank"] for c in merged["effbench"]["cases"] if c["suite"] == "calibration"] == [0]
    assert merged["effbench"]["shard"]["world_size"] == 2


def test_merge_says_what_to_do_when_a_case_is_missing_or_duplicated():
    share0, share1 = (sorted(shard.selected(KEYS, r, 2)) for r in range(2))
    victim = next(k for k in share1 if k[0] != "calibration")
    runs = [run_of(share0), run_of(share1)]
    # a case of rank 1 that rank 0 also ran: the owner map still names rank 1, so rank 0's copy is flagged
    with pytest.raises(shard.ShardError, match=r"belongs to rank 1.*--resume"):
        shard.merge([run_of(share0 + [victim]), run_of(share1)])
    runs[1]["effbench"]["cases"] = [c for c in runs[1]["effbench"]["cases"] if (c["suite"], c["id"]) != victim]
    # without the case anywhere the owner map shifts; the merge still must not hold every case
    with pytest.raises(shard.ShardError, match="--resume"):
        shard.merge(runs)
    with pytest.raises(shard.ShardError, match="twice in rank 0"):
        shard.merge([run_of(share0 + share0[-1:]), run_of(share1)])


def test_parse_rejects_bad_shards():
    assert shard.parse("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            shard.parse(bad)


def test_rank_env_pins_one_gpu_or_splits_cores(monkeypatch):
    info = {"rank": 3, "world_size": 4, "local_rank": 1, "local_world_size": 2}
    assert shard.pin_env(info, "cuda", {}) == {"EFFBENCH_SHARD": "3/4", "CUDA_VISIBLE_DEVICES": "1"}
    assert "CUDA_VISIBLE_DEVICES" not in shard.pin_env(info, "cuda", {"CUDA_VISIBLE_DEVICES": "5"})
    assert shard.pin_env(info, "cpu", {}, cores=16)["OMP_NUM_THREADS"] == "8"
    assert shard.pin_env(dict(info, local_world_size=32), "cpu", {}, cores=16)["OMP_NUM_THREADS"] == "1"
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    assert shard.torchrun() == {"rank": 1, "world_size": 2, "local_rank": 1, "local_world_size": 2}
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shard.torchrun() is None


def test_rank_output_names():
    from pathlib import Path

    assert shard.rank_output(Path("/r/X.json"), 1) == Path("/r/X.rank1.json")


def test_distributed_cases_are_unsupported_inside_a_sharded_sweep():
    from bench_lib.harness.workload import Case

    dist = Case("finetune", "ddp-w2", {"group": "distributed", "strategy": "ddp"})
    assert "launches its own torchrun" in shard.nested_reason(dist, "1/2")
    assert shard.nested_reason(dist, "0/1") is None  # one rank: not a sharded sweep
    assert shard.nested_reason(Case("finetune", "lora", {"group": "cost"}), "1/2") is None


def test_plain_resume_of_a_sharded_run_says_to_use_torchrun(tmp_path):
    from bench_lib.harness import resume

    (tmp_path / "X.rank0.jsonl").write_text("{}\n")
    (tmp_path / "X.rank1.jsonl").write_text("{}\n")
    with pytest.raises(resume.RunRefused, match=r"torchrun --nproc-per-node=2 .*every rank's journal"):
        resume.read_header(tmp_path / "X.jsonl", tmp_path / "X.json")
