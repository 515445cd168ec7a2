"""Fixtures; the helpers the tests share are in helpers.py."""

import numpy as np
import pytest
from helpers import rnnkit_threads


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def threads(request):
    """Run the test with rnnkit's kernels on 1 and on 2 threads; restores the previous setting."""

    with rnnkit_threads(request.param):
        yield request.param


@pytest.fixture(params=[(1, "units"), (2, "units"), (2, "rows")], ids=["threads1", "threads2", "threads2_rows"])
def step_threads(request):
    """threads, and on 2 threads both ways of sharing a step of the recurrence: each thread its share of the
    hidden units of every batch row, or each thread every unit of its own batch rows."""
    n, split = request.param
    with rnnkit_threads(n, split):
        yield request.param


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
