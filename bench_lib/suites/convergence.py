"""Convergence: the quality full fine-tuning and LoRA reach in the same steps (the tutorial's LoRA run, measured).

A small GPT-2-shaped model is pre-trained briefly on a generated corpus (:mod:`bench_lib.suites.convergence_data`)
that states every country's capital in plain sentences; its real loss curve is kept (series
``pretrain_loss``) with ``pretrain_fact_accuracy`` (greedy completion of "The capital of X is" over all
countries: what the held-out questions can at best draw on). Then, from the same pre-trained weights, each
case fine-tunes on "Question: What is the capital of X?\\nAnswer: Y" for the training countries only, with
fixed seeds, batches and steps, through the same :func:`bench_lib.suites.training.train_step` as the cost cases.

A case (``group: "convergence"``, ``method`` full | lora, ``rank``, ``targets``) records: series
``loss_curve`` (mean next-token loss of each step over whole examples, prompt included, as a plain causal-LM
fine-tune computes it), ``initial_loss`` (the first step's loss: the pre-trained model on the first batch,
the same for every method), ``final_loss`` (mean of the last ``window`` steps), held-out ``accuracy`` (greedy
answer equals the capital, for countries never asked about in fine-tuning) with its Wilson interval
``accuracy_ci_low/high`` over ``accuracy_items``, ``train_accuracy``, ``heldout_answer_loss`` (mean loss of
the capital's tokens given held-out questions), ``weight_bytes`` and ``finetune_s``. ``qlora`` fine-tunes the
same pre-trained weights loaded in NF4 (same rank, data and steps as ``lora``).

Pre-training is cached on disk (:mod:`bench_lib.suites.trained`): a later run loads it instead of training
(``pretrain_reused``; ``pretrain_s`` stays the time it took when it ran, ``pretrain_trained_here_s`` is what
this process spent). The corpus is generated (``pretrain_corpus``): no real-text corpus ships with Python or
with a package this project already depends on, and the task needs sentences that state the capitals.

The timed call is the whole fine-tune from the pre-trained weights (``rounds = 1``; each call starts afresh,
so warmup calls repeat it exactly); evaluation runs after timing. Pre-training runs once per process per
:class:`Config` and device (cached) and is shared by every case; its wall time is ``pretrain_s``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from bench_lib.harness import timing
from bench_lib.harness.workload import Case, CaseFailed, Context, Preparation, Unsupported, Workload
from bench_lib.suites import convergence_data as data
from bench_lib.suites import models, quant, trained, training


@dataclass(frozen=True)
class Config:
    """Sizes and schedule; every field may be set by a case parameter of the same name.

    pretrain_steps: fewer than ~250 at the default size and the model has not yet bound capitals to
    countries (the knowledge appears abruptly, then held-out accuracy can rise). finetune_steps: more lowers
    every method's final loss and hides how much faster higher ranks converge.
    """

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    vocab: int = 1024
    seq: int = 64
    pretrain_sentences: int = 20000
    pretrain_steps: int = 360
    pretrain_batch: int = 16
    pretrain_lr: float = 5e-3
    finetune_steps: int = 60
    finetune_batch: int = 16
    lr_full: float = 1e-3
    lr_lora: float = 3e-3  # adapters start at B = 0 and need larger steps (Hu et al. 2021 use 2e-4..2e-3 and more)
    window: int = 5  # steps averaged for final_loss
    max_new_tokens: int = 8
    seed: int = 0

    def preset(self) -> models.ModelPreset:
        return models.ModelPreset("convergence-gpt2", "gpt2", self.hidden, self.layers, self.heads, self.heads,
                                  4 * self.hidden, self.vocab, self.seq, True)

    @classmethod
    def from_params(cls, params: dict) -> Config:
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    def pretrain_key(self) -> tuple:
        """What pre-training depends on (fine-tuning fields excluded, so all cases share one pre-training)."""
        return (self.hidden, self.layers, self.heads, self.vocab, self.seq, self.pretrain_sentences,
                self.pretrain_steps, self.pretrain_batch, self.pretrain_lr, self.max_new_tokens, self.seed)


CORPUS = "generated-capitals-v1"  # named in every record: see convergence_data (no real-text corpus package is reachable offline)


@dataclass
class Pretrained:
    """The pre-trained model: weights (``state_dict``, also a checkpoint folder ``path``), tokenizer, loss curve.

    wall_s: how long pre-training took when it ran (this process or an earlier one: ``reused``);
    trained_here_s: seconds this process spent training it (0 when it came from the cache).
    """

    tokenizer: object
    state_dict: dict
    loss_curve: list[float]
    wall_s: float
    fact_accuracy: float
    path: Path | None = None
    reused: bool = False
    trained_here_s: float = 0.0

    def record(self) -> dict:
        """What a case record says about the pre-trained weights it starts from."""
        return {"pretrain_s": self.wall_s, "pretrain_reused": self.reused, "pretrain_trained_here_s": self.trained_here_s,
                "pretrain_corpus": CORPUS, "weights_cache": str(self.path) if self.path else None}


def _model(cfg: Config, device: torch.device):
    return models.build(cfg.preset(), device, torch.float32, cfg.seed)


_CACHE: dict[tuple, Pretrained] = {}


def pretrained(cfg: Config, device: torch.device) -> Pretrained:
    """The pre-trained model of ``cfg``: from this process, else from the on-disk cache
    (:mod:`bench_lib.suites.trained`), else trained on ``device`` now and stored there.

    One entry is kept in the process: a grid uses one pre-training, and an old one would only hold memory.
    """
    _raise_if_failed(pretrain_entry(cfg))
    key = (cfg.pretrain_key(), str(device))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _load_or_pretrain(cfg, device)
        return _CACHE[key]
    return replace(_CACHE[key], trained_here_s=0.0)  # trained (if at all) for an earlier case


def pretrain_entry(cfg: Config) -> str:
    names = ("hidden", "layers", "heads", "vocab", "seq", "pretrain_sentences", "pretrain_steps",
             "pretrain_batch", "pretrain_lr", "max_new_tokens", "seed")
    return trained.key("pretrain", {"corpus": CORPUS, **{n: getattr(cfg, n) for n in names}})


def _load_or_pretrain(cfg: Config, device: torch.device) -> Pretrained:
    name = pretrain_entry(cfg)
    path = trained.entry(name)
    if path is not None:
        info = trained.meta(path)
        model = load_checkpoint(path, device)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return Pretrained(load_tokenizer(path), state, info["loss_curve"], info["pretrain_s"],
                          info["fact_accuracy"], path, reused=True)
    pre, model = _pretrain(cfg, device)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)  # safetensors
        pre.tokenizer.save(str(folder / "tokenizer.json"))

    info = {"kind": "pretrain", "corpus": CORPUS, "config": asdict(cfg), "trained_on": str(device),
            "pretrain_s": pre.wall_s, "loss_curve": pre.loss_curve, "fact_accuracy": pre.fact_accuracy}
    pre.path = trained.store(name, write, info)
    pre.trained_here_s = pre.wall_s
    return pre


def load_checkpoint(path: Path, device: torch.device):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, device_map={"": str(device)},
                                                **models.dtype_kwargs(torch.float32)).eval()


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json"))


def _pretrain(cfg: Config, device: torch.device) -> tuple[Pretrained, torch.nn.Module]:
    out: dict = {}
    model = _model(cfg, device)  # built outside the timing: the first build also imports transformers' model code

    def run():
        sentences = data.pretrain_sentences(cfg.pretrain_sentences, cfg.seed)
        tok = data.train_tokenizer(sentences + [data.example(c, k) for c, k in data.TRAIN], cfg.vocab)
        eos = tok.token_to_id(data.EOS)
        stream = torch.tensor([i for enc in tok.encode_batch(sentences) for i in enc.ids + [eos]])
        trainer = training.prepare(model, training.Recipe("full", lr=cfg.pretrain_lr), "gpt2", device)
        warmup = max(1, cfg.pretrain_steps // 10)  # linear warmup, then constant
        sched = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        g = torch.Generator().manual_seed(cfg.seed)
        curve = []
        for _ in range(cfg.pretrain_steps):
            starts = torch.randint(0, len(stream) - cfg.seq, (cfg.pretrain_batch,), generator=g).tolist()
            ids = torch.stack([stream[s:s + cfg.seq] for s in starts]).to(device)
            curve.append(training.train_step(trainer, {"input_ids": ids, "labels": ids}).item())
            sched.step()
        model.eval()
        out.update(tok=tok, curve=curve)

    wall_s = timing.wall(run, device)
    tok = out["tok"]
    model.config.use_cache = True  # saved for inference
    facts = accuracy(model, tok, data.COUNTRIES, cfg.max_new_tokens, device, data.statement_prompt)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Pretrained(tok, state, out["curve"], wall_s, facts), model


def _encode_batch(tok, texts: list[str], device: torch.device) -> dict:
    """Right-padded batch; padding is masked from attention and from the loss (label -100)."""
    rows = [enc.ids for enc in tok.encode_batch(texts)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.token_to_id(data.PAD))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


class NonFiniteLogits(RuntimeError):
    """A forward gave NaN or inf logits where an answer is read: the evaluation is wrong, not just low."""


@torch.inference_mode()
def greedy_answers(model, tok, texts: list[str], max_new_tokens: int, device: torch.device) -> list[str]:
    """Greedy continuation of each text, cut at end of text, end of line or a full stop, stripped.

    All texts decode together, right-padded: every real token sits left of all padding, so no real
    position ever has a fully masked attention row. (Left padding does: CUDA's memory-efficient SDPA kernel
    returns NaN for such rows, which recent transformers no longer unmask, and the NaN spreads to every
    later layer through the padded keys' values. CPU kernels return 0 there, so only a GPU would show it.)
    Each row's next token is read at its own last real position, and positions count from 0 as for one
    text alone (tested against one at a time). Non-finite logits there raise :class:`NonFiniteLogits`.
    """
    eos, pad = tok.token_to_id(data.EOS), tok.token_to_id(data.PAD)
    rows = [enc.ids for enc in tok.encode_batch(texts)]
    lengths = torch.tensor([len(r) for r in rows], device=device)
    ids = torch.full((len(rows), int(lengths.max()) + max_new_tokens), pad, device=device)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, device=device)
        mask[i, :len(r)] = 1
    every = torch.arange(len(rows), device=device)
    new = torch.empty((len(texts), 0), dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        width = int(lengths.max())
        logits = model(input_ids=ids[:, :width], attention_mask=mask[:, :width]).logits[every, lengths - 1]
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteLogits(f"non-finite logits while decoding {len(texts)} texts greedily "
                                  f"(rows {torch.nonzero(~torch.isfinite(logits).all(-1)).flatten().tolist()})")
        nxt = logits.argmax(-1)
        new = torch.cat([new, nxt[:, None]], dim=1)
        ids[every, lengths] = nxt
        mask[every, lengths] = 1
        lengths = lengths + 1
        if bool((new == eos).any(dim=1).all()):
            break
    out = []
    for row in new.tolist():
        row = row[:row.index(eos)] if eos in row else row
        out.append(tok.decode(row).split("\n")[0].split(".")[0].strip())
    return out


def correct_answers(model, tok, pairs, max_new_tokens: int, device: torch.device, prompt=data.prompt) -> int:
    """How many (country, capital) ``pairs`` get the capital as greedy answer to ``prompt(country)``."""
    answers = greedy_answers(model, tok, [prompt(c) for c, _ in pairs], max_new_tokens, device)
    return sum(a == k for a, (_, k) in zip(answers, pairs, strict=True))


def accuracy(model, tok, pairs, max_new_tokens: int, device: torch.device, prompt=data.prompt) -> float:
    """Fraction of (country, capital) ``pairs`` whose greedy answer to ``prompt(country)`` is the capital."""
    return correct_answers(model, tok, pairs, max_new_tokens, device, prompt) / len(pairs)


@torch.inference_mode()
def answer_loss(model, tok, pairs, device: torch.device) -> float:
    """Mean loss (nats/token) of the answer tokens (" Capital" + end of text) given the question."""
    losses = []
    for country, capital in pairs:
        n_prompt = len(tok.encode(data.prompt(country)).ids)
        ids = torch.tensor([tok.encode(data.example(country, capital)).ids], device=device)
        labels = ids.clone()
        labels[0, :n_prompt] = -100
        losses.append(float(model(input_ids=ids, labels=labels).loss))
    return sum(losses) / len(losses)


def finetune_batches(cfg: Config, tok, device: torch.device) -> list[dict]:
    """The fixed sequence of fine-tuning batches (same seed, same batches for every method)."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    batches = []
    for _ in range(cfg.finetune_steps):
        picks = torch.randint(0, len(data.TRAIN), (cfg.finetune_batch,), generator=g).tolist()
        batches.append(_encode_batch(tok, [data.example(*data.TRAIN[i]) for i in picks], device))
    return batches


METHODS = ("full", "lora", "qlora")


def fresh_trainer(cfg: Config, pre: Pretrained, recipe: training.Recipe, device: torch.device) -> training.Trainer:
    """A trainer for ``recipe`` from the pre-trained weights: fp32 for full and LoRA, NF4 for QLoRA (loaded
    from the cached checkpoint through the same ``BitsAndBytesConfig`` path as any checkpoint)."""
    if training.METHODS[recipe.method].options["base"] == "nf4":
        model = quant.load_model(str(pre.path), "nf4", device, compute_dtype=training.amp_dtype(device))
    else:
        model = _model(cfg, device)
        model.load_state_dict(pre.state_dict)
    return training.prepare(model, recipe, "gpt2", device)


def recipe_of(cfg: Config, method: str, rank: int | None = None, targets: str | None = None) -> training.Recipe:
    lr = cfg.lr_full if method == "full" else cfg.lr_lora
    return training.Recipe(method, rank, targets, lr=lr)


def evaluate(model, tok, cfg: Config, device: torch.device) -> dict:
    """Held-out accuracy with its Wilson interval, train accuracy and the held-out answer loss."""
    from bench_lib.suites import quality

    correct = correct_answers(model, tok, data.HELD_OUT, cfg.max_new_tokens, device)
    out = quality.accuracy_with_interval(correct, len(data.HELD_OUT), "accuracy")
    out["train_accuracy"] = accuracy(model, tok, data.TRAIN, cfg.max_new_tokens, device)
    out["heldout_answer_loss"] = answer_loss(model, tok, data.HELD_OUT, device)
    return out


# ---------------------------------------------------------------- fine-tuned weights, cached for other suites
def finetuned(cfg: Config, device: torch.device, method: str = "full", rank: int | None = None,
              targets: str | None = None) -> tuple[Path, dict]:
    """(folder, info) of the ``method`` fine-tune of the pre-trained model on the capitals task, cached.

    full: a whole checkpoint (``from_pretrained`` loads it in any precision); lora: a peft adapter folder
    for the fp32 pre-trained checkpoint ``info["base"]``. Same batches and steps as the convergence cases.
    info: ``finetune_s`` and ``final_loss`` of the training, ``trained_here_s`` (0 when reused),
    ``pretrain`` (the pre-trained weights' record).
    """
    pre = pretrained(cfg, device)
    recipe = recipe_of(cfg, method, rank, targets)
    name, fields_ = finetune_entry(cfg, method, rank, targets)
    _raise_if_failed(name)
    path = trained.entry(name)
    if path is not None:
        info = trained.meta(path)
        return path, {**info, "trained_here_s": 0.0, "reused": True, "pretrain": pre.record()}
    batches = finetune_batches(cfg, pre.tokenizer, device)
    holder: dict = {}

    def run():
        trainer = fresh_trainer(cfg, pre, recipe, device)
        holder.update(trainer=trainer, losses=[float(training.train_step(trainer, b)) for b in batches])

    wall_s = timing.wall(run, device)
    model, losses = holder["trainer"].model.eval(), holder["losses"]
    model.config.use_cache = True

    def write(folder: Path) -> None:
        model.save_pretrained(folder)  # safetensors: the whole model, or only the adapter for peft
        pre.tokenizer.save(str(folder / "tokenizer.json"))

    info = {"kind": f"finetune-{method}", "fields": fields_, "trained_on": str(device), "finetune_s": wall_s,
            "final_loss": sum(losses[-cfg.window:]) / len(losses[-cfg.window:]), "base": str(pre.path)}
    path = trained.store(name, write, info)
    return path, {**info, "trained_here_s": wall_s, "reused": False, "pretrain": pre.record()}


def finetune_entry(cfg: Config, method: str, rank: int | None = None, targets: str | None = None) -> tuple[str, dict]:
    """(cache entry name, what it depends on) of a fine-tune of the pre-trained model."""
    recipe = recipe_of(cfg, method, rank, targets)
    fields_ = {"pretrain": pretrain_entry(cfg), "method": method, "rank": rank, "targets": targets,
               "lr": recipe.lr, "finetune_steps": cfg.finetune_steps, "finetune_batch": cfg.finetune_batch}
    return trained.key(f"finetune-{method}", fields_), fields_


# ---------------------------------------------------------------- trained before the cases, once per session
_FAILED: dict[str, str] = {}  # cache entry -> why its preparation failed in this process


def _raise_if_failed(name: str) -> None:
    if name in _FAILED:
        raise RuntimeError(f"the trained weights {name} could not be prepared before the cases ({_FAILED[name]}); "
                           f"see effbench.prepared in the run file. Fix that and rerun, or delete the folder in "
                           f"${trained.CACHE_ENV} if it is damaged")


def preparation(cfg: Config, device: torch.device, method: str | None = None, rank: int | None = None,
                targets: str | None = None) -> Preparation:
    """The session-level training of what a case loads: the pre-trained model (``method`` None) or one of
    its fine-tunes. Training then happens before the cases, outside their time limits, and every case
    finds it in the cache; a case that trains nothing records ``pretrain_trained_here_s`` 0."""
    if method is None:
        name = pretrain_entry(cfg)

        def run() -> dict:
            pre = pretrained(cfg, device)
            return {"trained_here_s": pre.trained_here_s, "reused": pre.reused, "pretrain_corpus": CORPUS,
                    "weights_cache": str(pre.path) if pre.path else None}
    else:
        name = finetune_entry(cfg, method, rank, targets)[0]

        def run() -> dict:
            path, info = finetuned(cfg, device, method, rank, targets)
            return {"trained_here_s": info["trained_here_s"], "reused": info["reused"], "weights_cache": str(path)}

    return Preparation(name, run, lambda reason: _FAILED.__setitem__(name, reason))


def preparations(cases: list[Case], ctx: Context) -> list[Preparation]:
    """What the fine-tune suite's convergence and merge cases load: the pre-trained model, and the LoRA
    adapter the merge cases apply (the convergence cases' own fine-tune is their timed work)."""
    out = []
    for case in cases:
        p = case.params
        if p.get("group") not in ("convergence", "merge"):
            continue
        cfg = Config.from_params(p)
        out.append(preparation(cfg, ctx.device))
        if p["group"] == "merge" and p.get("variant") != "base":
            out.append(preparation(cfg, ctx.device, "lora", p["rank"], p["targets"]))
    return out


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    """One end-to-end fine-tune (``method`` full | lora | qlora) from the shared pre-trained model.

    QLoRA starts from the same pre-trained weights loaded in NF4, with the same rank, data and steps as LoRA.
    """
    p = case.params
    if p["method"] not in METHODS:
        return Unsupported(f"convergence cases compare {', '.join(METHODS)}, not {p['method']}")
    reason = training.METHODS[p["method"]].support(ctx.device)
    if reason:
        return Unsupported(reason)
    cfg, device = Config.from_params(p), ctx.device
    pre = pretrained(cfg, device)
    recipe = recipe_of(cfg, p["method"], p.get("rank"), p.get("targets"))
    batches = finetune_batches(cfg, pre.tokenizer, device)
    state: dict = {}
    series = {"loss_curve": [], "pretrain_loss": list(pre.loss_curve)}

    spare = fresh_trainer(cfg, pre, recipe, device)  # for the memory probe, leaving the timed run's model untouched
    training.train_step(spare, batches[0])  # AdamW state exists before the probe, as in every later step

    def run():
        """Fine-tune afresh from the pre-trained weights: every call does the same work."""
        state.clear()
        trainer = fresh_trainer(cfg, pre, recipe, device)
        losses = [training.train_step(trainer, b) for b in batches]
        state.update(trainer=trainer, losses=losses)

    def derive(median_s: float) -> dict:
        """Evaluate the model the last timed call trained (evaluation is not part of the timing)."""
        curve = [float(x) for x in state["losses"]]
        series["loss_curve"][:] = curve
        model = state["trainer"].model.eval()
        out = {"initial_loss": curve[0], "final_loss": sum(curve[-cfg.window:]) / len(curve[-cfg.window:]),
               "trainable_params": training.trainable_params(state["trainer"]),
               "total_params": training.total_params(model),
               "weight_bytes": quant.model_bytes(model)}  # NF4 base, adapters and fp32 norms included
        out["trainable_frac"] = out["trainable_params"] / out["total_params"]
        if not all(map(math.isfinite, curve)):
            raise CaseFailed(f"{case.id}: loss became non-finite", out)
        try:
            out.update(evaluate(model, pre.tokenizer, cfg, device))
        except NonFiniteLogits as exc:
            raise CaseFailed(f"{case.id}: {exc}", out) from None
        return out

    metrics = {**pre.record(), "pretrain_final_loss": sum(pre.loss_curve[-cfg.window:]) / cfg.window,
               "pretrain_fact_accuracy": pre.fact_accuracy, "heldout_countries": len(data.HELD_OUT),
               "finetune_tokens": sum(int(b["attention_mask"].sum()) for b in batches),
               "base_precision": training.METHODS[p["method"]].options["base"]}
    return Workload(fn=run, metrics=metrics, derive=derive, time_metric="finetune_s", rounds=1,
                    memory_fn=lambda: training.train_step(spare, batches[0]),
                    teardown=state.clear, series=series)
