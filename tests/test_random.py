"""rnnkit.random: one module generator, reseeded by set_seed."""

import numpy as np
import pytest

import rnnkit.random


def test_set_seed_makes_draws_reproducible():
    rnnkit.random.set_seed(123)
    first = rnnkit.random.generator().random(5)
    rnnkit.random.set_seed(123)
    np.testing.assert_array_equal(rnnkit.random.generator().random(5), first)
    np.testing.assert_array_equal(first, np.random.default_rng(123).random(5))  # numpy's default_rng(seed)
    rnnkit.random.set_seed(124)
    assert not np.array_equal(rnnkit.random.generator().random(5), first)


def test_generator_is_one_shared_object():
    rng = rnnkit.random.generator()
    assert isinstance(rng, np.random.Generator) and rnnkit.random.generator() is rng
    rng.random(3)  # drawing advances the shared stream
    rnnkit.random.set_seed(0)
    assert rnnkit.random.generator() is not rng


@pytest.mark.parametrize("seed", [-1, 1.5, "1", True, None])
def test_invalid_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        rnnkit.random.set_seed(seed)
