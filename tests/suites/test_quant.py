"""bench_lib.suites.quant: configs, support reasons, shared weights, and bytes counted from the tensors held."""

import pytest
import torch

from bench_lib.suites import models, quant

bnb = pytest.importorskip("bitsandbytes")

CPU = torch.device("cpu")
SMALL = models.preset("llama-7m")  # d=256, intermediate 688, kv 128: 7 linear layers x 4 blocks


# one torch thread for the whole module (its module-scoped model fixtures too): see tests/conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded():
    """llama-7m in every native and bitsandbytes precision, each loaded once for the whole module (torchao's
    are loaded and counted in test_quant_ao.py)."""
    return {pid: quant.load_model(SMALL, pid, CPU) for pid in quant.PRECISIONS.ids() if not pid.startswith("ao_")}


def test_bnb_config_is_explicit():
    nf4 = quant.bnb_config("nf4", torch.bfloat16)
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4"
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16 and not nf4.bnb_4bit_use_double_quant
    assert quant.bnb_config("nf4_dq", torch.float32).bnb_4bit_use_double_quant
    assert quant.bnb_config("fp4", torch.float32).bnb_4bit_quant_type == "fp4"
    int8 = quant.bnb_config("int8", torch.float16)
    assert int8.load_in_8bit and not int8.load_in_4bit and int8.llm_int8_threshold == 6.0
    with pytest.raises(ValueError, match="not a bitsandbytes precision"):
        quant.bnb_config("bf16", torch.float32)


def test_registry_ids_and_cpu_support():
    assert quant.PRECISIONS.ids() == ["fp32", "fp16", "bf16", "int8", "nf4", "nf4_dq", "fp4",
                                      "ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo", "ao_fp8dq"]
    table = dict(quant.PRECISIONS.support_table(CPU))
    assert table["fp32"] is None and table["bf16"] is None and table["nf4"] is None and table["int8"] is None
    assert table["fp16"] is None or "fp16" in table["fp16"]  # ok here, or a reason naming fp16
    assert "8.9" in table["ao_fp8dq"]  # dynamic float8 needs sm89+: never on a CPU


def test_missing_bitsandbytes_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    reason = quant._probe_bnb.__wrapped__("cpu", "nf4")
    assert reason == "bitsandbytes not installed (pip install 'effbench[quant]')"


def test_broken_fp16_matmul_is_a_reason(monkeypatch):
    def broken(a, b):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')

    monkeypatch.setattr(torch.Tensor, "__matmul__", broken)
    reason = quant._probe_matmul.__wrapped__("cpu", torch.float16)
    assert reason.startswith("fp16 matmul is not supported on cpu")


def test_every_precision_starts_from_the_same_weights(loaded):
    ref = loaded["fp32"].model.layers[0].self_attn.q_proj.weight
    again = quant.load_model(SMALL, "fp32", CPU).model.layers[0].self_attn.q_proj.weight
    assert torch.equal(ref, again)
    assert torch.equal(loaded["bf16"].model.layers[0].self_attn.q_proj.weight, ref.to(torch.bfloat16))
    layer = loaded["nf4"].model.layers[0].self_attn.q_proj
    deq = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    rel = (deq - ref).norm() / ref.norm()
    assert 0.02 < rel < 0.2  # 4-bit error: present, but the same matrix


def _expected_bytes(precision_id: str) -> int:
    """Hand count for llama-7m's quantizable linears (bitsandbytes 4-bit blocks of 64, double-quant blocks of 256)."""
    total = 0
    for _, d_in, d_out in SMALL.linear_shapes():
        n = d_in * d_out
        if precision_id == "fp32":
            total += 4 * n
        elif precision_id == "bf16":
            total += 2 * n
        elif precision_id == "int8":
            total += n + 4 * d_out  # int8 values + fp32 absmax per output row (SCB)
        elif precision_id == "nf4":
            total += n // 2 + 4 * (n // 64) + 16 * 4  # packed nibbles + fp32 absmax per block + 16-entry code
        elif precision_id == "nf4_dq":
            blocks = n // 64
            nested = -(-blocks // 256)
            # uint8 absmax per block + fp32 absmax per 256 blocks + 256-entry nested code + offset + code
            total += n // 2 + blocks + 4 * nested + 256 * 4 + 4 + 16 * 4
    return total * SMALL.layers


@pytest.mark.parametrize("precision_id", ["fp32", "bf16", "int8", "nf4", "nf4_dq"])
def test_weight_bytes_match_hand_count(loaded, precision_id):
    fp = quant.linear_weight_footprint(loaded[precision_id])
    assert fp["linear_params"] == SMALL.layers * sum(i * o for _, i, o in SMALL.linear_shapes())
    assert fp["weight_bytes"] == _expected_bytes(precision_id)


def test_bits_per_param_ranges(loaded):
    bits = {pid: quant.linear_weight_footprint(m)["bits_per_param"] for pid, m in loaded.items()}
    assert bits["fp32"] == 32 and bits["bf16"] == 16 and bits["fp16"] == 16
    assert 8 <= bits["int8"] <= 9.5
    assert 4 <= bits["nf4"] <= 5 and 4 <= bits["fp4"] <= 5
    assert bits["nf4_dq"] < bits["nf4"]


def test_known_layer_bytes(loaded):
    layer = loaded["nf4"].model.layers[0].self_attn.q_proj  # 256 x 256
    held = quant._tensor_bytes(quant._tensors_of_weight(layer.weight, layer), set())
    assert held == 256 * 256 // 2 + 4 * (256 * 256 // 64) + 64


def test_int8_state_counted_after_forward(loaded):
    """Linear8bitLt moves CB/SCB from the weight to module.state on the first forward: bytes must not drop."""
    model = loaded["int8"]
    before = quant.linear_weight_footprint(model)["weight_bytes"]
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long))
    assert quant.linear_weight_footprint(model)["weight_bytes"] == before


def test_model_bytes_is_whole_model(loaded):
    fp32 = quant.model_bytes(loaded["fp32"])
    buffers = sum(b.numel() * b.element_size() for b in loaded["fp32"].buffers())  # rotary inv_freq
    assert fp32 == 4 * SMALL.param_count() + buffers
    assert quant.model_bytes(loaded["nf4"]) < fp32


def test_unpackable_4bit_shapes_still_run():
    """llama-tiny's MLP (172 wide) cannot take bitsandbytes' packed CPU kernel; it must run, not assert."""
    model = quant.load_model(models.preset("llama-tiny"), "nf4", CPU)
    with torch.no_grad():
        logits = model(torch.arange(8)[None]).logits
    assert torch.isfinite(logits).all()
    assert quant.cpu_4bit_kernel(model) in ("mixed", "generic")
    assert quant.cpu_4bit_kernel(quant.load_model(models.preset("llama-tiny"), "bf16", CPU)) is None


@pytest.mark.parametrize("native, want", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_compute_dtype_is_bf16_only_where_the_gpu_computes_in_it(monkeypatch, native, want):
    """A V100/T4 reports bf16 when emulation counts (torch's default); quantized layers must then use fp16."""
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return True if including_emulation else native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert quant.default_compute_dtype(torch.device("cuda")) == want
    assert asked == [False]
