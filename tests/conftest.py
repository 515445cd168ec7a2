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


@pytest.fixture(params=["packed", "in_place"], ids=lambda p: f"W_hh_{p}")
def product_path(request):
    """Run the test with W_hh packed once per call (long calls) and read in place (short calls, such as a
    streaming step), whatever the problem's size; restores the threshold between the two."""
    from rnnkit import _isa

    previous = _isa.current._pack_threshold(0 if request.param == "packed" else 2**62)
    try:
        yield request.param
    finally:
        _isa.current._pack_threshold(previous)
