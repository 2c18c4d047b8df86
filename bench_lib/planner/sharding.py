"""Predicted memory PER GPU (per rank) of one fine-tuning step under data parallelism: DDP and FSDP2.

Both strategies give every rank its own batch (``Setup.batch`` is the per-rank batch), so the activations,
the loss buffers and autocast's copies are those of a single device at that batch: nothing shards them.

``ddp`` (``torch.nn.parallel.DistributedDataParallel``; Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training"): every rank holds the whole model, its gradients and its optimizer
state, as on one device, plus the Reducer's gradient buckets. The buckets are flat tensors, allocated when
DDP is built and kept, that together hold every trainable parameter's gradient once in the parameter's
dtype; ``bucket_cap_mb`` (default 25 MiB, the first bucket 1 MiB: ``dist._DEFAULT_FIRST_BUCKET_BYTES``) only
decides how that total is cut, not its size. With ``gradient_as_bucket_view=True`` the ``.grad`` tensors are
views into the buckets, so the step's gradients cost nothing more (torch docs: "the saved memory size will be
equal to the total gradients size"); with the default (False) backward writes separate ``.grad`` tensors and
copies them into the buckets.

``fsdp`` (FSDP2, ``torch.distributed.fsdp.fully_shard``; ZeRO stage 3 of Rajbhandari et al. 2020, "ZeRO:
Memory Optimizations Toward Training Trillion Parameter Models", sec. 5: model states (weights, gradients,
optimizer state) partitioned 1/N over N ranks; Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully
Sharded Data Parallel", sec. 3): the planner assumes the usual wrapping, ``fully_shard`` on every decoder
block, then on the whole model (the root: embeddings, final norm, head). Each parameter is sharded on dim 0,
padded to a multiple of N (``ceil(d0 / N)`` rows per rank). Resident per rank: the weight shards and AdamW's
two states of the trainable shards (8 B per trainable element). During forward and backward a block's
parameters are all-gathered unsharded and freed after it (``reshard_after_forward=True``, the default for
non-root modules), and in backward the next block is prefetched (FSDP2's default backward prefetch), so two
blocks are unsharded at a time once the loss's buffers are freed; at the start of backward, with those
buffers, the root and one block are. The root is not resharded after forward (FSDP2's default for the
root), so its parameters stay unsharded through backward. The gradients are reduce-scattered per block: after backward each rank keeps its shard (4 B per trainable
element); at the end of backward the root's unsharded gradients and their reduce-scatter input coexist
with the first block's unsharded parameters and gradients.

QLoRA + FSDP: the planner assumes the NF4 base is sharded like every other parameter, its packed 4-bit
storage and block-wise scales split 1/N (as bitsandbytes allows with ``bnb_4bit_quant_storage`` set so
that FSDP can flatten the packed weights, the FSDP-QLoRA recipe of Answer.AI, 2024); a block's NF4 weights
are all-gathered packed and dequantized per linear as on one device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench_lib.planner import footprint
from bench_lib.suites.models import ModelPreset

STRATEGIES = ("single", "ddp", "fsdp")
FSDP_UNSHARDED_BLOCKS = 2  # the block being computed + the prefetched next one


@dataclass(frozen=True)
class Parallel:
    """How the step is spread: ``strategy`` single | ddp | fsdp over ``world_size`` ranks (one GPU each)."""

    strategy: str = "single"
    world_size: int = 1
    gradient_as_bucket_view: bool = False  # ddp only: .grad tensors are views into the buckets

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise ValueError(f"the number of GPUs must be a whole number >= 1, not {self.world_size!r}")
        if self.strategy == "single" and self.world_size != 1:
            raise ValueError(f"{self.world_size} GPUs need a strategy: pass --strategy ddp or --strategy fsdp")


@dataclass(frozen=True)
class Tensor:
    """One parameter: its shape, bytes per element and whether it trains."""

    shape: tuple[int, ...]
    elem_bytes: float
    trainable: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def shard_numel(self, n: int) -> int:
        """Elements of one rank's FSDP2 shard: dim 0 padded to a multiple of n, split in n."""
        return math.ceil(self.shape[0] / n) * math.prod(self.shape[1:])


def _linear(name: str, d_in: int, d_out: int, p: ModelPreset, s: footprint.Setup, hit: set[str]) -> list[Tensor]:
    """A block linear's weight (d_out x d_in; GPT-2's Conv1D d_in x d_out plus a bias; packed NF4 for qlora)
    and its LoRA A (r x d_in) and B (d_out x r) when targeted."""
    elem, trains = (s.base_bytes, False) if s.frozen_base else (4, True)
    if s.method == "qlora":  # packed 4-bit storage + absmax, as one flat tensor
        out = [Tensor((d_in * d_out,), footprint.QUANT_BITS[s.quant] / 8, False)]
    else:
        out = [Tensor((d_in, d_out) if p.family == "gpt2" else (d_out, d_in), elem, trains)]
    if p.family == "gpt2":
        out.append(Tensor((d_out,), elem, trains))
    if name in hit:
        out += [Tensor((s.rank, d_in), 4, True), Tensor((d_out, s.rank), 4, True)]
    return out


