"""Keras 3's reshaping layers: RepeatVector, Flatten, Reshape and Permute.

They compute with ``rnnkit.ops``, so the tape differentiates them (no ``backward`` of their own). The batch axis
N is never changed; floating inputs are cast to the layer's dtype first, as Keras' layers do. Their outputs carry
no mask (Keras' layers do not support masking).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .base import Layer
from .core import cast_inputs

__all__ = ["RepeatVector", "Flatten", "Reshape", "Permute"]


def _int(value):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


class _Reshaping(Layer):
    checks_features = False

    def _input(self, x):
        """x cast to the layer's dtype, with its shape (ValueError naming x for a scalar: there is no batch axis)."""
        x = cast_inputs(self, x)
        shape = ops.shape(x)
        if not shape:
            raise ValueError(f"x: layer {self.name!r} expects a batch [N, ...], got a scalar")
        return x, shape


class RepeatVector(_Reshaping):
    """RepeatVector(n): each sample repeated n times along a new axis: x: [N, C] -> [N, n, C]."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not _int(n):
            raise TypeError(f"n: expected an integer, got {type(n).__name__} {n!r}")
        if n <= 0:
            raise ValueError(f"n: expected a positive integer, got {n}")
        self.n = int(n)

    def call(self, inputs):
        x, shape = self._input(inputs)
        if len(shape) != 2:
            raise ValueError(f"x: RepeatVector layer {self.name!r} expects inputs [N, C], got shape {shape}")
        return ops.repeat(ops.expand_dims(x, 1), self.n, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class Flatten(_Reshaping):
    """Flatten(data_format=None): every axis after the batch axis as one: x: [N, d1, d2, ...] -> [N, d1*d2*...]
    (x: [N] -> [N, 1]). ``data_format="channels_first"`` reads [N, C, d1, ...] and flattens it in the order of
    [N, d1, ..., C], as Keras does; None or "channels_last" keeps the order."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        data_format = "channels_last" if data_format is None else data_format
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format: expected 'channels_last', 'channels_first' or None, got {data_format!r}")
        self.data_format = data_format

    def call(self, inputs):
        x, shape = self._input(inputs)
        if self.data_format == "channels_first" and len(shape) > 2:
            x = ops.transpose(x, (0, *range(2, len(shape)), 1))
        return ops.reshape(x, (shape[0], math.prod(shape[1:])))

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(d is None for d in rest) else math.prod(rest))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_Reshaping):
    """Reshape(target_shape): each sample reshaped: x: [N, ...] -> [N, *target_shape]. One entry of
    ``target_shape`` may be -1: the size that keeps the number of values."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(target_shape, (list, tuple)) or not all(_int(d) for d in target_shape):
            raise TypeError(f"target_shape: expected a tuple of integers (without the batch axis), got "
                            f"{target_shape!r}")
        target_shape = tuple(int(d) for d in target_shape)
        if any(d < -1 for d in target_shape) or target_shape.count(-1) > 1:
            raise ValueError(f"target_shape: expected non-negative sizes and at most one -1 (a size to infer), got "
                             f"{target_shape}")
        self.target_shape = target_shape

    def _resolved(self, sample_shape):
        """target_shape with its -1 worked out for samples of ``sample_shape`` (None when unknown)."""
        if any(d is None for d in sample_shape):
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(sample_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 not in self.target_shape:
            if known != size:
                raise ValueError(f"target_shape: layer {self.name!r} cannot reshape samples of shape "
                                 f"{tuple(sample_shape)} ({size} values) to {self.target_shape} ({known} values)")
            return self.target_shape
        if known == 0 or size % known:
            raise ValueError(f"target_shape: layer {self.name!r} cannot reshape samples of shape "
                             f"{tuple(sample_shape)} ({size} values) to {self.target_shape}: no size for -1 fits")
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def call(self, inputs):
        x, shape = self._input(inputs)
        return ops.reshape(x, (shape[0], *self._resolved(shape[1:])))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._resolved(tuple(input_shape[1:])))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(_Reshaping):
    """Permute(dims): the axes after the batch axis reordered; ``dims`` counts them from 1, as Keras:
    Permute((2, 1)) turns x: [N, T, C] into [N, C, T]. The input has len(dims) + 1 axes."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dims, (list, tuple)) or not all(_int(d) for d in dims):
            raise TypeError(f"dims: expected a tuple of integers, got {dims!r}")
        if sorted(int(d) for d in dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"dims: expected a permutation of 1, ..., {len(dims)} (the axes after the batch axis, "
                             f"counted from 1), got {tuple(dims)}")
        self.dims = tuple(int(d) for d in dims)

    def call(self, inputs):
        x, shape = self._input(inputs)
        if len(shape) != len(self.dims) + 1:
            raise ValueError(f"x: Permute{self.dims} layer {self.name!r} expects inputs with {len(self.dims) + 1} "
                             f"axes (the batch axis and {len(self.dims)} more), got shape {shape}")
        return ops.transpose(x, (0, *self.dims))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
