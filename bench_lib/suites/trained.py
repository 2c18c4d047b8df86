"""The weights effbench trains itself, cached on disk and reused by later runs.

Quality needs weights that encode learned behaviour (DESIGN.md, "Quality means trained weights"). The
convergence pipeline trains them (:mod:`bench_lib.suites.convergence`); this module only stores them:
one folder per entry under :func:`cache_root`, named by a hash of everything the weights depend on
(the training config, seed and steps, the corpus and this module's format version), so a changed config
never reuses stale weights and an unchanged one is never trained twice.

An entry folder holds ``model.safetensors`` + ``config.json`` (a transformers checkpoint that
``from_pretrained`` loads with any ``BitsAndBytesConfig``), or a peft adapter, plus ``tokenizer.json`` and
``effbench.json`` (what was trained, on which device, how long it took, its loss curve). It is written in
a temporary sibling folder and renamed into place, so a run killed mid-write leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "EFFBENCH_CACHE"
FORMAT_VERSION = 1  # bump when what an entry holds changes: old entries are then ignored, never misread
META_FILE = "effbench.json"


def cache_root() -> Path:
    """``$EFFBENCH_CACHE``, else the user cache dir (``$XDG_CACHE_HOME/effbench``, ``~/.cache/effbench``).

    Never the checkout: trained weights are machine state, not source.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "effbench"


def key(kind: str, fields: dict) -> str:
    """``kind-<12 hex>``: the content address of an entry whose weights depend exactly on ``fields``."""
    blob = json.dumps({"kind": kind, "format": FORMAT_VERSION, **fields}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def entry(name: str) -> Path | None:
    """The folder of a complete entry, or None when it is absent (or was never finished)."""
    path = cache_root() / name
    return path if (path / META_FILE).is_file() else None


def meta(path: Path) -> dict:
    return json.loads((path / META_FILE).read_text(encoding="utf-8"))


def store(name: str, write: Callable[[Path], None], info: dict) -> Path:
    """Write an entry atomically: ``write(folder)`` fills a temporary folder, then it is renamed to ``name``.

    When another process finished the same entry first, its copy is kept and ours is dropped.
    """
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    except OSError as exc:
        raise RuntimeError(f"cannot write the trained-weights cache {root}: {exc}. Set {CACHE_ENV} to a "
                           "writable folder.") from None
    try:
        write(tmp)
        (tmp / META_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **info}, indent=1, default=str),
                                     encoding="utf-8")
        final = root / name
        try:
            tmp.rename(final)
        except OSError:  # a concurrent run stored it first: same key, same content
            if entry(name) is None:
                raise
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
