"""Case order for a run that a time budget may cut: every suite gets some cases before any gets all.

A pytest plugin loaded on demand (``effbench run ... -- -p bench_lib.harness.case_order``, as
``scripts/gpu_check.sh`` does). Plain pytest runs ``benchmarks/`` file by file, so a budget that ends the run
halfway leaves the last suites with nothing. Here the cases are dealt round-robin over the benchmark
functions (attention, precision, fine-tune step, convergence, ...), each function's cases keeping their grid
order; calibration stays first, since later cases report fractions of its measured ceilings.

The planned order is written once beside the journal (``RUN.plan.json``), so that a run cut from outside can
still name the cases it never started (:func:`bench_lib.harness.journal.close_cut_run`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench_lib.harness.workload import Case

CALIBRATION = "calibration"


def plan_path(journal: str | os.PathLike) -> Path:
    """``RUN.plan.json`` beside the journal ``RUN.jsonl``."""
    return Path(journal).with_suffix(".plan.json")


def interleave(items: list, group_of, first_of) -> list:
    """``items`` dealt round-robin over their groups (in order of first appearance), each group's own order
    kept; items with ``first_of(item)`` true come before all others, in their order."""
    first = [it for it in items if first_of(it)]
    groups: dict = {}
    for it in items:
        if not first_of(it):
            groups.setdefault(group_of(it), []).append(it)
    dealt = []
    for rank in range(max((len(g) for g in groups.values()), default=0)):
        dealt += [g[rank] for g in groups.values() if rank < len(g)]
    return first + dealt


def _case(item) -> Case | None:
    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    return case if isinstance(case, Case) else None


def _function(item) -> str:
    return item.nodeid.split("[", 1)[0]  # benchmarks/test_x.py::test_y: one benchmark function


@pytest.hookimpl(trylast=True)  # after effbench's own plugin has dropped the cases a resumed run already holds
def pytest_collection_modifyitems(session, config, items):
    items[:] = interleave(items, _function, lambda it: (_case(it) is not None and _case(it).suite == CALIBRATION))
    journal = config.getoption("effbench_journal", default=None)
    if not journal or plan_path(journal).exists():  # a resumed child sees only the rest: keep the first plan
        return
    planned = [{"suite": c.suite, "id": c.id, "nodeid": it.nodeid, "case": dict(c.params)}
               for it in items if (c := _case(it)) is not None]
    from bench_lib.harness.journal import write_atomic

    plan_path(journal).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(plan_path(journal), json.dumps({"cases": planned}, indent=1, default=str))
