"""Distributed fine-tune runs (issue 14, part): a torchrun child per run, one JSON per rank, gathered here.

:func:`launch` starts ``python -m torch.distributed.run --standalone --nproc-per-node=WS`` running this
module's worker (:func:`worker_main`) in its own process group, waits at most ``timeout_s`` and kills the whole
group past it, so a hung rank ends the run as ``timeout``, never a hang. torchrun's failure propagation ends
the other ranks when one exits with an error (``crashed``); a rank that runs out of memory writes ``oom`` in
its JSON before it exits non-zero, and the run is ``oom``.

The worker: the method's trainer (:func:`bench_lib.suites.training.setup`), wrapped in DDP
(``DistributedDataParallel``) or FSDP2 (``fully_shard`` on every decoder layer, then the root; the optimizer is
rebuilt on the sharded parameters), warm steps, then timed steps: every rank synchronizes (``cuda.synchronize``
on CUDA) and meets at a barrier before the clock is read at both ends, so a step's time is the slowest rank's.
Communication (DDP only): each timed step is paired with the same step under ``no_sync()`` (no gradient
all-reduce, no optimizer step difference: the step still runs), in alternation in the same run; the
per-pair difference's median is ``comm_s``. Memory per rank: VmHWM/RSS before and the peak around one
untimed step (:func:`bench_lib.harness.memory.measure`), torch's CPU profiler view on CPU, allocator on CUDA.

Test-only switch: ``EFFBENCH_DIST_FAULT=raise:R|hang:R|oom:R`` makes rank R raise, sleep forever, or raise
``torch.OutOfMemoryError`` after setup. Never set it outside tests.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAULT_ENV = "EFFBENCH_DIST_FAULT"  # test-only: see the module docstring


def _fault(rank: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, who = spec.partition(":")
    if int(who or 0) != rank:
        return
    import torch

    if kind == "raise":
        raise RuntimeError(f"test fault: rank {rank} raises")
    if kind == "hang":
        while True:
            time.sleep(1)
    if kind == "oom":
        raise torch.OutOfMemoryError(f"test fault: rank {rank} out of memory")


def _sync_barrier(torch, dist, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()


def worker_main(spec: dict) -> None:
    """One rank: build, wrap, warm, time, measure; write ``rank{R}.json`` into ``spec["out"]``."""
    import torch
    import torch.distributed as dist

    from bench_lib.harness import memory
    from bench_lib.suites import models, training

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if spec.get("threads_per_rank"):  # CPU: every rank of every world size computes on the same thread count
        torch.set_num_threads(spec["threads_per_rank"])
    out = Path(spec["out"]) / f"rank{rank}.json"
    cuda = spec.get("device", "cpu") == "cuda"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    phase = Path(spec["out"]) / f"rank{rank}.phase"  # how far this rank got: a timeout's reason names it
    phase.write_text("process group", encoding="utf-8")
    dist.init_process_group("nccl" if cuda else "gloo")
    res: dict = {"rank": rank, "world_size": world, "backend": dist.get_backend(), "strategy": spec["strategy"],
                 "threads": torch.get_num_threads()}
    try:
        if cuda:
            torch.cuda.set_device(device)
        recipe = training.Recipe(spec["method"], spec.get("rank"), spec.get("targets"), False, "sdpa")
        preset = models.preset(spec["model"])
        trainer = training.setup(recipe, preset, device, seed=0)
        if world > 1 or spec["strategy"] == "fsdp":
            if spec["strategy"] == "ddp":
                from torch.nn.parallel import DistributedDataParallel

                trainer.model = DistributedDataParallel(trainer.model)
            else:
                from torch.distributed.fsdp import fully_shard

                for m in trainer.model.modules():
                    if type(m).__name__.endswith("DecoderLayer") or type(m).__name__ == "GPT2Block":
                        fully_shard(m)
                fully_shard(trainer.model)
                trainer.params = [p for p in trainer.model.parameters() if p.requires_grad]
                trainer.optimizer = torch.optim.AdamW(trainer.params, lr=recipe.lr)
        batch = training.random_batch(preset.vocab, spec["batch"], spec["seq"], device, seed=rank)
        phase.write_text("steps", encoding="utf-8")
        _fault(rank)
        for _ in range(spec.get("warmup", 1)):
            training.train_step(trainer, batch)
        ddp = spec["strategy"] == "ddp" and world > 1
        samples, nosync = [], []
        for _ in range(spec.get("steps", 3)):
            _sync_barrier(torch, dist, device)
            t0 = time.perf_counter()
            training.train_step(trainer, batch)
            _sync_barrier(torch, dist, device)
            samples.append(time.perf_counter() - t0)
            if ddp:  # the same step without the gradient all-reduce
                _sync_barrier(torch, dist, device)
                t0 = time.perf_counter()
                with trainer.model.no_sync():
                    training.train_step(trainer, batch)
                _sync_barrier(torch, dist, device)
                nosync.append(time.perf_counter() - t0)
        res["step_samples_s"] = samples
        if ddp:
            res["nosync_samples_s"] = nosync
            res["comm_s"] = statistics.median(a - b for a, b in zip(samples, nosync, strict=True))
            res["comm_method"] = "step with all-reduce minus the paired no_sync() step, median of pairs"
        phase.write_text("memory probe", encoding="utf-8")
        probe = memory.measure(lambda: training.train_step(trainer, batch), device)
        res["memory"] = probe.result
        res["outcome"] = "ok"
    except torch.OutOfMemoryError as e:
        res.update(outcome="oom", reason=str(e))
        out.write_text(json.dumps(res), encoding="utf-8")
        raise
    out.write_text(json.dumps(res), encoding="utf-8")
    dist.destroy_process_group()


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every descendant's: torchrun puts each rank in a new session, so a
    kill of the launcher's group alone leaves a hung rank alive, holding the log pipe open."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)  # collected before any dies (orphans lose their parent)
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            if os.getpgid(p.pid) != os.getpgrp():
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)
            else:
                p.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    psutil.wait_procs(procs, timeout=10)


def launch(spec: dict, world: int, timeout_s: float) -> dict:
    """Run ``spec`` over ``world`` ranks; returns {"outcome", "reason", "ranks": [per-rank dicts], "wall_s"}."""
    with tempfile.TemporaryDirectory(prefix="effbench-dist-") as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               "-m", __name__, json.dumps({**spec, "out": tmp})]  # this module, as each rank's entry point
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout_s)
        except BaseException as exc:  # our timeout, or the case's limit (SIGALRM) firing while we wait
            _kill_tree(proc.pid)  # the launcher and every rank (torchrun starts each rank in its own session)
            proc.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            reached = {int(p.stem[4:]): p.read_text(encoding="utf-8") for p in Path(tmp).glob("rank*.phase")}
            where = ", ".join(f"rank {r} in {reached[r]}" if r in reached else f"rank {r} not started"
                              for r in range(world))
            return {"outcome": "timeout", "wall_s": time.perf_counter() - t0,
                    "reason": f"world size {world}: no result within {timeout_s:.0f} s ({where})", "ranks": []}
        wall = time.perf_counter() - t0
        ranks = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))]
    if any(r.get("outcome") == "oom" for r in ranks):
        return {"outcome": "oom", "reason": next(r["reason"] for r in ranks if r.get("outcome") == "oom"),
                "ranks": ranks, "wall_s": wall}
    if proc.returncode != 0 or len(ranks) != world:
        tail = log.decode(errors="replace").strip().splitlines()[-3:]
        return {"outcome": "crashed", "reason": f"world size {world}: exit {proc.returncode}: " + " | ".join(tail),
                "ranks": ranks, "wall_s": wall}
    return {"outcome": "ok", "reason": None, "ranks": ranks, "wall_s": wall}


def summarize(ws1: dict, wsn: dict, batch: int, seq: int) -> dict:
    """Case metrics from the ws=1 and ws=N runs of the same case: slowest rank's steps, weak scaling."""
    def step(run):  # per timed step, the slowest rank's (the barrier makes them nearly equal)
        return [max(s) for s in zip(*(r["step_samples_s"] for r in run["ranks"]), strict=True)]

    world = len(wsn["ranks"])
    s1, sn = statistics.median(step(ws1)), statistics.median(step(wsn))
    peak = max(wsn["ranks"], key=lambda r: r["memory"].get("cpu_peak_rss_bytes") or
               r["memory"].get("torch_peak_allocated_bytes") or 0)
    out = {"world_size": world, "backend": wsn["ranks"][0]["backend"], "strategy": wsn["ranks"][0]["strategy"],
           "step_s": sn, "step_samples_s": step(wsn), "ws1_step_s": s1, "ws1_step_samples_s": step(ws1),
           "tokens_per_s": world * batch * seq / sn, "tokens_per_s_per_rank": batch * seq / sn,
           "scaling_efficiency": s1 / sn,  # weak scaling: same per-rank batch, ideal 1.0
           "memory_per_rank": [r["memory"] for r in wsn["ranks"]], "memory": peak["memory"],
           "ws1_memory": ws1["ranks"][0]["memory"]}
    if "comm_s" in wsn["ranks"][0]:
        out["comm_s"] = max(r["comm_s"] for r in wsn["ranks"])
        out["comm_method"] = wsn["ranks"][0]["comm_method"]
    if "threads" in wsn["ranks"][0]:
        out["threads_per_rank"] = wsn["ranks"][0]["threads"]
    return out


