"""Writes synthetic-distributed-run.json: a SYNTHETIC test fixture, not a measured run (never copy it to results/).

Records in the distributed-case shape agreed for issue 14 (case: the cost-case params + ``strategy`` and
``world_size``, ``batch`` per rank; id: the cost case id + ``-{strategy}-w{world_size}``; memory: the largest
rank's views). The memory figures are the largest rank's, taken on 2026-12-02 on the 2-core CPU machine
(under load) by a throwaway script that ran llama-7m and llama-34m under ``torchrun --standalone
--nproc-per-node=N`` with gloo: ``DistributedDataParallel`` (defaults) and FSDP2 ``fully_shard`` on every decoder layer then the root,
one warm step, then :func:`bench_lib.harness.memory.measure` around one training step on every rank. Nothing
else in the records was measured. Run ``python3 tests/data/planner-distributed/make_fixture.py`` to rewrite it.
"""

import json
from pathlib import Path

MEASURED = {  # (model, strategy, method, world size, per-rank batch, seq):
    #          largest rank's (cpu_rss_before_bytes, cpu_peak_rss_bytes, torch_cpu_added_peak_bytes)
    ("llama-7m", "ddp", "full", 2, 4, 128): (555413504, 677318656, 93440008),
    ("llama-7m", "ddp", "lora", 2, 4, 128): (524582912, 649465856, 80462088),
    ("llama-7m", "fsdp", "full", 2, 4, 128): (488726528, 673017856, 113120264),
    ("llama-7m", "fsdp", "lora", 2, 4, 128): (513130496, 667095040, 100256904),
    ("llama-7m", "fsdp", "full", 4, 4, 128): (466878464, 679460864, 113120264),
    ("llama-34m", "fsdp", "full", 2, 2, 128): (650842112, 1199063040, 254632980),
    ("llama-34m", "fsdp", "lora", 2, 2, 128): (570679296, 886505472, 171280584),
    # taken after the phase model was settled on the ones above (held out): dim-0 padding over 3 ranks, GPT-2
    ("llama-7m", "fsdp", "full", 3, 2, 64): (473133056, 616628224, 60064760),
    ("gpt2-tiny", "fsdp", "lora", 2, 4, 128): (492785664, 512507904, 13037400),
    ("gpt2-tiny", "fsdp", "full", 2, 4, 128): (442114048, 461623296, 14459704),
}


def record(model: str, strategy: str, method: str, world: int, batch: int, seq: int) -> dict:
    before, peak, added = MEASURED[model, strategy, method, world, batch, seq]
    lora = method == "lora"
    cost_id = f"{model}-lora-r16-attn-b{batch}-s{seq}" if lora else f"{model}-full-b{batch}-s{seq}"
    return {
        "type": "case", "id": f"{cost_id}-{strategy}-w{world}", "suite": "finetune", "outcome": "ok", "reason": None,
        "case": {"group": "distributed", "model": model, "method": method, "rank": 16 if lora else None,
                 "targets": "attn" if lora else None, "checkpointing": False, "attention": "sdpa", "batch": batch,
                 "seq": seq, "strategy": strategy, "world_size": world},
        "metrics": {"world_size": world, "backend": "gloo", "strategy": strategy},
        "memory": {"cpu_rss_before_bytes": before, "cpu_peak_method": "vmhwm", "primary": "cpu_peak_rss_bytes",
                   "cpu_peak_rss_bytes": peak, "torch_cpu_added_peak_bytes": added},
    }


def main() -> None:
    run = {"synthetic_test_fixture": "planner calibration tests only; see make_fixture.py",
           "effbench": {"schema_version": None, "profile": "quick", "device": "cpu",
                        "cases": [record(*key) for key in MEASURED]}}
    out = Path(__file__).with_name("synthetic-distributed-run.json")
    out.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
