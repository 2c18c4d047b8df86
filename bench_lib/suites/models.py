"""Model presets: Llama-style and GPT-2-style ladders built from config with random weights.

No download is ever needed for speed and memory: ``build`` creates the architecture from its config and
initialises it with a fixed seed, directly on the device. A real checkpoint (local path or hub id) can be
loaded with :func:`load_checkpoint` for quality numbers; it never uses ``trust_remote_code``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelPreset:
    """Shape of a decoder-only transformer.

    hidden: model width d; layers: blocks; heads / kv_heads: attention heads (kv_heads < heads is GQA);
    intermediate: MLP width; vocab: vocabulary size; tie_embeddings: output head shares the embedding.
    """

    name: str
    family: str  # "llama" or "gpt2"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_positions: int = 2048
    tie_embeddings: bool = False

    def __post_init__(self):
        if self.family not in ("llama", "gpt2"):
            raise ValueError(f"preset {self.name}: family must be llama or gpt2")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"preset {self.name}: hidden must divide by heads, heads by kv_heads")
        if self.family == "gpt2" and self.kv_heads != self.heads:
            raise ValueError(f"preset {self.name}: GPT-2 has no grouped-query attention")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def hf_config(self):
        """The transformers config for this shape (random init, no download)."""
        if self.family == "llama":
            from transformers import LlamaConfig

            return LlamaConfig(
                hidden_size=self.hidden,
                num_hidden_layers=self.layers,
                num_attention_heads=self.heads,
                num_key_value_heads=self.kv_heads,
                intermediate_size=self.intermediate,
                vocab_size=self.vocab,
                max_position_embeddings=self.max_positions,
                tie_word_embeddings=self.tie_embeddings,
            )
        from transformers import GPT2Config

        return GPT2Config(
            n_embd=self.hidden,
            n_layer=self.layers,
            n_head=self.heads,
            n_inner=self.intermediate,
            vocab_size=self.vocab,
            n_positions=self.max_positions,
            # no dropout: deterministic steps, and SDPA keeps its fused kernels (dropout forces math on CPU)
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=self.vocab - 1,
            eos_token_id=self.vocab - 1,
            tie_word_embeddings=True,
        )

    def linear_shapes(self) -> list[tuple[str, int, int]]:
        """(module name suffix, d_in, d_out) of every linear layer in one block (the LoRA/quantization targets)."""
        d, kv = self.hidden, self.kv_heads * self.head_dim
        if self.family == "llama":
            return [
                ("q_proj", d, d),
                ("k_proj", d, kv),
                ("v_proj", d, kv),
                ("o_proj", d, d),
                ("gate_proj", d, self.intermediate),
                ("up_proj", d, self.intermediate),
                ("down_proj", self.intermediate, d),
            ]
        # GPT-2 uses Conv1D: c_attn fuses q, k, v; c_proj appears in attention and in the MLP
        return [
            ("attn.c_attn", d, 3 * d),
            ("attn.c_proj", d, d),
            ("mlp.c_fc", d, self.intermediate),
            ("mlp.c_proj", self.intermediate, d),
        ]

    def param_count(self) -> int:
        """Exact parameter count of the transformers model built from :meth:`hf_config`."""
        d = self.hidden
        linear = sum(i * o for _, i, o in self.linear_shapes())
        if self.family == "llama":
            norms = 2 * d  # RMSNorm weights, no bias
            block = linear + norms
            head = 0 if self.tie_embeddings else self.vocab * d
            return self.vocab * d + self.layers * block + d + head
        biases = sum(o for _, _, o in self.linear_shapes())
        norms = 2 * 2 * d  # LayerNorm weight + bias, twice per block
        block = linear + biases + norms
        return self.vocab * d + self.max_positions * d + self.layers * block + 2 * d


def _llama(name, hidden, layers, heads, kv_heads, intermediate, vocab=32000, **kw):
    return ModelPreset(name, "llama", hidden, layers, heads, kv_heads, intermediate, vocab, **kw)


def _gpt2(name, hidden, layers, heads, vocab=50257, max_positions=1024):
    return ModelPreset(name, "gpt2", hidden, layers, heads, heads, 4 * hidden, vocab, max_positions, True)


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        # Llama-style ladder; tiny sizes are for CPU, 7B/13B/65B follow the published Llama shapes
        _llama("llama-tiny", 64, 2, 4, 2, 172, vocab=1024, max_positions=512),
        _llama("llama-7m", 256, 4, 8, 4, 688, vocab=8192),
        _llama("llama-34m", 512, 6, 8, 4, 1376, vocab=16000),
        _llama("llama-134m", 768, 12, 12, 12, 2048),
        _llama("llama-1b", 2048, 22, 32, 4, 5632),
        _llama("llama-3b", 3200, 26, 32, 32, 8640),
        _llama("llama-7b", 4096, 32, 32, 32, 11008, max_positions=4096),
        _llama("llama-13b", 5120, 40, 40, 40, 13824, max_positions=4096),
        _llama("llama-65b", 8192, 80, 64, 64, 22016),
        # GPT-2 family shapes; distilgpt2 is the tutorial's model
        _gpt2("gpt2-tiny", 64, 2, 4, vocab=1024, max_positions=256),
        _gpt2("distilgpt2", 768, 6, 12),
        _gpt2("gpt2", 768, 12, 12),
        _gpt2("gpt2-medium", 1024, 24, 16),
        _gpt2("gpt2-large", 1280, 36, 20),
        _gpt2("gpt2-xl", 1600, 48, 25),
    ]
}


def preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None


# transformers 4.56 renamed from_pretrained/from_config's ``torch_dtype`` to ``dtype``; 4.46-4.55 know only
# the old name (``dtype=`` reaches the model's __init__ there: TypeError) and 5.x deprecates it
DTYPE_KEYWORD_SINCE = (4, 56)


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """``{"dtype": dtype}`` for ``from_pretrained``/``from_config``, spelled as the installed transformers wants."""
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__).release >= DTYPE_KEYWORD_SINCE
    return {"dtype" if new else "torch_dtype": dtype}


def build(p: ModelPreset, device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0,
          attn_implementation: str = "sdpa"):
    """A randomly initialised causal LM of shape ``p`` on ``device``; same seed, same weights."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            p.hf_config(), **dtype_kwargs(dtype), attn_implementation=attn_implementation
        )
    return model.eval()


def load_checkpoint(path_or_id: str, **kwargs):
    """Load a real checkpoint for quality numbers. Never trusts remote code; offline gets a clear message."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path_or_id, trust_remote_code=False, **kwargs)
    except OSError as exc:
        raise RuntimeError(
            f"could not load model {path_or_id!r}: {exc}. On an offline machine give a local checkpoint "
            "folder (with config.json and weights), or omit --model to use random-weight presets."
        ) from None
