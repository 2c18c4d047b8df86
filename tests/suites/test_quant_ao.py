"""torchao precisions: support reasons, the config on record, bits_per_param from the real tensors."""

import importlib.util

import pytest
import torch

from bench_lib.suites import quant

pytest.importorskip("torchao")

CPU = torch.device("cpu")


def _quantized_linear(precision_id: str, d_in: int = 256, d_out: int = 128):
    from torchao.quantization import quantize_

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(d_in, d_out, bias=False))
    quantize_(model, quant.ao_config(precision_id))
    return model[0]


def _bits(layer) -> float:
    return 8 * quant._tensor_bytes(quant._tensors_of_weight(layer.weight, layer), set()) / layer.weight.numel()


@pytest.mark.parametrize("precision_id, nominal", [("ao_int8wo", 8), ("ao_int8dq", 8), ("ao_fp8wo", 8)])
def test_bits_per_param_within_10_percent_of_nominal(precision_id, nominal):
    layer = _quantized_linear(precision_id)
    assert type(layer.weight).__module__.startswith("torchao")  # really quantized, not a plain weight
    bits = _bits(layer)
    assert abs(bits - nominal) / nominal <= 0.10, bits


def test_int4_bits_count_the_int8_storage_and_the_group_scales():
    # IntxWeightOnlyConfig v2 on CPU stores int4 values unpacked in int8 (IntxUnpackedToInt8Tensor):
    # 8 bits per value + an fp32 scale and an int8 zero point per group of AO_INT4_GROUP_SIZE
    layer = _quantized_linear("ao_int4wo")
    expected = 8 + (32 + 8) / quant.AO_INT4_GROUP_SIZE
    assert _bits(layer) == pytest.approx(expected)


def test_flatten_walks_nested_subclasses():
    layer = _quantized_linear("ao_int8wo")
    tensors = quant._tensors_of_weight(layer.weight, layer)
    assert all(type(t) is torch.Tensor for t in tensors)
    assert torch.int8 in {t.dtype for t in tensors} and torch.float32 in {t.dtype for t in tensors}


def test_quantized_output_is_close_to_fp32():
    torch.manual_seed(0)
    ref = torch.nn.Linear(256, 128, bias=False)
    x = torch.randn(4, 256)
    for pid in ("ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo"):
        from torchao.quantization import quantize_

        model = torch.nn.Sequential(torch.nn.Linear(256, 128, bias=False))
        model[0].weight.data.copy_(ref.weight.data)
        quantize_(model, quant.ao_config(pid))
        err = (model(x) - ref(x)).norm() / ref(x).norm()
        assert err < (0.15 if pid == "ao_int4wo" else 0.05), (pid, float(err))


def test_config_and_version_on_record():
    import torchao

    info = quant.ao_info("ao_int4wo")
    assert info["torchao_version"] == torchao.__version__
    assert info["ao_config"].startswith("IntxWeightOnlyConfig(") and "int4" in info["ao_config"]
    assert f"group_size={quant.AO_INT4_GROUP_SIZE}" in info["ao_config"] and info["ao_group_size"] == 32
    assert quant.ao_info("ao_fp8wo")["ao_config"].startswith("Float8WeightOnlyConfig(")


def test_missing_torchao_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    quant._probe_ao.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    try:
        for pid in quant.AO_IDS:
            assert quant._support(pid)(CPU) == "torchao not installed (pip install 'effbench[ao]')"
    finally:
        quant._probe_ao.cache_clear()


def test_cpu_ao_support():
    quant._probe_ao.cache_clear()
    for pid in ("ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo"):
        assert quant._support(pid)(CPU) is None, pid
    assert "8.9" in quant._support("ao_fp8dq")(CPU)


@pytest.mark.parametrize("cap, ok", [((8, 0), False), ((8, 6), False), ((8, 9), True), ((9, 0), True)])
def test_fp8dq_needs_capability_8_9(monkeypatch, cap, ok):
    quant._probe_ao.cache_clear()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: cap)
    reason = quant._probe_ao("cuda", "ao_fp8dq")
    quant._probe_ao.cache_clear()
    if ok:  # past the capability check the probe runs torchao on the (absent) GPU: a different reason
        assert reason is None or "compute capability" not in reason
    else:
        assert reason == f"torchao dynamic float8 (ao_fp8dq) needs compute capability 8.9+, this GPU has {cap[0]}.{cap[1]}"


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_every_quantizable_layer_is_quantized_also_gpt2s_conv1d(model):
    # GPT-2's Conv1D is not an nn.Linear: before the fix torchao skipped every GPT-2 layer, and the cases
    # reported fp32 weights (32 bits/param, KL 0) under a torchao name
    from bench_lib.suites import models

    preset = models.preset(model)
    ref = quant.load_model(preset, "fp32", CPU)
    got = quant.load_model(preset, "ao_int8wo", CPU)
    layers = quant.quantizable_linears(got)
    assert layers and all(type(m.weight).__module__.startswith("torchao") for _, m in layers)
    assert len(layers) == len(quant.quantizable_linears(ref))
    assert quant.linear_weight_footprint(got)["bits_per_param"] < 9
    ids = torch.randint(0, preset.vocab, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ref(input_ids=ids).logits, got(input_ids=ids).logits
    assert 0 < (a - b).abs().max() < 0.05 * a.abs().max()  # quantized (not equal), and the same network


def test_a_layer_torchao_leaves_unquantized_fails_the_load(monkeypatch):
    import torchao.quantization

    from bench_lib.suites import models

    monkeypatch.setattr(torchao.quantization, "quantize_", lambda *a, **k: None)  # quantizes nothing
    with pytest.raises(RuntimeError, match="left .* linear layers unquantized"):
        quant.load_model(models.preset("llama-tiny"), "ao_int8wo", CPU)
