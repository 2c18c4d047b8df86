"""Hardware catalog: what a GPU could do (peak FLOP/s, bandwidth, memory, power) and what an hour of it costs.

The catalog is data (``bench_lib/data/gpus.json``; its ``conventions`` list says what every field means). This
module loads and validates it, finds the entry for a ``torch.cuda.get_device_name()`` string, and turns measured
results into fractions of peak and dollars per million tokens. Everything here is a pure function of its
arguments; the report calls these, nothing here reads a run file.

Price overrides: rental prices drift, so users give their own in a JSON file (``--prices FILE`` or the
``EFFBENCH_PRICES`` environment variable)::

    {"prices": {
        "h100-sxm":              {"price_per_hour_usd": 2.10, "price_date": "2025-09-01", "price_source": "our contract"},
        "NVIDIA A100-SXM4-80GB": 1.20
    }}

Keys are catalog ids or device names; a value is a number (USD per GPU-hour) or an object with
``price_per_hour_usd`` and optional ``price_date`` / ``price_source`` (default: "user price file <path>").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

CATALOG_SCHEMA_VERSION = 1
PRICES_ENV = "EFFBENCH_PRICES"
DTYPES = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
FIGURE_GROUPS = ("compute", "memory", "power", "price", "fp8")
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
# FP8 cases record torch's dtype names; both formats run at the same tensor-core rate.
_DTYPE_ALIASES.update({"float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "e4m3": "fp8", "e5m2": "fp8"})


class CatalogError(ValueError):
    """The catalog or a price file is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class GpuSpec:
    """One catalog entry. Units are in the field names; ``peak_flop_per_s[dtype]`` is None where unsupported."""

    id: str
    name: str
    vendor: str
    name_patterns: tuple[str, ...]
    device_names: tuple[str, ...]
    memory_bytes: int
    memory_bandwidth_bytes_per_s: float
    peak_flop_per_s: dict[str, float | None]
    tdp_w: float
    price_per_hour_usd: float | None
    price_date: str | None
    price_source: str | None
    source: str
    verified: dict[str, bool]
    notes: str = ""
    compute_capability: str | None = None  # CUDA "major.minor" (e.g. "9.0"); None for non-CUDA parts
    _regexes: tuple[re.Pattern, ...] = field(default=(), repr=False, compare=False)

    def matches(self, device_name: str) -> bool:
        """True when the whole (whitespace-normalized) device name matches one of the entry's patterns."""
        name = " ".join(device_name.split())
        return any(rx.fullmatch(name) for rx in self._regexes)


# ---------------------------------------------------------------- loading and validation
def _require(entry_id: str, raw: dict, key: str, kinds: type | tuple, allow_none: bool = False):
    if key not in raw:
        raise CatalogError(f"GPU catalog entry {entry_id!r}: missing field {key!r}")
    value = raw[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise CatalogError(f"GPU catalog entry {entry_id!r}: field {key!r} has the wrong type ({value!r})")
    return value


def _positive(entry_id: str, key: str, value):
    if value is not None and value <= 0:
        raise CatalogError(f"GPU catalog entry {entry_id!r}: field {key!r} must be positive, not {value!r}")
    return value


def _parse_entry(raw: dict) -> GpuSpec:
    entry_id = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(entry_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", entry_id):
        raise CatalogError(f"GPU catalog entry {raw!r:.80}: 'id' must be a lowercase slug")
    num = (int, float)
    patterns = tuple(_require(entry_id, raw, "name_patterns", list))
    try:
        regexes = tuple(re.compile(p, re.IGNORECASE) for p in patterns)
    except (re.error, TypeError) as exc:
        raise CatalogError(f"GPU catalog entry {entry_id!r}: bad name pattern ({exc})") from None
    peaks = _require(entry_id, raw, "peak_flop_per_s", dict)
    if set(peaks) != set(DTYPES):
        raise CatalogError(f"GPU catalog entry {entry_id!r}: peak_flop_per_s needs exactly {', '.join(DTYPES)}")
    for dtype, value in peaks.items():
        _require(entry_id, peaks, dtype, num, allow_none=True)
        _positive(entry_id, f"peak_flop_per_s.{dtype}", value)
    verified = _require(entry_id, raw, "verified", dict)
    if set(verified) != set(FIGURE_GROUPS) or not all(isinstance(v, bool) for v in verified.values()):
        raise CatalogError(f"GPU catalog entry {entry_id!r}: verified needs booleans for {', '.join(FIGURE_GROUPS)}")
    price = _positive(entry_id, "price_per_hour_usd", _require(entry_id, raw, "price_per_hour_usd", num, True))
    price_date = _require(entry_id, raw, "price_date", str, allow_none=True)
    price_source = _require(entry_id, raw, "price_source", str, allow_none=True)
    if price is not None and not (price_date and price_source):
        raise CatalogError(f"GPU catalog entry {entry_id!r}: a price needs price_date and price_source")
    vendor = _require(entry_id, raw, "vendor", str)
    if vendor not in ("nvidia", "amd"):
        raise CatalogError(f"GPU catalog entry {entry_id!r}: vendor must be nvidia or amd")
    spec = GpuSpec(
        id=entry_id,
        name=_require(entry_id, raw, "name", str),
        vendor=vendor,
        name_patterns=patterns,
        device_names=tuple(_require(entry_id, raw, "device_names", list)),
        memory_bytes=_positive(entry_id, "memory_bytes", _require(entry_id, raw, "memory_bytes", int)),
        memory_bandwidth_bytes_per_s=_positive(
            entry_id, "memory_bandwidth_bytes_per_s", _require(entry_id, raw, "memory_bandwidth_bytes_per_s", num)
        ),
        peak_flop_per_s={d: (None if peaks[d] is None else float(peaks[d])) for d in DTYPES},
        tdp_w=_positive(entry_id, "tdp_w", _require(entry_id, raw, "tdp_w", num)),
        price_per_hour_usd=price,
        price_date=price_date,
        price_source=price_source,
        source=_require(entry_id, raw, "source", str),
        verified=dict(verified),
        notes=raw.get("notes", ""),
        compute_capability=_require(entry_id, raw, "compute_capability", str, allow_none=True),
        _regexes=regexes,
    )
    if not spec.device_names:
        raise CatalogError(f"GPU catalog entry {entry_id!r}: give at least one real device name")
    return spec


def parse_catalog(data: dict) -> list[GpuSpec]:
    """Validate a decoded catalog: schema version, every field, unique ids, unambiguous device names."""
    if not isinstance(data, dict) or data.get("schema_version") != CATALOG_SCHEMA_VERSION:
        raise CatalogError(f"GPU catalog: schema_version must be {CATALOG_SCHEMA_VERSION}")
    specs = [_parse_entry(raw) for raw in data.get("gpus", [])]
    ids = [s.id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"GPU catalog: duplicate ids {', '.join(dupes)}")
    for spec in specs:
        for device_name in spec.device_names:
            hits = [s.id for s in specs if s.matches(device_name)]
            if hits != [spec.id]:
                raise CatalogError(
                    f"GPU catalog entry {spec.id!r}: device name {device_name!r} matches {hits or 'no entry'}; "
                    "it must match this entry alone"
                )
    return specs


def load_catalog(path: str | os.PathLike | None = None) -> list[GpuSpec]:
    """The catalog at ``path`` (default: the packaged ``bench_lib/data/gpus.json``), validated."""
    if path is None:
        text = resources.files("bench_lib").joinpath("data/gpus.json").read_text(encoding="utf-8")
        where = "bench_lib/data/gpus.json"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"GPU catalog {where}: not valid JSON ({exc})") from None
    return parse_catalog(data)


def load_prices(path: str | os.PathLike, specs: list[GpuSpec]) -> dict[str, tuple[float, str | None, str]]:
    """{catalog id: (price_per_hour_usd, price_date, price_source)} from a user price file (format above)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CatalogError(f"price file {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("prices"), dict):
        raise CatalogError(f'price file {path}: expected {{"prices": {{"<gpu id or device name>": ...}}}}')
    out = {}
    for key, value in data["prices"].items():
        spec = find(key, specs)
        if spec is None:
            raise CatalogError(f"price file {path}: {key!r} is no catalog id or known device name")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"price_per_hour_usd": value}
        price = value.get("price_per_hour_usd") if isinstance(value, dict) else None
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 < price < 1e9:  # NaN, Inf too
            raise CatalogError(f"price file {path}: {key!r} needs a positive price_per_hour_usd")
        out[spec.id] = (float(price), value.get("price_date"), value.get("price_source") or f"user price file {path}")
    return out


def with_prices(specs: list[GpuSpec], prices: dict[str, tuple[float, str | None, str]]) -> list[GpuSpec]:
    """``specs`` with user prices in place of the catalog's (unverified by definition)."""
    out = []
    for s in specs:
        if s.id in prices:
            price, date, source = prices[s.id]
            s = replace(s, price_per_hour_usd=price, price_date=date, price_source=source,
                        verified={**s.verified, "price": False})
        out.append(s)
    return out


@lru_cache(maxsize=8)
def _cached(prices_path: str | None) -> tuple[GpuSpec, ...]:
    specs = load_catalog()
    if prices_path:
        specs = with_prices(specs, load_prices(prices_path, specs))
    return tuple(specs)


def catalog(prices_path: str | None = None) -> list[GpuSpec]:
    """The packaged catalog with prices from ``prices_path`` or, when None, the ``EFFBENCH_PRICES`` file."""
    return list(_cached(prices_path or os.environ.get(PRICES_ENV) or None))


def lookup(device_name: str, specs: list[GpuSpec] | None = None) -> GpuSpec | None:
    """The entry whose patterns match ``device_name`` exactly; None for unknown GPUs, CPUs and MIG slices."""
    if not device_name:
        return None
    hits = [s for s in (catalog() if specs is None else specs) if s.matches(device_name)]
    return hits[0] if len(hits) == 1 else None


def find(name: str, specs: list[GpuSpec] | None = None) -> GpuSpec | None:
    """A catalog entry by id (``h100-sxm``) or by device name (``NVIDIA H100 80GB HBM3``)."""
    specs = catalog() if specs is None else specs
    by_id = [s for s in specs if s.id == name.strip().lower()]
    return by_id[0] if by_id else lookup(name, specs)


# ---------------------------------------------------------------- derived metrics (pure functions)
def canonical_dtype(dtype: str) -> str | None:
    """'float32', 'torch.bfloat16', 'bf16' -> 'fp32' / 'bf16'; None for dtypes the catalog has no peak for (nf4...)."""
    name = str(dtype).removeprefix("torch.").lower()
    name = _DTYPE_ALIASES.get(name, name)
    return name if name in DTYPES else None


def matmul_dtype(dtype: str, tf32_enabled: bool) -> str | None:
    """The peak that applies to a matmul in ``dtype``: fp32 runs on TF32 tensor cores when TF32 is allowed."""
    name = canonical_dtype(dtype)
    return "tf32" if name == "fp32" and tf32_enabled else name


def peak_flop_per_s(spec: GpuSpec, dtype: str) -> float | None:
    """Dense peak FLOP/s (int8: op/s) of ``spec`` for ``dtype``; None when unknown or unsupported."""
    name = canonical_dtype(dtype)
    return spec.peak_flop_per_s.get(name) if name else None


def frac_of_peak(tflops: float, spec: GpuSpec, dtype: str) -> float | None:
    """Achieved TFLOP/s over the catalog's dense peak for ``dtype`` (MFU-style; 1.0 = the datasheet rate)."""
    peak = peak_flop_per_s(spec, dtype)
    return None if peak is None or tflops is None else tflops * 1e12 / peak


def frac_of_ceiling(tflops: float, ceilings: dict, dtype: str) -> float | None:
    """Achieved TFLOP/s over the calibration suite's measured matmul rate for ``dtype`` on the same machine.

    ``ceilings`` is ``Context.ceilings``: ``{"matmul_flop_per_s": {"fp32": 1.2e11, ...}, ...}``.
    """
    rate = (ceilings or {}).get("matmul_flop_per_s", {}).get(canonical_dtype(dtype) or dtype)
    return None if not rate or tflops is None else tflops * 1e12 / rate


def decode_bytes_per_s(weight_bytes: float, tokens_per_s: float, batch: int = 1) -> float:
    """Weight bytes streamed per second while decoding: every decode step reads all weights once and yields
    ``batch`` tokens, so bandwidth = weight_bytes x tokens_per_s / batch (gpt-fast's memory-bound model; KV-cache
    reads are not counted, which makes this a lower bound)."""
    return weight_bytes * tokens_per_s / batch


def frac_of_bandwidth(bytes_per_s: float, spec: GpuSpec) -> float:
    """Achieved bytes/s over the catalog's peak memory bandwidth (1.0 = the datasheet rate)."""
    return bytes_per_s / spec.memory_bandwidth_bytes_per_s


def training_tokens_per_s(batch: int, seq: int, step_s: float) -> float:
    """Tokens a training step consumes per second: batch x seq / step time."""
    return batch * seq / step_s


def usd_per_million_tokens(price_per_hour_usd: float | None, tokens_per_s: float | None) -> float | None:
    """Dollars per 1e6 tokens at a rented GPU's hourly price: price / 3600 s / tokens_per_s x 1e6."""
    if not price_per_hour_usd or not tokens_per_s:
        return None
    return price_per_hour_usd / 3600.0 / tokens_per_s * 1e6


def tokens_per_joule(tokens: float, joules: float | None) -> float | None:
    """Tokens produced per joule of GPU energy (NVML's counter); None when energy was not measured."""
    return None if not joules else tokens / joules


def describe(spec: GpuSpec | None) -> dict:
    """Flat fields for the report's machine section: catalog id, memory, bandwidth, price with date and source."""
    if spec is None:
        return {"gpu_catalog_id": None}
    return {
        "gpu_catalog_id": spec.id,
        "gpu_catalog_name": spec.name,
        "gpu_memory_bytes": spec.memory_bytes,
        "memory_bandwidth_bytes_per_s": spec.memory_bandwidth_bytes_per_s,
        "tdp_w": spec.tdp_w,
        "price_per_hour_usd": spec.price_per_hour_usd,
        "price_date": spec.price_date,
        "price_source": spec.price_source,
        "catalog_source": spec.source,
        "catalog_unverified": sorted(g for g, ok in spec.verified.items() if not ok),
    }
