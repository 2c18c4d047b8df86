"""Sharded sweeps: ``torchrun --nproc-per-node=N -m bench_lib run ...`` splits one sweep's cases over N ranks.

Each rank runs its share under its own supervisor (crash-safe and resumable like any ``effbench run``) into
``X.rank<R>.json`` (journal ``X.rank<R>.jsonl``); rank 0 then gathers every rank's run over torch.distributed
(gloo, so nodes need not share a filesystem) and writes ``X.json``: one run file holding every case exactly once.

- Split: round-robin over the sorted ``(suite, id)`` keys of the collected cases, so the split is the same on
  every rank and on every resume. Calibration cases run on every rank (each rank's device needs its own
  ceilings); the merged file keeps rank 0's.
- Pinning: each rank sees one GPU (``CUDA_VISIBLE_DEVICES`` = LOCAL_RANK unless already set); on CPU, the cores
  are split: ``OMP_NUM_THREADS`` = cores // LOCAL_WORLD_SIZE.
- ``EFFBENCH_SHARD=R/N`` is set for the rank's cases, so a case that would itself launch torchrun can see it is
  inside a sharded sweep (it must report itself unsupported there rather than nest torchrun).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

CALIBRATION = "calibration"
ENV_SHARD = "EFFBENCH_SHARD"


class ShardError(ValueError):
    """A merge that would not hold every case exactly once."""


def parse(text: str) -> tuple[int, int]:
    """``"R/N"`` -> (rank, world size), 0 <= R < N."""
    try:
        r, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--effbench-shard {text!r}: expected R/N, e.g. 0/2") from None
    if n < 1 or not 0 <= r < n:
        raise ValueError(f"--effbench-shard {text!r}: need 0 <= R < N")
    return r, n


def owner(keys: Iterable[tuple[str, str]], n: int) -> dict[tuple[str, str], int | None]:
    """Which rank runs each case: round-robin over the sorted keys; None (every rank) for calibration."""
    out: dict[tuple[str, str], int | None] = {}
    i = 0
    for key in sorted(set(keys)):
        if key[0] == CALIBRATION:
            out[key] = None
        else:
            out[key] = i % n
            i += 1
    return out


def selected(keys: Iterable[tuple[str, str]], rank: int, n: int) -> set[tuple[str, str]]:
    return {k for k, r in owner(keys, n).items() if r is None or r == rank}


def nested_reason(case, shard_opt: str) -> str | None:
    """Why a case cannot run inside a sharded sweep, or None: a distributed fine-tune case launches its own
    torchrun over several devices, while this rank holds one device (and nesting torchrun shares no rendezvous)."""
    if parse(shard_opt)[1] < 2:
        return None
    p = case.params or {}
    if p.get("group") == "distributed" or "world_size" in p:
        return (f"a distributed case launches its own torchrun over several devices; inside a sharded sweep "
                f"(rank {shard_opt}) each rank holds one device: run it in a sweep without torchrun")
    return None


def torchrun() -> dict[str, int] | None:
    """The torchrun rank variables, or None when not launched by torchrun (or with one process)."""
    try:
        info = {k.lower(): int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    except (KeyError, ValueError):
        return None
    return info if info["world_size"] > 1 else None


def rank_output(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def pin_env(info: dict[str, int], device: str, environ: dict[str, str], cores: int | None = None) -> dict[str, str]:
    """The variables this rank's children get: one GPU by LOCAL_RANK, or its share of the CPU cores."""
    out = {ENV_SHARD: f"{info['rank']}/{info['world_size']}"}
    if device != "cpu" and "CUDA_VISIBLE_DEVICES" not in environ:
        out["CUDA_VISIBLE_DEVICES"] = str(info["local_rank"])
    if device == "cpu":
        cores = cores or os.cpu_count() or 1
        out["OMP_NUM_THREADS"] = str(max(1, cores // max(1, info["local_world_size"])))
    return out


def merge(runs: list[dict[str, Any]], ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One run from every rank's run (index = rank): every case once, else :class:`ShardError` saying what to do."""
    n = len(runs)
    keys = [(c["suite"], c["id"]) for run in runs for c in run["effbench"]["cases"]]
    own = owner(keys, n)
    problems = []
    cases, benchmarks, prepared = [], [], []
    for rank, run in enumerate(runs):
        eb = run["effbench"]
        have = {(c["suite"], c["id"]) for c in eb["cases"]}
        for key, r in own.items():
            if r == rank and key not in have:
                problems.append(f"{key[0]}::{key[1]} missing from rank {rank}")
        seen = set()
        for c in eb["cases"]:
            key = (c["suite"], c["id"])
            if key in seen:
                problems.append(f"{key[0]}::{key[1]} twice in rank {rank}")
            seen.add(key)
            r = own[key]
            if r is None and rank != 0:
                continue  # calibration: rank 0's record stands for the run
            if r is not None and r != rank:
                problems.append(f"{key[0]}::{key[1]} ran on rank {rank} but belongs to rank {r}")
                continue
            cases.append(dict(c, shard_rank=rank))
        names = {f"{c['suite']}::{c['id']}" for c in cases if c["shard_rank"] == rank}
        benchmarks += [b for b in run.get("benchmarks", []) if _bench_key(b) in names or _bench_key(b) is None]
        if rank == 0:
            prepared = eb.get("prepared", [])
    if problems:
        raise ShardError("the ranks' runs do not hold every case exactly once: " + "; ".join(problems[:10])
                         + " — continue with the same torchrun command and --resume X.json (each rank resumes its "
                         "own X.rank<R>.jsonl)")
    first = runs[0]
    eb = dict(first["effbench"], cases=cases,
              finished_at=max((r["effbench"].get("finished_at") or "") for r in runs) or None,
              shard={"world_size": n, "split": "round-robin over sorted (suite, id); calibration on every rank, rank 0's kept",
                     "ranks": ranks or [{"rank": i, "machine_info": r.get("machine_info", {})} for i, r in enumerate(runs)]})
    if prepared:
        eb["prepared"] = prepared
    return dict(first, benchmarks=benchmarks, effbench=eb)


def _bench_key(entry: dict) -> str | None:
    info = entry.get("extra_info") or {}
    if "suite" in info and "id" in info:
        return f"{info['suite']}::{info['id']}"
    return None


def rank_device() -> dict[str, Any]:
    """The GPU this rank measured on (it sees only its own: CUDA_VISIBLE_DEVICES), or the CPU."""
    import torch

    if not torch.cuda.is_available():
        return {"type": "cpu", "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    p = torch.cuda.get_device_properties(0)
    return {"type": "cuda", "name": p.name, "uuid": str(getattr(p, "uuid", "")) or None,
            "pci_bus_id": getattr(p, "pci_bus_id", None), "pci_device_id": getattr(p, "pci_device_id", None),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def gather_to_rank0(obj: Any, info: dict[str, int]) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (others get None), over gloo using torchrun's rendezvous variables."""
    import torch.distributed as dist

    timeout = timedelta(seconds=float(os.environ.get("EFFBENCH_SHARD_TIMEOUT_S", 7 * 24 * 3600)))
    dist.init_process_group("gloo", timeout=timeout)
    try:
        out = [None] * info["world_size"] if info["rank"] == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out
    finally:
        dist.destroy_process_group()


def run_sharded(args, info: dict[str, int]) -> tuple[int, Path | None]:
    """``effbench run`` on one torchrun rank: its share into X.rank<R>.json, then rank 0 writes the merged X.json."""
    from bench_lib.harness import journal, resume, supervisor

    rank, n = info["rank"], info["world_size"]
    target = args.resume or args.output
    if not target:
        print("effbench run: under torchrun, pass --output X.json (every rank must name the same run)")
        return 2, None
    output, _ = resume.run_file(target, "--resume" if args.resume else "--output")
    mine = rank_output(output, rank)
    if args.resume and not journal.journal_path(mine).exists():
        args.resume, args.output = None, str(mine)  # this rank had not started: start its share fresh
    elif args.resume:
        args.resume = str(mine)
    else:
        args.output = str(mine)
    device = args.device
    if device == "auto":  # (also on --resume, whose journal names the device: pinning needs only cpu vs a GPU)
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ.update(pin_env(info, device, dict(os.environ)))
    args.pytest_args = list(args.pytest_args or []) + [f"--effbench-shard={rank}/{n}"]
    rc, path = supervisor.run_from_args(args)
    if rc == 130:  # interrupted (torchrun stops every rank when one dies): no gather; --resume continues
        return rc, None
    run = json.loads(path.read_text()) if path is not None else None
    me = {"rank": rank, "local_rank": info["local_rank"], "node_rank": int(os.environ.get("GROUP_RANK", 0)),
          "rc": rc, "device": rank_device(), "run": run}
    gathered = gather_to_rank0(me, info)
    if rank != 0:
        return rc, None
    missing = [g["rank"] for g in gathered if g["run"] is None]
    if missing:
        print(f"effbench run: ranks {missing} left no run file; continue with the same torchrun command and "
              f"--resume {output}")
        return 1, None
    ranks = [{k: g[k] for k in ("rank", "local_rank", "node_rank", "rc", "device")} | {"machine_info": g["run"].get("machine_info", {})}
             for g in gathered]
    try:
        merged = merge([g["run"] for g in gathered], ranks)
    except ShardError as exc:
        print(f"effbench run: {exc}")
        return 1, None
    journal.write_atomic(output, json.dumps(merged, indent=1, allow_nan=True, default=str))
    supervisor.print_summary(merged["effbench"]["cases"])
    print(f"run: {output} (merged from {n} ranks: {', '.join(str(rank_output(output, r)) for r in range(n))})")
    return max(g["rc"] for g in gathered), output
