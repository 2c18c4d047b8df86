"""Profiles and grids: every size a run measures lives here, as data.

A profile sets how hard each case is measured (warmup, rounds, time limits); each suite's grid function
returns the cases for (profile, device type). CPU grids must keep the budgets: ``smoke`` under 3 minutes and
``quick`` under 10 minutes for all suites together on a 2-core machine. GPU grids reach the sizes that matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench_lib.workload import Case

PROFILE_CHOICES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Profile:
    """How each case is measured.

    warmup_rounds: untimed calls before timing (more: fewer cold-cache/compile effects in the samples).
    min_rounds:    timed calls even for slow cases (more: tighter median and IQR, compare gets more power).
    max_rounds:    cap for fast cases.
    target_time_s: rounds are sized so timing takes about this long (more: less noise, longer runs).
    case_timeout_s: a case still running after this becomes ``timeout``.
    """

    name: str
    warmup_rounds: int
    min_rounds: int
    max_rounds: int
    target_time_s: float
    case_timeout_s: float

    def __post_init__(self):
        if not (self.warmup_rounds >= 0 and 1 <= self.min_rounds <= self.max_rounds):
            raise ValueError(f"profile {self.name}: need warmup >= 0 and 1 <= min_rounds <= max_rounds")
        if self.target_time_s <= 0 or self.case_timeout_s <= 0:
            raise ValueError(f"profile {self.name}: times must be positive")


PROFILES = {
    # every case body once at tiny sizes: proves the suite runs, measures nothing worth keeping
    "smoke": Profile("smoke", warmup_rounds=0, min_rounds=1, max_rounds=1, target_time_s=0.01, case_timeout_s=60),
    "quick": Profile("quick", warmup_rounds=1, min_rounds=5, max_rounds=50, target_time_s=0.3, case_timeout_s=120),
    # nightly: enough samples for compare's significance test to have power
    "full": Profile("full", warmup_rounds=3, min_rounds=15, max_rounds=200, target_time_s=2.0, case_timeout_s=900),
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"--profile must be one of {', '.join(PROFILE_CHOICES)}, not {name!r}") from None


def cases(suite: str, profile: str, device_type: str) -> list[Case]:
    """The grid of ``suite`` for this profile and device type ("cpu" or "cuda")."""
    try:
        grid = GRIDS[suite]
    except KeyError:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(GRIDS)}") from None
    built = grid(get(profile).name, device_type)
    ids = [c.id for c in built]
    if len(ids) != len(set(ids)):
        raise ValueError(f"suite {suite} grid has duplicate case ids")
    return built


# ---------------------------------------------------------------- calibration
def calibration_grid(profile: str, device_type: str) -> list[Case]:
    # matmul size: large enough to reach the compute ceiling, small enough for the profile's budget
    n = {"smoke": 256, "quick": 1024, "full": 2048}[profile]
    if device_type == "cuda":
        n = {"smoke": 1024, "quick": 8192, "full": 8192}[profile]
        dtypes = ["fp32", "tf32", "fp16", "bf16"]
    else:
        dtypes = ["fp32", "bf16"]
    # copy size: well beyond any cache so it measures device memory, not L2/L3
    copy_mib = {"smoke": 16, "quick": 256, "full": 512}[profile]
    if device_type == "cuda":
        copy_mib = {"smoke": 64, "quick": 1024, "full": 2048}[profile]
    out = [Case("calibration", f"matmul-{dt}-n{n}", {"kind": "matmul", "dtype": dt, "n": n}) for dt in dtypes]
    out.append(Case("calibration", f"copy-{copy_mib}MiB", {"kind": "copy", "mib": copy_mib}))
    return out


# ---------------------------------------------------------------- attention (issue: attention suite)
def attention_grid(profile: str, device_type: str) -> list[Case]:
    return []


# ---------------------------------------------------------------- precision (issue: precision suite)
def precision_grid(profile: str, device_type: str) -> list[Case]:
    return []


# ---------------------------------------------------------------- finetune (issue: fine-tune suite)
def finetune_grid(profile: str, device_type: str) -> list[Case]:
    return []


GRIDS = {
    "calibration": calibration_grid,
    "attention": attention_grid,
    "precision": precision_grid,
    "finetune": finetune_grid,
}
