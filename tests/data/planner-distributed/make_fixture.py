"""Writes synthetic-distributed-run.json: a SYNTHETIC test fixture, not a measured run (never copy it to results/).

Records in the distributed-case shape agreed for issue 14 (case: the cost-case params + ``strategy`` and
``world_size``, ``batch`` per rank; id: the cost case id + ``-{strategy}-w{world_size}``; memory: the largest
rank's views). The memory figures are the largest rank's, taken on 2026-12-02 on the 2-core CPU machine
(under load) by a throwaway script that ran llama-7m under ``torchrun --standalone --nproc-per-node=2`` with
gloo: ``DistributedDataParallel`` (defaults) and FSDP2 ``fully_shard`` on every decoder layer then the root,
one warm step, then :func:`bench_lib.harness.memory.measure` around one training step on every rank. Nothing
else in the records was measured. Run ``python3 tests/data/planner-distributed/make_fixture.py`` to rewrite it.
"""

import json
from pathlib import Path

MEASURED = {  # (strategy, method): (cpu_rss_before_bytes, cpu_peak_rss_bytes, torch_cpu_added_peak_bytes)
    ("ddp", "full"): (555413504, 677318656, 93440008),
    ("ddp", "lora"): (524582912, 649465856, 80462088),
    ("fsdp", "full"): (488726528, 673017856, 113120264),
    ("fsdp", "lora"): (513130496, 667095040, 100256904),
}


def record(strategy: str, method: str, world: int = 2) -> dict:
    before, peak, added = MEASURED[strategy, method]
    lora = method == "lora"
    cost_id = "llama-7m-lora-r16-attn-b4-s128" if lora else "llama-7m-full-b4-s128"
    return {
        "type": "case", "id": f"{cost_id}-{strategy}-w{world}", "suite": "finetune", "outcome": "ok", "reason": None,
        "case": {"group": "distributed", "model": "llama-7m", "method": method, "rank": 16 if lora else None,
                 "targets": "attn" if lora else None, "checkpointing": False, "attention": "sdpa", "batch": 4,
                 "seq": 128, "strategy": strategy, "world_size": world},
        "metrics": {"world_size": world, "backend": "gloo", "strategy": strategy},
        "memory": {"cpu_rss_before_bytes": before, "cpu_peak_method": "vmhwm", "primary": "cpu_peak_rss_bytes",
                   "cpu_peak_rss_bytes": peak, "torch_cpu_added_peak_bytes": added},
    }


def main() -> None:
    run = {"synthetic_test_fixture": "planner calibration tests only; see make_fixture.py",
           "effbench": {"schema_version": None, "profile": "quick", "device": "cpu",
                        "cases": [record(s, m) for s, m in MEASURED]}}
    out = Path(__file__).with_name("synthetic-distributed-run.json")
    out.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
