import pytest
import torch

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's model tests on one torch thread: steadier on a shared 2-core machine, and results that
    depend on the thread count (reduction order) stay the same from run to run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
