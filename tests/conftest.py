import contextlib

import numpy as np
import pytest

@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def threads(request):
    """Run the test with rnnkit's kernels on 1 and on 2 threads; restores the previous setting."""
    import rnnkit

    with rnnkit_threads(request.param):
        yield request.param


@contextlib.contextmanager
def rnnkit_threads(n):
    """rnnkit's kernels on n threads, even for problems too small to be worth it (so that tests of small
    problems cover the multi-threaded paths); restores both settings."""
    import rnnkit
    from rnnkit import _isa

    previous, split = rnnkit.get_num_threads(), _isa.current._split_small_calls(n > 1)
    rnnkit.set_num_threads(n)
    try:
        yield
    finally:
        rnnkit.set_num_threads(previous)
        _isa.current._split_small_calls(split)


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
