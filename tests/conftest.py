import numpy as np
import pytest

@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def threads(request):
    """Run the test with rnnkit's kernels on 1 and on 2 threads; restores the previous setting."""
    import rnnkit

    previous = rnnkit.get_num_threads()
    rnnkit.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        rnnkit.set_num_threads(previous)
