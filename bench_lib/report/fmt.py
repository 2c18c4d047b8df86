"""Numbers -> short text for tables, claims and axis ticks. Storage is SI (bytes, seconds); binary units
(KiB/MiB/GiB, powers of 1024) are used only here, and decimal GB only where a claim is stated in GB."""

from __future__ import annotations

import math

_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def binary_bytes(value, digits: int = 3) -> str:
    """1536 -> '1.5 KiB'; 3 * 2**30 -> '3 GiB' (``digits`` significant figures)."""
    if _missing(value):
        return "–"
    value = float(value)
    unit = 0
    while abs(value) >= 1024 and unit < len(_BINARY) - 1:
        value /= 1024
        unit += 1
    return f"{value:.{digits}g} {_BINARY[unit]}"


def decimal_gb(value) -> str:
    """Bytes in decimal GB (10^9), the unit the tutorial's claims use: 28e9 -> '28.0 GB'."""
    return "–" if _missing(value) else f"{float(value) / 1e9:.1f} GB"


def seconds(value) -> str:
    """0.00123 -> '1.23 ms'; 2.5 -> '2.5 s'."""
    if _missing(value):
        return "–"
    value = float(value)
    if value == 0:
        return "0 s"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(value) >= scale or unit == "ns":
            return f"{value / scale:.3g} {unit}"
    return f"{value} s"


def number(value, digits: int = 3) -> str:
    """General number with ``digits`` significant figures; integers with thousands separators."""
    if _missing(value):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"  # 1234.5 -> '1,234' rather than '1.23e+03'
    return f"{value:.{digits}g}"


def ratio(value) -> str:
    return "–" if _missing(value) else f"{float(value):.2f}×"


def percent(value) -> str:
    return "–" if _missing(value) else f"{100 * float(value):.1f}%"


def by_name(column: str, value) -> str:
    """Format by the unit in a metric's name: ``*_bytes`` binary, ``*_s`` seconds, ``*_frac`` percent."""
    if column.endswith("_bytes_per_s"):
        return binary_bytes(value) + "/s"
    if column.endswith("_bytes") or column.endswith("_bytes_per_seq"):
        return binary_bytes(value)
    if (column.endswith("_s") and not column.endswith("_per_s")) or column.endswith("_s_iqr"):
        return seconds(value)
    if column.endswith("_frac") or "frac_of" in column:
        return percent(value)
    return number(value)
