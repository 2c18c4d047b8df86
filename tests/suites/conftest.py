import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def effbench_cache(tmp_path_factory):
    """Trained weights go to a temporary cache, never the user's (``EFFBENCH_CACHE``), shared by the session."""
    path = tmp_path_factory.mktemp("effbench-cache")
    before = os.environ.get("EFFBENCH_CACHE")
    os.environ["EFFBENCH_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("EFFBENCH_CACHE", None)
    else:
        os.environ["EFFBENCH_CACHE"] = before
