"""Hardware catalog: validation names the broken entry, real device names resolve, derived metrics are exact."""

import copy
import json

import pytest

from bench_lib.harness import hardware as hw


@pytest.fixture(scope="module")
def raw_catalog():
    from importlib import resources

    return json.loads(resources.files("bench_lib").joinpath("data/gpus.json").read_text())


def test_packaged_catalog_covers_the_issue_list():
    ids = {s.id for s in hw.load_catalog()}
    required = {"a100-sxm4-40gb", "a100-sxm4-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "l40s", "rtx-4090",
                "rtx-3090", "t4", "v100-sxm2-16gb", "a10g", "mi300x", "rtx-a6000"}
    assert required <= ids


@pytest.mark.parametrize(
    "device_name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 3090", "rtx-3090"),
        ("Tesla T4", "t4"),
        ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA A10", "a10"),  # must not be taken for the A10G or the A100
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA RTX A6000", "rtx-a6000"),
        ("AMD Instinct MI300X", "mi300x"),
        ("  nvidia   geforce rtx 4090 ", "rtx-4090"),  # whitespace and case do not matter
    ],
)
def test_lookup_real_device_names(device_name, expected):
    assert hw.lookup(device_name).id == expected


@pytest.mark.parametrize("device_name", ["NVIDIA H100 80GB HBM3 MIG 1g.10gb", "NVIDIA GeForce RTX 3090 Ti", "cpu", ""])
def test_lookup_unknown_is_none(device_name):
    # a MIG slice has a fraction of the peaks: no entry must claim it
    assert hw.lookup(device_name) is None


def test_dense_peaks_not_sparse():
    h100 = hw.find("h100-sxm")
    # the datasheet's BF16 line reads 1,979 TFLOPS* with sparsity: the dense peak is half
    assert hw.peak_flop_per_s(h100, "bf16") == pytest.approx(989.5e12)
    assert hw.peak_flop_per_s(h100, "torch.bfloat16") == pytest.approx(989.5e12)
    assert hw.peak_flop_per_s(hw.find("a100-sxm4-80gb"), "tf32") == pytest.approx(156e12)
    assert hw.peak_flop_per_s(hw.find("t4"), "bf16") is None  # Turing has no bf16 tensor cores
    assert hw.peak_flop_per_s(h100, "nf4") is None


def test_tf32_flag_selects_the_tensor_core_peak():
    a100 = hw.find("a100-sxm4-80gb")
    assert hw.peak_flop_per_s(a100, hw.matmul_dtype("fp32", tf32_enabled=True)) == pytest.approx(156e12)
    assert hw.peak_flop_per_s(a100, hw.matmul_dtype("float32", tf32_enabled=False)) == pytest.approx(19.5e12)


def test_frac_of_peak_and_ceiling():
    a100 = hw.find("a100-sxm4-80gb")
    assert hw.frac_of_peak(156.0, a100, "bf16") == pytest.approx(0.5)
    assert hw.frac_of_ceiling(0.06, {"matmul_flop_per_s": {"fp32": 1.2e11}}, "float32") == pytest.approx(0.5)
    assert hw.frac_of_ceiling(0.06, {}, "fp32") is None


def test_decode_bandwidth_fraction():
    # 7B params in bf16 = 13.48e9 bytes; 100 tokens/s at batch 1 streams 1.348 TB/s = 0.4024 of an H100's 3.35 TB/s
    weight_bytes = 6.738e9 * 2
    bw = hw.decode_bytes_per_s(weight_bytes, tokens_per_s=100.0)
    assert bw == pytest.approx(1.3476e12)
    assert hw.frac_of_bandwidth(bw, hw.find("h100-sxm")) == pytest.approx(0.40227, rel=1e-4)
    # batch 8 at 800 tokens/s is still 100 weight passes per second
    assert hw.decode_bytes_per_s(weight_bytes, tokens_per_s=800.0, batch=8) == pytest.approx(bw)


def test_cost_per_million_tokens_hand_worked():
    # $2.99/h at 1000 tokens/s: 3.6e6 tokens per hour -> 2.99 / 3.6 = $0.8306 per million tokens
    assert hw.usd_per_million_tokens(2.99, 1000.0) == pytest.approx(0.830556, rel=1e-5)
    # training: batch 8 x 512 tokens every 0.25 s = 16384 tokens/s; $1.79/h -> $0.030349 per million tokens
    tps = hw.training_tokens_per_s(8, 512, 0.25)
    assert tps == 16384
    assert hw.usd_per_million_tokens(1.79, tps) == pytest.approx(1.79 / 3600 / 16384 * 1e6)
    assert hw.usd_per_million_tokens(1.79, tps) == pytest.approx(0.0303481, rel=1e-5)
    assert hw.usd_per_million_tokens(None, tps) is None


def test_tokens_per_joule():
    assert hw.tokens_per_joule(4096, 512.0) == 8.0
    assert hw.tokens_per_joule(4096, None) is None


