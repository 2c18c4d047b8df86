"""bench_lib.suites.quality: intervals with hand-worked values, and their item counts."""

import math

import pytest
import torch

from bench_lib.suites import quality


def test_wilson_hand_worked():
    # 8 of 16: centre 0.5, half-width 1.96/(1 + 1.96²/16) * sqrt(0.25/16 + 1.96²/1024) = 0.2200
    lo, hi = quality.wilson(8, 16)
    assert lo == pytest.approx(0.2800, abs=1e-4) and hi == pytest.approx(0.7200, abs=1e-4)
    # 0 of 16 is not the degenerate [0, 0] of the normal interval: upper 1.96²/(16 + 1.96²) = 0.1936
    assert quality.wilson(0, 16) == pytest.approx((0.0, 0.19361), abs=1e-4)
    assert quality.wilson(16, 16)[1] == 1.0 and quality.wilson(16, 16)[0] == pytest.approx(0.80639, abs=1e-4)
    with pytest.raises(ValueError):
        quality.wilson(0, 0)


def test_sixteen_items_say_how_wide_they_are():
    got = quality.accuracy_with_interval(9, 16)
    assert got["heldout_accuracy"] == 9 / 16 and got["heldout_accuracy_items"] == 16
    assert got["heldout_accuracy_ci_high"] - got["heldout_accuracy_ci_low"] > 0.4  # ±20% and more


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_items():
    g = torch.Generator().manual_seed(1)
    few, many = torch.rand(8, generator=g), torch.rand(512, generator=g)
    lo8, hi8 = quality.bootstrap_mean(few)
    lo512, hi512 = quality.bootstrap_mean(many)
    assert lo8 < float(few.mean()) < hi8 and lo512 < float(many.mean()) < hi512
    assert (hi512 - lo512) < (hi8 - lo8) / 3  # ~ 1/sqrt(n): 8x narrower in theory
    assert quality.bootstrap_mean(torch.full((20,), 0.25)) == pytest.approx((0.25, 0.25))


def test_kl_intervals_resample_whole_sequences():
    ref = torch.log_softmax(torch.zeros(4, 3, 5), -1)
    cand = ref.clone()
    cand[0] = torch.log_softmax(torch.tensor([4.0, 0, 0, 0, 0]).expand(3, 5), -1)  # only sequence 0 differs
    got = quality.kl_and_top1_with_intervals(ref, cand)
    assert got["quality_items"] == 4 and got["quality_positions"] == 12
    per_seq0 = float((ref[0].exp() * (ref[0] - cand[0])).sum(-1).mean())
    assert got["kl_vs_ref"] == pytest.approx(per_seq0 / 4)
    # resampling 4 sequences: 3 or more copies of sequence 0 have probability 13/256 (> 2.5%), 4 copies 1/256
    assert got["kl_vs_ref_ci_low"] == pytest.approx(0.0) and got["kl_vs_ref_ci_high"] == pytest.approx(0.75 * per_seq0)
    with pytest.raises(ValueError, match="sequences, positions, vocab"):
        quality.kl_and_top1_with_intervals(ref[0], cand[0])


def test_perplexity_of_a_batch_of_uniform_rows_is_the_vocab():
    logp = torch.full((3, 10, 50), -math.log(50))
    assert quality.perplexity(logp, torch.randint(0, 50, (3, 10))) == pytest.approx(50, rel=1e-6)
