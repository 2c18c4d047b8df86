"""``torch.compile`` cases: compile time apart, recompilations in the timed rounds counted (issue 17).

The counter read is ``torch._dynamo.utils.counters``: in torch 2.13 every frame compilation, the first one
and each recompilation after a guard failed, adds one to ``counters["frames"]["total"]`` and a graph to
``counters["stats"]["unique_graphs"]`` (there is no ``counters["recompiles"]`` key); graph breaks are
counted under ``counters["graph_break"]`` (one key per reason). The counters are process-wide, so the
harness reads them before and after a window and keeps the difference.
"""

from __future__ import annotations


def compilations() -> int:
    """Frame compilations so far in this process (first compiles and recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"])


def graph_breaks() -> int:
    """Graph breaks so far in this process (summed over reasons)."""
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))
