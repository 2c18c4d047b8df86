"""Per-GPU memory under DDP and FSDP2: hand-worked bytes of a known small model, the ZeRO-3 limit on a big one,
the CLI's flags and their bad values, and calibration on (synthetic) distributed case records."""

import argparse
import json
from pathlib import Path

import pytest

from bench_lib.planner import footprint as fp
from bench_lib.planner import plan
from bench_lib.planner import plan_calibration as calib
from bench_lib.planner import sharding as sh
from bench_lib.suites import models

TINY_PARAMS = 222016  # llama-tiny, worked out in test_plan.py
# one block: q 64x64 + k 32x64 + v 32x64 + o 64x64 + gate, up 172x64 + down 64x172 + 2 norms of 64 = 45440;
# the root: embedding 1024x64 + final norm 64 + head 1024x64 = 131136; 131136 + 2 * 45440 = 222016
BLOCK, ROOT = 45440, 131136
# over 3 ranks each dim 0 is padded up to a multiple of 3: q 22x64 = 1408, k, v 11x64 = 704, o 1408,
# gate, up 58x64 = 3712, down 22x172 = 3784, norms 22 + 22 -> 15476 per block; embedding, head 342x64 = 21888
# each, final norm 22 -> 43798; one rank: 43798 + 2 * 15476 = 74750 elements (222016 / 3 = 74005.3 unpadded)
BLOCK_3, ROOT_3, SHARD_3 = 15476, 43798, 74750


def tiny():
    return models.preset("llama-tiny")


def _setup(method="full", **kw):
    return fp.Setup(method, seq=16, batch=2, device_type="cpu", **kw)


def test_parameter_inventory_adds_up_to_the_model():
    assert sum(t.numel for t in sh.block_params(tiny(), _setup())) == BLOCK
    assert sum(t.numel for t in sh.root_params(tiny(), _setup())) == ROOT
    for name in ("llama-tiny", "llama-7m", "gpt2-tiny"):
        for method in ("full", "lora", "qlora"):
            p, s = models.preset(name), _setup(method, rank=4)
            one = fp.predict(p, s)
            assert sh._bytes(sh.all_params(p, s)) == pytest.approx(one.weights_bytes, abs=1), (name, method)
            assert sum(t.numel for t in sh.all_params(p, s) if t.trainable) == one.trainable_params