def _broken(raw, gpu_id, **changes):
    data = copy.deepcopy(raw)
    entry = next(g for g in data["gpus"] if g["id"] == gpu_id)
    for key, value in changes.items():
        if value is KeyError:
            del entry[key]
        else:
            entry[key] = value
    return data


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"memory_bytes": KeyError}, "missing field 'memory_bytes'"),
        ({"memory_bytes": -1}, "'memory_bytes' must be positive"),
        ({"tdp_w": "700"}, "'tdp_w' has the wrong type"),
        ({"peak_flop_per_s": {"fp32": 1e12}}, "peak_flop_per_s needs exactly"),
        ({"verified": {"compute": True}}, "verified needs booleans"),
        ({"price_date": None}, "a price needs price_date and price_source"),
        ({"name_patterns": ["NVIDIA H100 (80GB"]}, "bad name pattern"),
        ({"name_patterns": ["NVIDIA H100.*"]}, "matches ['h100-sxm', 'h100-pcie'"),  # ambiguous pattern
        ({"device_names": ["NVIDIA H100 PCIe"]}, "must match this entry alone"),
    ],
)
def test_validation_names_the_entry(raw_catalog, changes, message):
    with pytest.raises(hw.CatalogError) as err:
        hw.parse_catalog(_broken(raw_catalog, "h100-sxm", **changes))
    assert "'h100-sxm'" in str(err.value) or "h100-sxm" in str(err.value)
    assert message in str(err.value)


def test_duplicate_id_and_schema_version(raw_catalog):
    data = copy.deepcopy(raw_catalog)
    data["gpus"].append(copy.deepcopy(data["gpus"][0]))
    with pytest.raises(hw.CatalogError, match="duplicate ids a100-sxm4-40gb"):
        hw.parse_catalog(data)
    with pytest.raises(hw.CatalogError, match="schema_version"):
        hw.parse_catalog({**raw_catalog, "schema_version": 99})


def test_user_prices_override(tmp_path):
    specs = hw.load_catalog()
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": {
        "h100-sxm": {"price_per_hour_usd": 2.10, "price_date": "2025-09-01", "price_source": "our contract"},
        "NVIDIA A100-SXM4-80GB": 1.2,
    }}))
    priced = hw.with_prices(specs, hw.load_prices(path, specs))
    h100, a100 = hw.find("h100-sxm", priced), hw.find("a100-sxm4-80gb", priced)
    assert (h100.price_per_hour_usd, h100.price_date, h100.price_source) == (2.10, "2025-09-01", "our contract")
    assert a100.price_per_hour_usd == 1.2 and str(path) in a100.price_source
    assert hw.find("l4", priced).price_per_hour_usd == hw.find("l4", specs).price_per_hour_usd


def test_user_prices_errors(tmp_path):
    specs = hw.load_catalog()
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": {"NVIDIA Imaginary 9000": 1.0}}))
    with pytest.raises(hw.CatalogError, match="'NVIDIA Imaginary 9000' is no catalog id"):
        hw.load_prices(path, specs)
    path.write_text(json.dumps({"prices": {"l4": {"price_per_hour_usd": -3}}}))
    with pytest.raises(hw.CatalogError, match="positive price_per_hour_usd"):
        hw.load_prices(path, specs)


def test_prices_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": {"t4": 0.35}}))
    monkeypatch.setenv(hw.PRICES_ENV, str(path))
    assert hw.find("t4", hw.catalog()).price_per_hour_usd == 0.35
    monkeypatch.delenv(hw.PRICES_ENV)
    assert hw.find("t4", hw.catalog()).price_per_hour_usd == 0.526


def test_describe_for_the_report():
    d = hw.describe(hw.find("a10g"))
    assert d["gpu_catalog_id"] == "a10g"
    assert d["catalog_unverified"] == ["compute", "fp8", "memory", "power", "price"]
    assert hw.describe(None) == {"gpu_catalog_id": None}


FP8_GPUS = ("h100-sxm", "h100-pcie", "h100-nvl", "h200", "h200-nvl", "l4", "l40s", "rtx-4090", "mi300x")


@pytest.mark.parametrize("gpu_id", FP8_GPUS)
def test_fp8_dense_peak_present_and_above_bf16(gpu_id):
    spec = hw.find(gpu_id, hw.load_catalog())
    fp8, bf16 = spec.peak_flop_per_s["fp8"], spec.peak_flop_per_s["bf16"]
    assert fp8 is not None and fp8 > bf16
    assert fp8 <= 2 * bf16 * 1.05  # dense (datasheets round: L40S 733 vs 2 x 362.05); a sparse figure is 4x
    assert spec.verified["fp8"] is False  # recalled figures, marked as such


def test_fp8_only_where_the_capability_has_fp8_tensor_cores():
    for spec in hw.load_catalog():
        if spec.vendor != "nvidia":
            continue
        major, minor = (int(x) for x in spec.compute_capability.split("."))
        assert (spec.peak_flop_per_s["fp8"] is not None) == ((major, minor) >= (8, 9)), spec.id


@pytest.mark.parametrize("dtype", ["fp8", "float8_e4m3fn", "torch.float8_e4m3fn", "float8_e5m2"])
def test_fraction_of_peak_for_an_fp8_case_uses_the_fp8_peak(dtype):
    spec = hw.find("h100-sxm", hw.load_catalog())
    assert hw.canonical_dtype(dtype) == "fp8"
    assert hw.frac_of_peak(989.5, spec, hw.matmul_dtype(dtype, True)) == pytest.approx(989.5e12 / 1979e12)
    assert hw.frac_of_peak(989.5, spec, "bf16") == pytest.approx(1.0)
    assert hw.frac_of_peak(100.0, hw.find("a100-sxm4-80gb", hw.load_catalog()), dtype) is None
