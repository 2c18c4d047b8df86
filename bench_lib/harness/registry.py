"""Registries: one canonical id per implementation/precision/method, each deciding its own support once.

An entry's ``support(device)`` returns ``None`` when it can run on that device, or a reason string naming
what is missing ("flash-attn not installed", "needs CUDA"). ``effbench env`` lists every registry; suites
turn a reason into an ``unsupported`` outcome. No scattered ``if cuda`` checks elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

SupportFn = Callable[[torch.device], "str | None"]


@dataclass(frozen=True)
class Entry:
    id: str
    description: str
    support: SupportFn
    setup: Callable[..., Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Registry:
    """An ordered mapping of canonical id -> :class:`Entry`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, id: str, description: str, support: SupportFn | None = None, setup=None, **options):
        if id in self._entries:
            raise ValueError(f"{self.kind} {id!r} is registered twice")
        self._entries[id] = Entry(id, description, support or (lambda device: None), setup, options)
        return self._entries[id]

    def __getitem__(self, id: str) -> Entry:
        try:
            return self._entries[id]
        except KeyError:
            known = ", ".join(self._entries)
            raise KeyError(f"unknown {self.kind} {id!r}; known: {known}") from None

    def __contains__(self, id: str) -> bool:
        return id in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def ids(self) -> list[str]:
        return list(self._entries)

    def support_table(self, device: torch.device) -> list[tuple[str, str | None]]:
        """[(id, reason or None)] for ``effbench env``."""
        return [(e.id, e.support(device)) for e in self]


# Every suite module registers its registry here at import, so `effbench env` can list them all.
ALL: dict[str, Registry] = {}


def new(kind: str) -> Registry:
    reg = Registry(kind)
    ALL[kind] = reg
    return reg


def needs_cuda(device: torch.device) -> str | None:
    return None if device.type == "cuda" else f"needs a CUDA GPU (this run is on {device.type})"


def needs_module(module: str, extra: str) -> str | None:
    """Reason when ``module`` cannot be imported; names the extra that installs it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{module} not installed (pip install 'effbench[{extra}]')"
    return None
