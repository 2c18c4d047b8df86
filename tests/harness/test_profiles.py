import pytest

from bench_lib.harness import profiles


@pytest.mark.parametrize("suite", list(profiles.GRIDS))
@pytest.mark.parametrize("profile", profiles.PROFILE_CHOICES)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_grids_are_well_formed(suite, profile, device):
    cases = profiles.cases(suite, profile, device)
    assert all(c.suite == suite for c in cases)
    assert len({c.id for c in cases}) == len(cases)


def test_every_suite_has_cpu_smoke_and_quick_cases():
    for suite in profiles.GRIDS:
        assert profiles.cases(suite, "smoke", "cpu"), suite
        assert profiles.cases(suite, "quick", "cpu"), suite


def test_bad_names_are_clear():
    with pytest.raises(ValueError, match="--profile must be one of"):
        profiles.get("fast")
    with pytest.raises(ValueError, match="unknown suite"):
        profiles.cases("nope", "quick", "cpu")


def test_profile_validation():
    with pytest.raises(ValueError):
        profiles.Profile("x", warmup_rounds=0, min_rounds=5, max_rounds=2, target_time_s=1, case_timeout_s=1)
    assert profiles.get("full").min_rounds >= 10  # compare needs samples for power