def test_fsdp_shards_static_bytes_exactly_with_padding():
    two = sh.predict(tiny(), _setup(), sh.Parallel("fsdp", 2))
    assert (two.weights_bytes, two.gradients_bytes, two.optimizer_state_bytes) == (
        4 * TINY_PARAMS // 2, 4 * TINY_PARAMS // 2, 8 * TINY_PARAMS // 2)
    three = sh.predict(tiny(), _setup(), sh.Parallel("fsdp", 3))
    assert (three.weights_bytes, three.gradients_bytes, three.optimizer_state_bytes) == (
        4 * SHARD_3, 4 * SHARD_3, 8 * SHARD_3)
    # all-gathered in backward: the whole root (kept unsharded by FSDP2) + 2 blocks (current + prefetched)
    assert two.gather_bytes == 4 * (ROOT + 2 * BLOCK)
    assert three.gather_bytes == 4 * 3 * (ROOT_3 + 2 * BLOCK_3)


def test_fsdp_activations_are_not_sharded_and_the_phases_add_the_gathered_blocks():
    one = fp.predict(tiny(), _setup())
    two = sh.predict(tiny(), _setup(), sh.Parallel("fsdp", 2))
    assert two.activation_bytes == one.activation_bytes and two.loss_buffers_bytes == one.loss_buffers_bytes
    # start of backward: the loss's buffers with the root and one block unsharded; a block's backward: the
    # next one prefetched, the loss's buffers freed, the head's gradient (1024 x 64 x 4 B) kept
    assert two.phases["backward"] == one.phases["backward"] + 4 * (ROOT + BLOCK)
    assert two.phases["prefetch"] == one.activation_bytes + 4 * 1024 * 64 + two.gather_bytes
    # end of backward: root unsharded (params 4 B) + its gradients and their reduce-scatter input (2 x 4 B)
    # + the blocks' gradient shards (2 x 45440 / 2 elements x 4 B) + the first block's unsharded
    # parameters and gradients (2 x 4 B x 45440)
    assert two.phases["reduce"] == 4 * ROOT + 2 * 4 * ROOT + 4 * BLOCK + 2 * 4 * BLOCK
    # optimizer: the gradient shards + two copies of the largest trainable shard (embedding 512 x 64) on CPU
    assert two.phases["optimizer"] == 4 * TINY_PARAMS // 2 + 2 * 4 * 512 * 64


def test_lora_fsdp_shards_the_frozen_base_and_gathers_it():
    lora = _setup("lora", rank=8, targets="attn")  # 7168 LoRA params (test_plan.py), 3584 per block
    two = sh.predict(tiny(), lora, sh.Parallel("fsdp", 2))
    assert two.weights_bytes == (4 * TINY_PARAMS + 4 * 7168) // 2
    assert (two.gradients_bytes, two.optimizer_state_bytes) == (4 * 7168 // 2, 8 * 7168 // 2)
    assert two.gather_bytes == 4 * (ROOT + 2 * (BLOCK + 3584))


def test_ddp_replicates_and_adds_one_gradient_copy_in_buckets():
    one = fp.predict(tiny(), _setup())
    for n in (2, 8):
        ddp = sh.predict(tiny(), _setup(), sh.Parallel("ddp", n))
        assert ddp.bucket_bytes == 4 * TINY_PARAMS  # every trainable gradient once, fp32
        assert ddp.resident_bytes == 16 * TINY_PARAMS  # 4 weights + 8 AdamW + 4 buckets
        assert ddp.phases == one.phases and ddp.peak_bytes == one.peak_bytes + 4 * TINY_PARAMS
    view = sh.predict(tiny(), _setup(), sh.Parallel("ddp", 2, gradient_as_bucket_view=True))
    assert view.gradients_bytes == 0 and view.phases["optimizer"] == one.phases["optimizer"] - 4 * TINY_PARAMS
    lora = sh.predict(tiny(), _setup("lora", rank=8), sh.Parallel("ddp", 2))
    assert lora.bucket_bytes == 4 * 7168  # only trainable parameters get buckets


def test_zero3_limit_on_a_7b_model():
    """Rajbhandari et al. 2020: model states 16 B/param on one GPU, 16/N per GPU fully sharded."""
    p = models.preset("llama-7b")
    for n in (2, 8, 64):
        f = sh.predict(p, fp.Setup("full"), sh.Parallel("fsdp", n))
        static = f.weights_bytes + f.gradients_bytes + f.optimizer_state_bytes
        assert static / p.param_count() == pytest.approx(16 / n, rel=1e-3)
    eight = sh.predict(p, fp.Setup("full"), sh.Parallel("fsdp", 8))
    assert eight.peak_bytes < sh.predict(p, fp.Setup("full"), sh.Parallel("ddp", 8)).peak_bytes / 5


def test_qlora_fsdp_shards_the_nf4_base():
    p = models.preset("llama-65b")
    s = fp.Setup("qlora", rank=16, checkpointing=True)
    one, eight = fp.predict(p, s), sh.predict(p, s, sh.Parallel("fsdp", 8))
    assert eight.weights_bytes == pytest.approx(one.weights_bytes / 8, rel=1e-3)
    assert eight.peak_bytes < one.peak_bytes / 3


def _cli(argv):
    ns = argparse.ArgumentParser()
    plan.add_arguments(ns)
    return ns.parse_args(argv)


def test_cli_reports_per_gpu_parts_as_json(capsys):
    args = _cli(["--model", "llama-tiny", "--method", "full", "--strategy", "fsdp", "--gpus", "2", "--seq", "16",
                 "--batch", "2", "--device", "cpu", "--format", "json"])
    assert plan.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parallel"] == {"strategy": "fsdp", "world_size": 2, "gradient_as_bucket_view": False}
    c = out["components"]
    assert c["weights_bytes"] == 2 * TINY_PARAMS and c["all_gather_bytes"] == 4 * (ROOT + 2 * BLOCK)
    assert c["ddp_buckets_bytes"] == 0 and out["peak_bytes"] == sh.predict(
        tiny(), _setup(), sh.Parallel("fsdp", 2)).peak_bytes
    assert all("fits" in g for g in out["gpus"])


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "fsdp", "--gpus", "0"], "whole number >= 1"),
    (["--strategy", "ddp", "--gpus", "-2"], "whole number >= 1"),
    (["--gpus", "4"], "pass --strategy ddp or --strategy fsdp"),
])
def test_bad_gpu_counts_are_exit_2_saying_what_to_do(capsys, argv, message):
    assert plan.main(_cli(["--model", "llama-tiny", "--method", "full", *argv])) == 2
    assert message in capsys.readouterr().err


def test_gpus_that_is_no_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli(["--model", "llama-tiny", "--method", "full", "--gpus", "two"])
    assert exc.value.code == 2 and "whole number of GPUs" in capsys.readouterr().err


# ---------------------------------------------------------------- calibration on distributed case records
DATA = Path(__file__).resolve().parents[1] / "data/planner-distributed"


def test_distributed_records_are_planned_per_rank():
    rec = {"id": "d", "suite": "finetune", "outcome": "ok",
           "case": {"group": "distributed", "model": "llama-tiny", "method": "full", "batch": 2, "seq": 16,
                    "strategy": "fsdp", "world_size": 3}}
    assert calib.parallel_from_record(rec) == sh.Parallel("fsdp", 3)
    assert calib.parallel_from_record({"case": {**rec["case"], "world_size": "2"}}) is None
    assert calib.parallel_from_record({"case": {**rec["case"], "strategy": "zero9"}}) is None
    assert calib.parallel_from_record({"case": {"model": "llama-tiny"}}) == sh.Parallel()


