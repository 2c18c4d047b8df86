import json

import numpy as np
import pandas as pd
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


def _with_energy(data_dir, tmp_path, **metrics):
    """gpu-h200.json with the energy fields of every case that measured energy replaced."""
    run = json.loads((data_dir / "gpu-h200.json").read_text())
    for rec in [b["extra_info"] for b in run["benchmarks"]] + run["effbench"]["cases"]:
        if "avg_power_w" in rec["metrics"]:
            rec["metrics"].update(metrics)
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(run))
    return path


@pytest.mark.parametrize("reading", [
    {"avg_power_w": 0.0, "energy_j": 0.0},  # an old run's few-ms window: the counter had not moved
    {"avg_power_w": float("inf"), "energy_j": 3.0},
    {"avg_power_w": None, "energy_j": None, "energy_reason": "NVML's energy counter did not advance"},
])
def test_no_power_measured_gives_no_tokens_per_joule_never_inf(data_dir, tmp_path, reading):
    _, rows = _tables(_with_energy(data_dir, tmp_path, **reading))
    assert rows["tokens_per_joule"].isna().all()
    # 0 W and inf are not shown as measurements either (an inf is dropped at load as a bad value: no column)
    assert "avg_power_w" not in rows or rows["avg_power_w"].isna().all()
    assert not np.isinf(rows.select_dtypes("number").to_numpy(dtype=float)).any()


def test_hardware_table_prints_no_inf_and_no_zero_watts(data_dir, tmp_path):
    from bench_lib.report import markdown, sections
    from bench_lib.report.document import Document

    runs, _ = load.load([_with_energy(data_dir, tmp_path, avg_power_w=0.0, energy_j=0.0)])
    cases = tidy.tidy(runs)
    x = sections.Inputs(cases, aggregate.medians(cases), tidy.series(runs), {}, tmp_path, runs)
    doc = Document("t", "")
    doc.sections = [sections.hardware_section(x)]
    text = markdown.render(doc)
    assert "Measured against the datasheet" in text and "inf" not in text.lower().replace("info", "")
    assert "tokens per joule" not in text  # nothing measured: the column is left out, not filled with inf


def test_measured_energy_keeps_real_readings():
    frame = pd.DataFrame({"energy_j": [12.5, 0.0, -1.0, np.inf, None], "avg_power_w": [250.0, 0.0, 300.0, 1.0, 2.0]})
    out = aggregate.measured_energy(frame)
    assert out["energy_j"][0] == 12.5 and out["energy_j"][1:].isna().all()
    assert out["avg_power_w"].isna().tolist() == [False, True, False, False, False]
    assert out["avg_power_w"][[0, 2, 3, 4]].tolist() == [250.0, 300.0, 1.0, 2.0]
