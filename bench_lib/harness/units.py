"""Byte quantities typed by people (``--memory-budget 2GiB``) and shown to them (``1.50 GiB``).

Storage is always bytes; binary units (KiB, MiB, GiB, TiB = 2^10..2^40) and decimal ones (KB, MB, GB, TB =
10^3..10^12) are both accepted and kept apart, as the catalog's GiB memory and GB/s bandwidth are.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}


def parse_bytes(text: str | int | float) -> int:
    """'2GiB' -> 2147483648, '24GB' -> 24000000000, '1.5e9' -> 1500000000; a clear error otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"cannot read {text!r} as a size; write e.g. 2GiB, 512MiB, 24GB or a byte count")
        value, unit = float(m.group(1)), m.group(2).lower()
    if value <= 0:
        raise ValueError(f"a size must be positive, not {text!r}")
    return int(round(value * _UNITS[unit]))


def format_bytes(n: float | None) -> str:
    """Bytes in binary units for people: 1536 -> '1.50 KiB'; None -> 'n/a'."""
    if n is None:
        return "n/a"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"