def build(case, ctx):
    """The workload of a ``distributed`` fine-tune case: ws=1 and ws=N launched by ``check`` (same launcher)."""
    import torch

    from bench_lib.harness.runner import CaseTimeout
    from bench_lib.harness.workload import CaseFailed, Unsupported, Workload
    from bench_lib.suites import training

    p = case.params
    reason = training.METHODS[p["method"]].support(ctx.device)
    if reason:
        return Unsupported(reason)
    if p["method"] == "qlora" and p["strategy"] == "fsdp":
        return Unsupported("FSDP2 fully_shard of bitsandbytes 4-bit (Params4bit) weights is not supported by this "
                           "stack; QLoRA runs under DDP only")
    world = p["world_size"]
    if ctx.device.type == "cuda" and world > torch.cuda.device_count():
        return Unsupported(f"world size {world}: {torch.cuda.device_count()} GPU(s) visible")
    spec = {k: p.get(k) for k in ("model", "method", "rank", "targets", "strategy", "batch", "seq", "steps")}
    spec["device"] = ctx.device.type
    if ctx.device.type == "cpu":
        # weak scaling on CPU: a rank is cores/world threads at the largest world, the same at world size 1
        # (torchrun would give one thread per rank at N > 1 and every core at 1, so N ranks would look faster)
        spec["threads_per_rank"] = max(1, len(os.sched_getaffinity(0)) // world)
    # each of the two launches (world size 1, then N) may take a little under half the case's limit, so a hung
    # group is killed by its launch and reported with how far each rank got, before the case's own limit fires
    limit = p.get("launch_timeout_s") or 0.45 * ctx.profile.case_timeout_s
    got: dict = {}

    def check() -> dict:
        runs = [launch(spec, 1, limit)] + ([launch(spec, world, limit)] if world > 1 else [])
        for run in runs:
            if run["outcome"] == "timeout":
                raise CaseTimeout(run["reason"])
            if run["outcome"] == "oom":
                raise torch.OutOfMemoryError(run["reason"])
            if run["outcome"] != "ok":
                raise CaseFailed(f"rank crashed: {run['reason']}")
        got.update(summarize(runs[0], runs[-1], p["batch"], p["seq"]))
        got["launch_wall_s"] = [r["wall_s"] for r in runs]
        # metrics are single values: lists go to the record's series, each rank's memory views to rank{R}_*
        for name in ("ws1_step_samples_s", "launch_wall_s"):
            series[name] = list(got[name])
        out = {f"rank{i}_{k}": v for i, views in enumerate(got["memory_per_rank"]) for k, v in views.items()
               if isinstance(v, int | float)}
        # the same case's world-size-1 run: the reference the per-rank memory is compared with (DDP: flat)
        out.update({f"ws1_{k}": v for k, v in got["ws1_memory"].items() if isinstance(v, int | float)})
        out.update({k: v for k, v in got.items() if k not in ("step_s", "step_samples_s", "memory", "memory_per_rank",
                                                              "ws1_memory", "ws1_step_samples_s", "launch_wall_s")})
        return out

    def external() -> dict:
        return {"samples_s": got["step_samples_s"], "memory": got["memory"]}

    series: dict = {}
    return Workload(fn=lambda: None, check=check, external=external, time_metric="step_s", series=series)


if __name__ == "__main__":
    worker_main(json.loads(sys.argv[1]))
