"""rnnkit's one source of randomness: weight initialisation, shuffling and dropout masks.

    rnnkit.random.set_seed(42)      # reproducible from here on
    rng = rnnkit.random.generator()  # a numpy.random.Generator; draw from it, never reseed it

Until ``set_seed`` is called the generator is seeded from OS entropy (a fresh run differs).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["set_seed", "generator"]

_generator: np.random.Generator | None = None


def set_seed(seed: int) -> None:
    """Replace the module generator by ``numpy.random.default_rng(seed)``; ``seed`` an int >= 0."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The module generator (created from OS entropy on first use if ``set_seed`` was never called)."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator
