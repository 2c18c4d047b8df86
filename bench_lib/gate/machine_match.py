"""Do two runs come from the same machine? Compare's first question, asked of the environment records.

A timing ratio across different hardware is not a regression signal, so compare refuses it unless told
otherwise. What blocks depends on the device the cases ran on: for CUDA runs the GPU model and driver, for
CPU runs the CPU model and the cores the process could use. Software and settings differences (torch,
CUDA, TF32 flags, power limit...) never block but are reported, since they often explain a change.
"""

from __future__ import annotations

from typing import Any

# (label, path into machine_info["effbench"]) compared on every run; the blocking ones are chosen below
FIELDS = (
    ("device", ("device",)),
    ("gpu name", ("gpu", "name")),
    ("gpu driver", ("gpu", "driver")),
    ("gpu count", ("gpu", "count")),
    ("gpu power limit W", ("gpu", "power_limit_w")),
    ("gpu max SM clock MHz", ("gpu", "sm_clock_max_mhz")),
    ("cuda", ("gpu", "cuda")),
    ("cudnn", ("gpu", "cudnn")),
    ("cpu model", ("cpu", "model")),
    ("usable cpu cores", ("cpu", "usable_cores")),
    ("torch threads", ("torch", "num_threads")),
    ("torch", ("torch", "version")),
    ("tf32 matmul", ("torch", "tf32_matmul")),
    ("tf32 cudnn", ("torch", "tf32_cudnn")),
    ("float32 matmul precision", ("torch", "float32_matmul_precision")),
    ("python", ("python",)),
    ("profile", ("profile",)),
)
BLOCKING = {
    "cuda": {"device", "gpu name", "gpu driver"},
    "cpu": {"device", "cpu model", "usable cpu cores"},
}


def _get(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def describe(run) -> dict[str, Any]:
    """The compared facts of one run (label -> value); plain pytest-benchmark files give the CPU brand only."""
    env = run.environment
    if env:
        facts = {label: _get(env, path) for label, path in FIELDS}
        for name, version in sorted((env.get("packages") or {}).items()):
            # recorded as absent (None) is a fact: installing flash-attn turns its cases from unsupported to ok
            facts[f"package {name}"] = version or "not installed"
        return facts
    return {"cpu model": _get(run.machine_info, ("cpu", "brand_raw"))}


def machine_differences(base, cand) -> tuple[list[str], list[str]]:
    """(every difference, the blocking ones), each as 'label: base value -> candidate value'.

    A fact missing from either record is not a difference (older or plain files lack most of them).
    """
    a, b = describe(base), describe(cand)
    device = a.get("device") or b.get("device") or "cpu"
    blocking_labels = BLOCKING.get(device, BLOCKING["cpu"])
    if not (base.environment and cand.environment):
        blocking_labels = {"cpu model"}  # all a plain pytest-benchmark file tells about its machine
    differences, blocking = [], []
    for label in a.keys() & b.keys():
        if a[label] is None or b[label] is None or a[label] == b[label]:
            continue
        line = f"{label}: {a[label]} -> {b[label]}"
        differences.append(line)
        if label in blocking_labels:
            blocking.append(line)
    order = {label: i for i, label in enumerate(list(a) + list(b))}
    key = lambda line: order.get(line.split(":", 1)[0], 0)  # noqa: E731
    return sorted(differences, key=key), sorted(blocking, key=key)
