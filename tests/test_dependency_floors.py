"""pyproject's version floors admit no release that lacks an API effbench calls.

Each row: a call that appears in bench_lib, and the oldest release of its package that has it. A floor
below that release lets pip install a version on which the call fails (a TypeError at the first case).
"""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]

NEEDS = [  # (text in bench_lib, package, oldest release with it, source)
    ("enable_gqa=", "torch", "2.5", "torch 2.5 added scaled_dot_product_attention(enable_gqa=)"),
    ("including_emulation=", "torch", "2.4", "pytorch#129288, cherry-picked into release/2.4"),
    ("sdpa_kernel", "torch", "2.3", "torch.nn.attention.sdpa_kernel is new in torch 2.3"),
    ("bnb_4bit_quant_storage", "bitsandbytes", "0.43", "bitsandbytes 0.43 added 4-bit quant_storage"),
    ("from packaging", "packaging", "20", "packaging.version.Version with .release"),
]


def floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    out = {}
    for text in reqs:
        req = Requirement(text)
        for spec in req.specifier:
            if spec.operator == ">=":
                out[req.name] = Version(spec.version)
    return out


def source_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "bench_lib").rglob("*.py"))


@pytest.mark.parametrize("call, package, oldest, why", NEEDS, ids=[n[0] for n in NEEDS])
def test_floor_admits_only_releases_with_the_call(call, package, oldest, why):
    if call not in source_text():
        pytest.skip(f"bench_lib no longer calls {call}")
    floor = floors().get(package)
    assert floor is not None, f"{package} is used ({call}) but pyproject gives it no floor"
    assert floor >= Version(oldest), f"{package}>={floor} admits releases without {call}: {why}"


def test_dtype_keyword_goes_through_the_version_helper():
    """from_pretrained/from_config(dtype=) needs transformers 4.56; the floor is lower, so no call spells it."""
    assert floors()["transformers"] < Version("4.56")
    calls = re.findall(r"\.from_(?:pretrained|config)\((?:[^()]|\([^()]*\))*\)", source_text())
    assert calls and not [c for c in calls if re.search(r"\bdtype=", c)]
