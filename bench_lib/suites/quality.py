"""Quality against a reference model, with the number of items and a confidence interval for each figure.

- KL(ref || candidate) and top-1 agreement per next-token position, averaged per evaluation sequence; the
  interval is a percentile bootstrap over sequences (positions within one sequence are not independent, so
  sequences are resampled whole; Efron & Tibshirani 1993, ch. 13).
- task accuracy: a share of n independent items, with the Wilson score interval (Wilson 1927; it stays
  inside [0, 1] and is honest at n = 16 and at 0 or n successes, where the normal interval is not).

Every interval is 95% and carries its ``*_items``: a 16-item accuracy reads e.g. 0.56 [0.33, 0.77].
"""

from __future__ import annotations

import math

import torch

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_RESAMPLES = 2000
SEED = 0


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``."""
    if n <= 0:
        raise ValueError("a proportion needs n >= 1 items")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: torch.Tensor, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (one value per independent item)."""
    values = values.double().flatten()
    if values.numel() < 2:
        return float(values.mean()), float(values.mean())
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, values.numel(), (resamples, values.numel()), generator=g)
    means = values[picks].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(lo), float(hi)


def kl_and_top1(ref_logp: torch.Tensor, cand_logp: torch.Tensor) -> dict[str, float]:
    """Mean over positions of KL(ref || cand) = sum_v p_ref (log p_ref - log p_cand) (nats), and the share
    of positions where both pick the same most likely token. Inputs: log-probs (..., vocab)."""
    ref_logp, cand_logp = ref_logp.double(), cand_logp.double()  # fp32 sums give tiny negative KLs
    kl = (ref_logp.exp() * (ref_logp - cand_logp)).sum(-1)
    top1 = (ref_logp.argmax(-1) == cand_logp.argmax(-1)).float()
    return {"kl_vs_ref": kl.mean().item(), "top1_agreement": top1.mean().item()}


def kl_and_top1_with_intervals(ref_logp: torch.Tensor, cand_logp: torch.Tensor) -> dict[str, float | int]:
    """:func:`kl_and_top1` over (sequences, positions, vocab) inputs, plus bootstrap intervals over sequences:
    ``kl_vs_ref_ci_low/high``, ``top1_agreement_ci_low/high``, ``quality_items`` (sequences) and
    ``quality_positions``."""
    if ref_logp.dim() != 3:
        raise ValueError("log-probs must be (sequences, positions, vocab)")
    ref, cand = ref_logp.double(), cand_logp.double()
    kl = (ref.exp() * (ref - cand)).sum(-1)  # (sequences, positions)
    top1 = (ref.argmax(-1) == cand.argmax(-1)).double()
    out: dict[str, float | int] = {"kl_vs_ref": kl.mean().item(), "top1_agreement": top1.mean().item()}
    out["kl_vs_ref_ci_low"], out["kl_vs_ref_ci_high"] = bootstrap_mean(kl.mean(1))
    out["top1_agreement_ci_low"], out["top1_agreement_ci_high"] = bootstrap_mean(top1.mean(1))
    out["quality_items"], out["quality_positions"] = kl.shape[0], kl.numel()
    return out


def accuracy_with_interval(correct: int, n: int, prefix: str = "heldout_accuracy") -> dict[str, float | int]:
    """``prefix``, ``prefix_ci_low/high`` (Wilson) and ``prefix_items``."""
    lo, hi = wilson(correct, n)
    return {prefix: correct / n, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi, f"{prefix}_items": n}


def perplexity(logp: torch.Tensor, ids: torch.Tensor) -> float:
    """exp(mean negative log-likelihood of each next token): logp (b, n, vocab), ids (b, n)."""
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.exp(nll.double().mean()).item()
