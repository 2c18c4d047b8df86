"""Fine-tuning: per-step cost of full / full_amp / LoRA / QLoRA, and what quality each reaches (cases:
bench_lib.harness.profiles.finetune_grid; ``group`` cost, convergence or merge)."""

import pytest

from bench_lib.harness import profiles
from bench_lib.suites import convergence, finetune

pytestmark = pytest.mark.effbench_suite("finetune")


def group(name):
    """The suite's grid restricted to one group of cases."""
    return lambda profile, device_type: [
        c for c in profiles.finetune_grid(profile, device_type) if c.params["group"] == name]


@pytest.mark.effbench_suite("finetune", grid=group("cost"))
def test_finetune_step(case, measure):
    measure(finetune.build, case)


# prepare: the pre-trained model (and the merge cases' adapter) is trained, or found in the cache, before the
# first case, outside every case's time limit
@pytest.mark.effbench_suite("finetune", grid=group("convergence"), prepare=convergence.preparations)
def test_convergence(case, measure):
    measure(convergence.build, case)


@pytest.mark.effbench_suite("finetune", grid=group("merge"), prepare=convergence.preparations)
def test_merge(case, measure):
    measure(finetune.build, case)


# DDP / FSDP2 over torchrun children (bench_lib.suites.distributed): ws=1 and ws=N in the same case
@pytest.mark.effbench_suite("finetune", grid=group("distributed"))
def test_distributed(case, measure):
    measure(finetune.build, case)
