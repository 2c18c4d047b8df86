"""bench_lib.suites.training / bench_lib.suites.finetune: parameter and byte accounting, the shared step, FLOPs, the grid."""

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import finetune, flops, models, training

CPU = torch.device("cpu")


# one torch thread for the whole module (its module-scoped model fixtures too): see tests/conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def case(method, model="llama-tiny", rank=None, targets=None, checkpointing=False, batch=2, seq=32, **kw):
    params = {"group": "cost", "model": model, "method": method, "rank": rank, "targets": targets,
              "checkpointing": checkpointing, "attention": "sdpa", "batch": batch, "seq": seq, **kw}
    return Case("finetune", f"{model}-{method}-{rank}-{targets}-{checkpointing}", params)


def run(c):
    rec = runner.run_case(finetune.build, c, Context(CPU, profiles.get("smoke")))
    assert rec["outcome"] == "ok", rec["reason"]
    return rec["metrics"]


# ---------------------------------------------------------------- LoRA parameter counts
def by_hand(preset, rank, names):
    """r * (d_in + d_out) over the named linears of every block, straight from linear_shapes()."""
    return preset.layers * sum(rank * (i + o) for n, i, o in preset.linear_shapes() if n in names)


@pytest.mark.parametrize("model,targets,names", [
    ("llama-tiny", "attn", {"q_proj", "k_proj", "v_proj", "o_proj"}),
    ("llama-tiny", "all_linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ("gpt2-tiny", "attn", {"attn.c_attn", "attn.c_proj"}),
    ("gpt2-tiny", "all_linear", {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
])
@pytest.mark.parametrize("rank", [1, 4])
def test_lora_trainable_params_match_peft_and_formula(model, targets, names, rank):
    p = models.preset(model)
    trainer = training.setup(training.Recipe("lora", rank, targets), p, CPU)
    peft_trainable, peft_total = trainer.model.get_nb_trainable_parameters()
    ours = training.trainable_params(trainer)
    assert ours == peft_trainable == by_hand(p, rank, names) == training.lora_param_count(p, rank, targets)
    assert training.total_params(trainer.model) == peft_total == p.param_count() + ours


def test_lora_counts_hand_worked():
    # llama-tiny: d=64, kv = 2 heads x 16 = 32; attn at r=4: 4*(128 + 96 + 96 + 128) = 1792 per block, 2 blocks
    assert training.lora_param_count(models.preset("llama-tiny"), 4, "attn") == 3584
    # gpt2-tiny: c_attn 64->192, c_proj 64->64: 4*(256 + 128) = 1536 per block; MLP adds 4*(320 + 320)
    assert training.lora_param_count(models.preset("gpt2-tiny"), 4, "attn") == 3072
    assert training.lora_param_count(models.preset("gpt2-tiny"), 4, "all_linear") == 8192


def test_qlora_trains_what_lora_trains():
    pytest.importorskip("bitsandbytes")
    p = models.preset("llama-tiny")
    trainer = training.setup(training.Recipe("qlora", 4, "attn"), p, CPU)
    assert training.trainable_params(trainer) == 3584
    assert training.total_params(trainer.model) == p.param_count() + 3584  # 4-bit weights counted unpacked
    assert trainer.autocast_dtype == torch.bfloat16


def test_recipe_validation():
    with pytest.raises(ValueError, match="rank"):
        training.Recipe("lora")
    with pytest.raises(ValueError, match="every weight"):
        training.Recipe("full", rank=8, targets="attn")
    with pytest.raises(KeyError, match="unknown finetune method"):
        training.Recipe("adapter")


# ---------------------------------------------------------------- bytes through the harness
def test_full_fine_tuning_bytes():
    p = models.preset("llama-tiny")
    m = run(case("full"))
    n = p.param_count()
    assert m["trainable_params"] == m["total_params"] == n and m["trainable_frac"] == 1.0
    assert m["weight_bytes"] == 4 * n + 2 * 8 * 4  # fp32 weights + RoPE inv_freq and original_inv_freq (8 fp32 each)
    assert m["grad_bytes"] == 4 * n
    # AdamW: exp_avg + exp_avg_sq in fp32 (8 B/param) and a 4-byte step counter per tensor
    assert m["optimizer_state_bytes"] == pytest.approx(8 * n, rel=0.02)
    assert m["adapter_bytes"] >= 4 * n  # a full fine-tune saves every weight
    assert m["activation_bytes"] > 0


def test_lora_bytes():
    m = run(case("lora", rank=4, targets="all_linear"))
    n = training.lora_param_count(models.preset("llama-tiny"), 4, "all_linear")
    assert m["trainable_params"] == n
    assert m["grad_bytes"] == 4 * n
    assert m["optimizer_state_bytes"] == pytest.approx(8 * n, rel=0.02)
    # the adapter file holds the fp32 A/B tensors (plus a small safetensors header), nothing of the base
    assert 4 * n <= m["adapter_bytes"] < 4 * n + 16 * 1024


def test_time_dependent_metrics():
    m = run(case("lora", rank=4, targets="attn"))
    assert m["step_s"] == m["time_s"] > 0
    assert m["tokens_per_s"] == pytest.approx(64 / m["step_s"])
    assert m["flop_formula"] == flops.LORA_TRAIN_FORMULA and m["matmul_dtype"] == "fp32"
    assert m["tflops"] == pytest.approx(m["flop"] / m["step_s"] / 1e12)


def test_every_method_is_timed_by_the_same_step():
    ctx = Context(CPU, profiles.get("smoke"))
    cases = [case("full"), case("full_amp"), case("lora", rank=4, targets="attn"),
             case("lora", rank=4, targets="attn", checkpointing=True)]
    if finetune.METHODS["qlora"].support(CPU) is None:
        cases.append(case("qlora", rank=4, targets="attn"))
    fns = []
    for c in cases:
        work = finetune.build(c, ctx)
        fns.append(work.fn.func)
        work.teardown()
    assert all(f is training.train_step for f in fns)
    assert finetune.train_step is training.train_step


def test_checkpointing_lowers_activation_bytes():
    # llama-7m, 2 x 128 tokens: each block's saved activations are ~MBs, well above RSS granularity
    plain = run(case("lora", "llama-7m", 8, "attn", batch=2, seq=128))
    ckpt = run(case("lora", "llama-7m", 8, "attn", checkpointing=True, batch=2, seq=128))
    assert ckpt["activation_bytes"] < 0.8 * plain["activation_bytes"]


# ---------------------------------------------------------------- FLOPs
def test_training_flops_hand_worked():
    p = models.preset("llama-tiny")
    # per block: q 64x64 + k 64x32 + v 64x32 + o 64x64 + 3 MLP 64x172 = 45312; 2 blocks + head 1024x64
    assert flops.train_matmul_params(p) == 2 * 45312 + 65536 == 156160
    assert flops.full_train_flop(156160, 64) == 59_965_440
    assert flops.lora_train_flop(156160, 3584, 64) == 4 * 156160 * 64 + 6 * 3584 * 64 == 41_353_216
    flop, formula = finetune.step_flop(p, training.Recipe("lora", 4, "attn"), 64)
    assert (flop, formula) == (41_353_216, flops.LORA_TRAIN_FORMULA)
    assert finetune.step_flop(p, training.Recipe("full_amp"), 64) == (59_965_440, flops.FULL_TRAIN_FORMULA)


# ---------------------------------------------------------------- grid
def test_cpu_quick_grid_covers_the_acceptance():
    grid = profiles.cases("finetune", "quick", "cpu")
    cost = [c.params for c in grid if c.params["group"] == "cost"]
    models_ = sorted({p["model"] for p in cost})
    assert len(models_) >= 2
    for m in models_:
        here = [p for p in cost if p["model"] == m]
        assert {"full", "full_amp", "lora", "qlora"} <= {p["method"] for p in here}
        assert len({p["rank"] for p in here if p["method"] == "lora"}) >= 3
        assert {p["targets"] for p in here if p["method"] == "lora"} == {"attn", "all_linear"}
    larger = max(models_, key=lambda m: models.preset(m).param_count())
    assert {p["method"] for p in cost if p["model"] == larger and p["checkpointing"]} >= {"full", "lora"}
    assert any(p["attention"] == "eager" for p in cost)
    conv = [c.params for c in grid if c.params["group"] == "convergence"]
    assert sorted(p["rank"] for p in conv if p["method"] == "lora") == [1, 2, 4, 8, 16, 32, 64]
    assert any(p["method"] == "full" for p in conv)
