import pandas as pd

from bench_lib.report import aggregate, load, tidy, views


def test_pareto_front_per_model():
    rows = pd.DataFrame({"machine": "m", "model": ["a"] * 4 + ["b"],
                         "precision": ["fp32", "int8", "nf4", "fp4", "fp32"],
                         "bits_per_param": [32.0, 8.5, 4.5, 4.5, 32.0],
                         "kl_vs_ref": [0.0, 1e-3, 5e-3, 9e-3, 0.0]})
    front = views.pareto_front(rows, "bits_per_param", "kl_vs_ref")
    assert front.tolist() == [True, True, True, False, True]  # fp4: same bits as nf4, more KL


def test_variant_labels():
    assert views.variant_label({"method": "lora", "rank": 8.0, "targets": "attn", "checkpointing": True}) == "lora r8 attn +ckpt"
    assert views.variant_label({"method": "full", "rank": float("nan"), "targets": "attn", "checkpointing": False}) == "full"


def test_attention_view_headline_shape_oom_and_legend(data_dir):
    runs, _ = load.load([data_dir / "cpu-a.json"])
    cases = tidy.tidy(runs)
    view = views.attention(aggregate.medians(cases), cases)
    points, oom, shape = view["points"], view["oom"], view["shape"]
    assert shape == {"heads": 4, "kv_heads": 4, "head_dim": 64, "causal": False}
    assert set(oom["impl"]) == {"eager"} and set(oom["seq_len"]) == {4096}
    assert set(points["legend"]) == {"eager (n^2.00)", "sdpa_math (n^2.00)", "sdpa_flash (n^1.00)"}
    row = points[(points["impl"] == "eager") & (points["seq_len"] == 512)].iloc[0]
    assert row["extra_peak_bytes_per_seq"] == row["extra_peak_bytes"] / 8
    # fractions of peak come from the run's calibration rows, which the view must still see
    assert points["frac_of_measured_peak"].notna().all()


def test_memory_breakdown_stacks(data_dir):
    runs, _ = load.load([data_dir / "cpu-a.json"])
    cost, conv = views.finetune(aggregate.medians(tidy.tidy(runs)))
    assert "convergence-full" in set(conv["case_id"]) and "convergence-full" not in set(cost["case_id"])
    assert cost["model"].tolist()[0] == "llama-tiny"  # smallest first
    parts = views.memory_breakdown(cost)
    one = parts[(parts["variant"] == "full") & (parts["model"] == "llama-7m")]
    assert one["component"].tolist() == ["weights", "gradients", "optimizer state", "activations"]
    assert one["bottom"].iloc[1] == one["bytes"].iloc[0] and one["top"].iloc[-1] == one["bytes"].sum()


def test_real_quick_attention_sweep(data_dir):
    """A real CPU quick run (frozen): per-sequence extra memory of eager grows as n^2, sdpa_flash's as n."""
    runs, _ = load.load([data_dir / "quick-cal-attn.json"])
    cases = tidy.tidy(runs)
    view = views.attention(aggregate.medians(cases), cases)
    assert view["shape"] == {"heads": 2, "kv_heads": 2, "head_dim": 64, "causal": True}
    fits = view["exponents"].set_index(["impl", "direction", "metric"])
    sweep = fits.loc[("eager", "fwd", "extra_peak_bytes")]
    assert (sweep["x_min"], sweep["x_max"], sweep["n_points"]) == (256, 4096, 5)
    assert 1.8 <= sweep["exponent_upper"] <= 2.2
    assert 0.9 <= fits.loc[("sdpa_flash", "fwd", "extra_peak_bytes"), "exponent_upper"] <= 1.1
    legends = set(view["points"].loc[view["points"]["direction"] == "fwd", "legend"])
    assert {"eager (n^1.98)", "sdpa_flash (n^1.00)"} <= legends


# ---------------------------------------------------------------- trained quality, merge rows
def test_quality_rows_drop_random_weights_and_label_trained_ones():
    import pandas as pd

    from bench_lib.report import views as v

    med = pd.DataFrame([
        {"suite": "precision", "machine": "m", "model": "llama-7m", "precision": "nf4", "synthetic_weights": True},
        {"suite": "precision", "machine": "m", "model": "trained-gpt2", "precision": "nf4",
         "synthetic_weights": False, "trained_weights": True},
        {"suite": "precision", "machine": "m", "model": "ckpt-x", "precision": "nf4", "synthetic_weights": False}])
    rows = v.precision(med)
    assert dict(zip(rows["model"], rows["weights"], strict=True)) == {
        "llama-7m": "random weights", "trained-gpt2": "trained weights", "ckpt-x": "real weights"}
    assert set(v.quality_rows(rows)["model"]) == {"trained-gpt2", "ckpt-x"}


def test_with_interval_text():
    import pandas as pd

    from bench_lib.report import fmt
    from bench_lib.report import views as v

    rows = pd.DataFrame([{"acc": 0.5, "acc_ci_low": 0.28, "acc_ci_high": 0.72, "acc_items": 16},
                         {"acc": 0.25, "acc_ci_low": None, "acc_ci_high": None, "acc_items": None}])
    assert list(v.with_interval(rows, "acc", fmt.percent)) == ["50.0% [28.0%, 72.0%] (16 items)", "25.0%"]


def test_merge_rows_are_neither_cost_nor_convergence_and_compare_to_the_base():
    import pandas as pd

    from bench_lib.report import views as v

    common = {"suite": "finetune", "group": "merge", "machine": "m", "machine_slug": "m", "model": None}
    med = pd.DataFrame([{**common, "base": "fp32", "variant": "merged", "decode_s": 1.1},
                        {**common, "base": "fp32", "variant": "base", "decode_s": 1.0},
                        {**common, "base": "fp32", "variant": "unmerged", "decode_s": 1.5},
                        {"suite": "finetune", "group": "cost", "machine": "m", "machine_slug": "m", "model": "llama-7m",
                         "method": "full", "step_s": 0.1}])
    cost, conv = v.finetune(med)
    assert list(cost["group"]) == ["cost"] and conv.empty
    rows = v.merge_rows(med)
    assert list(rows["variant"]) == ["base", "unmerged", "merged"]
    assert list(rows["decode_vs_base"].round(3)) == [1.0, 1.5, 1.1]
