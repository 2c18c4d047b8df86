import json

import pytest

from bench_lib.harness import hardware
from bench_lib.report import aggregate, costs, load, tidy


def _tables(*paths, prices=None):
    runs, _ = load.load(paths)
    cases = tidy.tidy(runs)
    gpus = costs.machines(runs, cases, prices)
    return gpus, costs.per_case(aggregate.medians(cases), gpus).set_index("case_id")


def test_gpu_run_against_the_catalog(data_dir):
    gpus, rows = _tables(data_dir / "gpu-h200.json", data_dir / "cpu-a.json")
    assert list(gpus["gpu_catalog_id"]) == ["h200"]  # the CPU machine has no catalog entry, and no rows
    spec = hardware.find("h200")
    eager = rows.loc["eager-fwd-fp32-s1024-b4-h4-d64"]
    # TF32 was off in that run: fp32 attention is measured against the fp32 (not tf32) peak
    assert eager["frac_of_catalog_peak"] == pytest.approx(eager["tflops"] * 1e12 / spec.peak_flop_per_s["fp32"])
    decode = rows.loc["llama-1b-bf16-b1"]
    assert decode["decode_frac_of_bandwidth"] == pytest.approx(2.4e11 / spec.memory_bandwidth_bytes_per_s)
    assert decode["usd_per_million_decode_tokens"] == pytest.approx(spec.price_per_hour_usd / 3600 / 100 * 1e6)
    assert decode["tokens_per_joule"] == pytest.approx(80 / 320)
    train = rows.loc["llama-7b-qlora-r8-attn-ckpt"]
    assert train["usd_per_million_train_tokens"] == pytest.approx(spec.price_per_hour_usd / 3600 / (512 / 0.41) * 1e6)
    assert train["tokens_per_joule"] == pytest.approx(512 / 0.41 / 400)


def test_user_prices_replace_the_catalogs(data_dir, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"prices": {"h200": {"price_per_hour_usd": 1.0, "price_date": "2030-01"}}}))
    gpus, rows = _tables(data_dir / "gpu-h200.json", prices=str(prices))
    assert gpus.iloc[0]["price_per_hour_usd"] == 1.0 and gpus.iloc[0]["price_date"] == "2030-01"
    assert rows.loc["llama-1b-bf16-b1", "usd_per_million_decode_tokens"] == pytest.approx(1.0 / 3600 / 100 * 1e6)


def test_cpu_only_runs_have_no_catalog_rows(data_dir):
    gpus, rows = _tables(data_dir / "cpu-a.json")
    assert gpus.empty and rows.empty