def block_params(p: ModelPreset, s: footprint.Setup) -> list[Tensor]:
    """Every parameter of one decoder block (what one ``fully_shard`` of a block groups)."""
    hit = footprint.targeted(p, s.targets) if s.frozen_base else set()
    norm = (p.hidden,)
    other = s.base_bytes if s.frozen_base else 4
    tensors = [t for n, i, o in p.linear_shapes() for t in _linear(n, i, o, p, s, hit)]
    norms = 2 if p.family == "llama" else 4  # RMSNorm weight x2; LayerNorm weight + bias x2
    return tensors + [Tensor(norm, other, not s.frozen_base)] * norms


def root_params(p: ModelPreset, s: footprint.Setup) -> list[Tensor]:
    """The parameters outside the blocks (the root ``fully_shard``): embeddings, final norm, head."""
    elem, trains = (s.base_bytes, False) if s.frozen_base else (4, True)
    out = [Tensor((p.vocab, p.hidden), elem, trains)]
    if p.family == "llama":
        out.append(Tensor((p.hidden,), elem, trains))
        if not p.tie_embeddings:
            out.append(Tensor((p.vocab, p.hidden), elem, trains))
    else:  # position embeddings, final LayerNorm weight + bias; the head is tied
        out += [Tensor((p.max_positions, p.hidden), elem, trains), Tensor((p.hidden,), elem, trains),
                Tensor((p.hidden,), elem, trains)]
    return out


def all_params(p: ModelPreset, s: footprint.Setup) -> list[Tensor]:
    return root_params(p, s) + p.layers * block_params(p, s)


def _bytes(tensors: list[Tensor], n: int = 1, trainable_only: bool = False, elem: float | None = None) -> float:
    """Bytes of one rank's shard of ``tensors`` over n ranks (n = 1: whole); ``elem`` overrides the dtype."""
    return sum(t.shard_numel(n) * (elem if elem is not None else t.elem_bytes)
               for t in tensors if t.trainable or not trainable_only)


def predict(p: ModelPreset, s: footprint.Setup, par: Parallel = Parallel(), coefficient: float = 1.0) -> footprint.Footprint:
    """The per-rank footprint of one step of ``p`` under ``s`` (per-rank batch) spread by ``par``."""
    one = footprint.predict(p, s, coefficient)
    one.strategy, one.world_size = par.strategy, par.world_size
    if par.strategy == "single":
        return one
    if par.strategy == "ddp":
        one.bucket_bytes = one.gradients_bytes  # one fp32 gradient per trainable parameter, resident
        if par.gradient_as_bucket_view:  # the step's .grad tensors are the buckets
            one.phases["optimizer"] -= one.gradients_bytes
            one.gradients_bytes = 0
        return one
    n, params, root, block = par.world_size, all_params(p, s), root_params(p, s), block_params(p, s)
    weights = int(round(_bytes(params, n)))
    grads = int(round(_bytes(params, n, trainable_only=True, elem=4)))
    states = 2 * grads  # AdamW exp_avg + exp_avg_sq of the local shard
    root_full, one_block = n * _bytes(root, n), n * _bytes(block, n)  # all-gather outputs are padded
    gathered = root_full + min(FSDP_UNSHARDED_BLOCKS, p.layers) * one_block
    largest_shard = max(t.shard_numel(n) for t in params if t.trainable)
    opt_temp = grads if s.device_type == "cuda" else 2 * 4 * largest_shard
    root_grads = n * _bytes(root, n, trainable_only=True, elem=4)
    block_grads = p.layers * _bytes(block, n, trainable_only=True, elem=4)
    first_block = n * (_bytes(block, n) + _bytes(block, n, trainable_only=True, elem=4))
    t = footprint.backward_transients(p, s)
    phases = {
        # the start of backward (the loss's buffers): the root and the last block unsharded (set from gloo
        # probes of llama-7m and llama-34m, within 0.5% of the largest rank's profiler peak; gpt2-tiny +3-5%)
        "backward": one.phases["backward"] + root_full + one_block,
        # a block's backward: the next block prefetched, the loss's buffers gone, the head's gradient kept
        "prefetch": one.activation_bytes + one.autocast_copies_bytes + max(t["head_grad"], t["dequant"]) + gathered,
        # end of backward: the root still unsharded, its unsharded gradients + their reduce-scatter input, the
        # blocks' gradient shards, and the first block's unsharded parameters and gradients not yet freed
        # (set from llama-34m full on 2 gloo ranks, 242.8 MiB on the largest rank; held out: llama-7m full on
        # 3 ranks, 57.28 MiB measured and predicted)
        "reduce": root_full + 2 * root_grads + block_grads + first_block,
        "optimizer": grads + opt_temp,
    }
    if "recompute" in one.phases:
        phases["recompute"] = one.phases["recompute"] - one.gradients_bytes + grads + gathered
    return footprint.Footprint(
        one.total_params, one.trainable_params, weights, grads, states, one.activation_bytes,
        one.loss_buffers_bytes, opt_temp, one.autocast_copies_bytes, phases, coefficient,
        strategy="fsdp", world_size=n, gather_bytes=gathered)
