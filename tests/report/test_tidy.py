import pandas as pd

from bench_lib.report import load, tidy


def _cases(*paths):
    runs, _ = load.load(paths)
    return runs, tidy.tidy(runs)


def test_one_row_per_case_and_non_ok_rows_keep_their_reason(data_dir):
    runs, cases = _cases(data_dir / "cpu-a.json")
    assert len(cases) == len(runs.iloc[0]["cases"]) == 83
    counts = cases["outcome"].value_counts().to_dict()
    assert counts == {"ok": 67, "unsupported": 12, "oom": 2, "crashed": 1, "timeout": 1}
    oom = cases[cases["outcome"] == "oom"]
    assert set(oom["impl"]) == {"eager"} and set(oom["seq_len"]) == {4096}
    assert oom["reason"].str.contains("out of memory").all()
    unsupported = cases[(cases["outcome"] == "unsupported") & (cases["suite"] == "precision")]
    assert list(unsupported["precision"]) == ["fp16", "fp16"]
    assert unsupported["reason"].notna().all()
    assert cases.loc[cases["outcome"] == "ok", "reason"].isna().all()
    # a non-ok row has no measurements, but keeps its parameters
    crashed = cases[cases["outcome"] == "crashed"].iloc[0]
    assert crashed["model"] == "llama-7m" and pd.isna(crashed["time_s"])


def test_columns_params_metrics_memory_views(data_dir):
    _, cases = _cases(data_dir / "cpu-a.json")
    cols = list(cases.columns)
    assert cols[:7] == tidy.FIXED
    for col in ("impl", "direction", "seq_len", "precision", "method", "rank", "outcome", "reason", "time_s",
                "extra_peak_bytes", "kl_vs_ref", "memory_primary", "cpu_peak_rss_bytes", "n_samples"):
        assert col in cols
    assert cols.index("impl") < cols.index("outcome") < cols.index("time_s") < cols.index("memory_primary")
    row = cases[cases["case_id"] == "sdpa_flash-fwd-fp32-s1024-b4-h4-d64"].iloc[0]
    assert row["machine"] == "cpu-epyc-2c (AMD EPYC 7B13)"
    assert row["batch"] == 4 and row["n_samples"] == 5
    assert cases["time_s"].dtype.kind == "f"
    assert cases.loc[cases["suite"] == "precision", "synthetic_weights"].dropna().map(type).eq(bool).all()


def test_name_collisions_are_renamed_not_lost():
    runs = pd.DataFrame([{"run": "r", "device": "cpu", "profile": "smoke", "environment": {"machine_slug": "m"},
                          "cases": [{"id": "c", "suite": "s", "case": {"batch": 4, "outcome": "x"}, "outcome": "ok",
                                     "metrics": {"batch": 4.0, "time_s": 0.5, "suite": "y"},
                                     "memory": {"primary": "v", "batch": 1}}]}])
    row = tidy.tidy(runs).iloc[0]
    assert row["batch"] == 4 and row["metric_batch"] == 4.0 and row["memory_batch"] == 1  # the param keeps its name
    assert row["param_outcome"] == "x" and row["outcome"] == "ok" and row["metric_suite"] == "y"
    assert row["suite"] == "s" and row["machine"] == "m" and row["memory_primary"] == "v"


def test_machine_label_prefers_gpu_name():
    assert tidy.machine_label({"machine_slug": "s", "gpu": {"name": "NVIDIA H200"}, "cpu": {"model": "x"}}) == "s (NVIDIA H200)"
    assert tidy.machine_label({"machine_slug": "s", "gpu": None, "cpu": {"model": "EPYC"}}) == "s (EPYC)"
    assert tidy.machine_label({}) == "unknown-machine"


def test_series_long_table(data_dir):
    runs, _ = _cases(data_dir / "cpu-a.json")
    series = tidy.series(runs)
    pre = series[(series["series"] == "pretrain_loss") & (series["case_id"] == "convergence-full")]
    assert len(pre) == 60 and pre["step"].tolist() == list(range(60))
    assert pre["value"].iloc[0] > pre["value"].iloc[-1]
    assert set(series.loc[series["series"] == "loss_curve", "case_id"]) >= {"convergence-full", "convergence-lora-r64"}


def test_loss_curve_view_keeps_one_pretraining_curve_per_run(data_dir):
    from bench_lib.report import aggregate, views

    runs, cases = _cases(data_dir / "cpu-a.json", data_dir / "cpu-b.json")
    _, conv = views.finetune(aggregate.medians(cases))
    curves = views.loss_curves(tidy.series(runs), conv)
    pre = curves[curves["variant"] == "pre-training"]
    assert len(pre) == 2 * 60  # one 60-step curve per run, not one per convergence case
    assert set(curves.loc[curves["series"] == "loss_curve", "variant"]) == {
        "full", *(f"lora r{r} attn" for r in (1, 2, 4, 8, 16, 32, 64))}


def test_real_harness_file_tidies(data_dir):
    _, cases = _cases(data_dir / "real-smoke-calibration.json")
    assert set(cases["suite"]) == {"calibration"}
    assert (cases["outcome"] == "ok").all() and cases["tflops"].notna().sum() >= 2