def _distributed(i, strategy, method, measured_added, rss_before, rss_peak, world=2, malloc=None):
    return ({"id": f"d{i}", "suite": "finetune", "outcome": "ok",
             "case": {"group": "distributed", "model": "llama-tiny", "method": method, "rank": 8 if method != "full" else None,
                      "targets": "attn" if method != "full" else None, "checkpointing": False, "attention": "sdpa",
                      "batch": 4, "seq": 64, "strategy": strategy, "world_size": world},
             "metrics": {"world_size": world, "backend": "gloo", "strategy": strategy},
             "memory": {"torch_cpu_added_peak_bytes": measured_added, "cpu_rss_before_bytes": rss_before,
                        "cpu_peak_rss_bytes": rss_peak,
                        **({"cpu_malloc_before_bytes": malloc[0], "cpu_peak_malloc_bytes": malloc[1]} if malloc else {})}},
            "cpu")


def test_calibration_fits_a_planted_coefficient_on_distributed_records():
    records, baseline, live = [], 300e6, 120e6
    for i, (strategy, world) in enumerate([("ddp", 2), ("fsdp", 2), ("fsdp", 4)]):
        par, s = sh.Parallel(strategy, world), fp.Setup("full", seq=64, batch=4, device_type="cpu")
        f = sh.predict(tiny(), s, par)
        added = f.step_added_bytes + 0.2 * f.activation_bytes  # 1.2 x the modelled activations
        # RSS keeps freed heap resident (+ 40 MB of fragmentation in FSDP's cases); live malloc bytes do not
        frag = 40e6 if strategy == "fsdp" else 0.0
        records.append(_distributed(i, strategy, "full", added, baseline + f.resident_bytes + frag,
                                    baseline + f.resident_bytes + added + frag, world,
                                    malloc=(live + f.resident_bytes, live + f.resident_bytes + added)))
    coef = calib.calibrate(records)["full"]
    assert coef["coefficient"] == pytest.approx(1.2) and coef["cases"] == 3
    assert calib.cpu_process_baseline(records) == pytest.approx(baseline + 40e6)  # the median of 0, 40, 40 MB
    assert calib.cpu_process_baseline(records, "cpu_malloc_before_bytes") == pytest.approx(live)
    rows = calib.compare(records, {"full": coef})
    assert [(r["strategy"], r["world_size"]) for r in rows] == [("ddp", 2), ("fsdp", 2), ("fsdp", 4)]
    assert all(abs(r["rel_error"]) < 1e-9 and abs(r["live_rel_error"]) < 1e-9 for r in rows)
    assert rows[0]["process_rel_error"] > 0.01 and abs(rows[1]["process_rel_error"]) < 1e-9  # DDP's RSS read low
    assert rows[1]["live_measured_bytes"] < rows[0]["live_measured_bytes"]  # FSDP's shard shows in the live view
    assert "cpu_peak_malloc_bytes (+baseline)" in "\n".join(plan.distributed_table(rows))


def test_frozen_distributed_fixture_predicted_against_measured(capsys):
    """tests/data/planner-distributed: SYNTHETIC records in the agreed distributed-case shape (see its README),
    built from the per-rank figures a real gloo run of dist_probe gave; the planner reads them and reports
    predicted against measured per GPU with the ratio, every case within 15%."""
    run = DATA / "synthetic-distributed-run.json"
    records = calib.read_records(run)
    rows = calib.compare(records, calib.calibrate(records))
    assert {(r["strategy"], r["method"]) for r in rows} >= {("ddp", "full"), ("ddp", "lora"), ("fsdp", "full"), ("fsdp", "lora")}
    bad = {r["id"]: round(r["rel_error"], 3) for r in rows if abs(r["rel_error"]) > 0.15}
    assert not bad, bad
    args = _cli(["--model", "llama-7m", "--method", "full", "--strategy", "fsdp", "--gpus", "2", "--seq", "128",
                 "--batch", "4", "--device", "cpu", "--calibrate", str(run)])
    assert plan.main(args) == 0
    text = capsys.readouterr().out
    assert "predicted against measured per GPU" in text and "-fsdp-w2" in text and "ratio" in text


def test_a_distributed_record_with_only_rss_views_compares_the_rss_step():
    f = sh.predict(tiny(), fp.Setup("full", seq=64, batch=4, device_type="cpu"), sh.Parallel("fsdp", 2))
    rec, device = _distributed(0, "fsdp", "full", None, 400e6, 400e6 + 1.25 * f.step_added_bytes)
    del rec["memory"]["torch_cpu_added_peak_bytes"]
    [row] = calib.compare([(rec, device)])
    assert row["view"] == "extra_peak_bytes" and row["predicted_bytes"] / row["measured_bytes"] == pytest.approx(0.8)
