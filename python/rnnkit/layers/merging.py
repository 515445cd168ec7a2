"""Keras 3's merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum and Dot, and their
functional shortcuts (``concatenate``, ``add``, ...).

Each layer is called on a list of inputs (``x: [N, ...]`` each, the same batch size N) and returns one output.
They compute with ``rnnkit.ops``, so the tape differentiates them (they have no ``backward`` of their own).
Floating inputs are cast to the layer's dtype first, as Keras' layers do.

Elementwise layers (Add, Subtract, Multiply, Average, Maximum, Minimum) broadcast as Keras does: axes of size 1
stretch, and an input with fewer axes gets size-1 axes inserted after its batch axis. Masks: each input's mask
(``[N, T]`` for ``x: [N, T, C]``, its ``_keras_mask``) may be None. The output's mask is the OR of the inputs'
masks, or None as soon as one input has none (Keras' ``Merge.compute_mask``); Concatenate takes an input without
a mask as all True; Dot's output has no mask. Multiply, Maximum and Minimum also read the masks in their values,
as Keras 3 does: a masked step of one input does not take part (Multiply counts it as 1, and zeroes the steps
every input masks; Maximum and Minimum take the other inputs' values there).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..engine.tape import value_of
from .base import Layer
from .core import cast_inputs

__all__ = ["Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot", "concatenate", "add",
           "subtract", "multiply", "average", "maximum", "minimum", "dot"]


def _shape(x):
    return tuple(np.shape(value_of(x)))


class _Merge(Layer):
    """The base of the merge layers: ``call(inputs, mask=None)`` on a list of inputs; ``mask`` a list of one
    mask (or None) per input, by default the masks the inputs carry."""

    supports_masking = True
    checks_features = False
    min_inputs, max_inputs = 1, None  # how many inputs the layer takes

    def call(self, inputs, mask=None):
        masks = self._masks(inputs, mask)
        inputs = cast_inputs(self, [x if hasattr(x, "shape") else np.asarray(x) for x in inputs])
        self._check_shapes([_shape(x) for x in inputs])
        return self._merge(inputs, masks)

    # ---- checks ---------------------------------------------------------------------------------------
    def _check_count(self, inputs):
        kind = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"inputs: {kind} layer {self.name!r} takes a list of inputs, got "
                             f"{type(inputs).__name__} of shape {_shape(inputs)}")
        n = len(inputs)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            wanted = (f"exactly {self.min_inputs}" if self.min_inputs == self.max_inputs
                      else f"at least {self.min_inputs}")
            raise ValueError(f"inputs: {kind} layer {self.name!r} takes {wanted} input"
                             f"{'s' if self.min_inputs > 1 else ''}, got {n}")

    def _masks(self, inputs, mask):
        """One mask (a bool array) or None per input: ``mask`` as given, else what the inputs carry."""
        self._check_count(inputs)
        if mask is None:
            return [_mask_of(x) for x in inputs]
        if not isinstance(mask, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(f"mask: layer {self.name!r} takes a list of one mask (or None) per input, "
                             f"{len(inputs)} in all, got {mask!r:.100}")
        return [None if m is None else np.asarray(value_of(m), dtype=bool) for m in mask]

    def _check_shapes(self, shapes):
        """Keras' checks of elementwise inputs: one batch size, and the other axes equal or 1 (aligned at the
        end); ValueError naming the shapes otherwise."""
        if len({s[0] for s in shapes if s}) > 1 or any(not s for s in shapes):
            raise ValueError(f"inputs: {type(self).__name__} layer {self.name!r} merges inputs [N, ...] of one batch "
                             f"size N, got shapes {shapes}")
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = _broadcast_shape(out, s[1:], self, shapes)

    def compute_mask(self, inputs, mask=None):
        """The OR of the inputs' masks; None when an input has none (Keras' ``Merge.compute_mask``)."""
        masks = self._masks(inputs, mask)
        if any(m is None for m in masks):
            return None
        out = masks[0]
        for m in masks[1:]:
            out = out | m
        return out

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = _broadcast_shape(out, s[1:], self, shapes)
        batch = {s[0] for s in shapes} - {None}
        return (batch.pop() if len(batch) == 1 else None, *out)

    # ---- the merge ----------------------------------------------------------------------------------------
    def _merge(self, inputs, masks):
        """Inputs of one number of axes (size-1 axes inserted after the batch axis where needed), then
        ``_merge_function``; the masks reach it only when no axes were inserted (as in Keras)."""
        ndims = [len(_shape(x)) for x in inputs]
        if len(set(ndims)) > 1:
            top = max(ndims)
            expanded = []
            for x, nd in zip(inputs, ndims):
                for _ in range(top - nd):
                    x = ops.expand_dims(x, 1)
                expanded.append(x)
            return self._merge_function(expanded, [None] * len(inputs))
        return self._merge_function(inputs, masks)

    def _merge_function(self, inputs, masks):
        raise NotImplementedError


def _mask_of(x):
    m = getattr(x, "_keras_mask", None)
    return None if m is None else np.asarray(value_of(m), dtype=bool)


def _broadcast_shape(a, b, layer, shapes):
    """Keras' ``_compute_elemwise_op_output_shape`` of two shapes without their batch axis (None: unknown)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return a
    out = list(a[:len(a) - len(b)])
    for i, j in zip(a[len(a) - len(b):], b):
        if i is None or j is None:
            out.append(None)
        elif i == 1 or j == 1:
            out.append(j if i == 1 else i)
        elif i != j:
            raise ValueError(f"inputs: {type(layer).__name__} layer {layer.name!r} merges inputs of the same shape "
                             f"(or axes of size 1), got incompatible shapes {shapes}")
        else:
            out.append(i)
    return tuple(out)


def _step_mask(mask, x, layer):
    """mask: [N, T] for x: [N, T, C] -> [N, T, C] (the mask of each value)."""
    shape = _shape(x)
    try:
        return np.broadcast_to(mask[..., None], shape)
    except ValueError:
        raise ValueError(f"mask: layer {layer.name!r} takes masks of the inputs' shape without the last axis "
                         f"({list(shape[:-1])}), got shape {list(mask.shape)}") from None


class Concatenate(_Merge):
    """Concatenate(axis=-1): the inputs joined along ``axis``: [N, T, C1], [N, T, C2] -> [N, T, C1 + C2] for
    the default. The inputs have the same number of axes and the same sizes on every other axis.
    Output mask: the inputs' masks joined (an input without one counts as all True), any over the last axis."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis: expected an integer, got {axis!r}")
        self.axis = int(axis)

    def _check_shapes(self, shapes):
        ndim = len(shapes[0])
        if any(len(s) != ndim for s in shapes) or not -ndim <= self.axis < ndim:
            raise ValueError(f"inputs: Concatenate(axis={self.axis}) layer {self.name!r} joins inputs with the same "
                             f"number of axes (more than {self.axis if self.axis >= 0 else -self.axis - 1}), got "
                             f"shapes {shapes}")
        axis = self.axis % ndim
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"inputs: Concatenate(axis={self.axis}) layer {self.name!r} joins inputs of matching "
                             f"shapes except along the axis {self.axis}, got shapes {shapes}")

    def _merge(self, inputs, masks):
        return ops.concatenate(inputs, axis=self.axis)

    def compute_mask(self, inputs, mask=None):
        masks = self._masks(inputs, mask)
        if all(m is None for m in masks):
            return None
        full = []
        for x, m in zip(inputs, masks):
            shape = _shape(x)
            if m is None:
                full.append(np.ones(shape, dtype=bool))
            elif m.ndim < len(shape):
                full.append(np.broadcast_to(np.expand_dims(m, -1), shape))
            else:
                full.append(m)
        return np.any(np.concatenate(full, axis=self.axis), axis=-1)

    def compute_output_shape(self, input_shape):
        out = list(input_shape[0])
        for shape in input_shape[1:]:
            if out[self.axis] is None or shape[self.axis] is None:
                out[self.axis] = None
                break
            out[self.axis] += shape[self.axis]
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Add(_Merge):
    """The inputs' elementwise sum: [N, ...] each -> [N, ...]."""

    def _merge_function(self, inputs, masks):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class Subtract(_Merge):
    """``inputs[0] - inputs[1]``, elementwise: exactly two inputs [N, ...] -> [N, ...]."""

    min_inputs = max_inputs = 2

    def _merge_function(self, inputs, masks):
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    """The inputs' elementwise product: [N, ...] each -> [N, ...]. A masked value of an input counts as 1; where
    every input has a mask and all of them mask the step, the output is 0 (Keras 3)."""

    def _merge_function(self, inputs, masks):
        all_masked = all(m is not None for m in masks)
        out = out_mask = None
        for x, m in zip(inputs, masks):
            if m is not None:
                m = _step_mask(m, x, self)
                x = ops.where(m, x, 1.0)  # a masked value leaves the product as it is
                if all_masked:
                    out_mask = m if out_mask is None else out_mask | m
            out = x if out is None else out * x
        if all_masked:
            out = ops.where(out_mask, out, 0.0)
        return out


class Average(_Merge):
    """The inputs' elementwise mean: [N, ...] each -> [N, ...]."""

    def _merge_function(self, inputs, masks):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out / len(inputs)


class _Extreme(_Merge):
    """Maximum and Minimum: Keras 3's ``_apply_merge_op_and_or_mask`` — where an input's step is masked, the
    others' values stand in for it."""

    _elementwise = None  # ops.maximum or ops.minimum

    def _merge_function(self, inputs, masks):
        out = out_mask = None
        for x, m in zip(inputs, masks):
            m = None if m is None else _step_mask(m, x, self)
            if out is None:
                out, out_mask = x, m
                continue
            if m is not None:
                x = ops.where(m, x, out)
            if out_mask is not None:
                out = ops.where(out_mask, out, x)
            out_mask = out_mask | m if (m is not None and out_mask is not None) else None
            out = type(self)._elementwise(out, x)
        return out


class Maximum(_Extreme):
    """The inputs' elementwise maximum: [N, ...] each -> [N, ...] (where inputs tie, the gradient goes to the
    earlier one)."""

    _elementwise = staticmethod(ops.maximum)


class Minimum(_Extreme):
    """The inputs' elementwise minimum: [N, ...] each -> [N, ...] (where inputs tie, the gradient goes to the
    earlier one)."""

    _elementwise = staticmethod(ops.minimum)


class Dot(_Merge):
    """Dot(axes, normalize=False): the dot product of two inputs' samples along ``axes`` (one axis for both, or
    ``(axis of the first, axis of the second)``; never 0, the batch axis), Keras' ``batch_dot``:
    x: [N, C], y: [N, C] -> [N, 1]; x: [N, T, C], y: [N, S, C] with axes=2 -> [N, T, S]; in general the first
    input's axes without its summed one, then the second's without its batch and summed ones. ``normalize``
    L2-normalizes both along their axes first (the output is then the cosine similarity), as
    ``keras.ops.normalize``: ``x / max(||x||, 1e-7)``. The output has no mask."""

    min_inputs = max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ValueError(f"axes: expected an integer or two integers (one per input), got {axes!r}")
            if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
                raise ValueError(f"axes: expected an integer or two integers (one per input), got {axes!r}")
            axes = [int(a) for a in axes]
        elif isinstance(axes, bool) or not isinstance(axes, (int, np.integer)):
            raise TypeError(f"axes: expected an integer or a list of two integers, got {axes!r}")
        else:
            axes = int(axes)
        self.axes, self.normalize = axes, bool(normalize)

    def _resolved_axes(self, shapes):
        """The summed axis of each input (non-negative); ValueError when one is the batch axis or out of range."""
        pair = [self.axes, self.axes] if isinstance(self.axes, int) else list(self.axes)
        resolved = []
        for a, s in zip(pair, shapes):
            if not -len(s) <= a < len(s) or a % len(s) == 0:
                raise ValueError(f"axes: Dot layer {self.name!r} sums over an axis other than the batch axis 0 of "
                                 f"each input, got axes={self.axes} for inputs of shapes {shapes}")
            resolved.append(a % len(s))
        return resolved

    def _check_shapes(self, shapes):
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f"inputs: Dot layer {self.name!r} takes inputs [N, ...] with at least 2 axes, got "
                             f"shapes {shapes}")
        if shapes[0][0] != shapes[1][0]:
            raise ValueError(f"inputs: Dot layer {self.name!r} takes inputs of one batch size N, got shapes {shapes}")
        a0, a1 = self._resolved_axes(shapes)
        if shapes[0][a0] != shapes[1][a1]:
            raise ValueError(f"inputs: Dot(axes={self.axes}) layer {self.name!r} sums axis {a0} of the first input "
                             f"against axis {a1} of the second, which differ in size: shapes {shapes}")

    def _merge(self, inputs, masks):
        x, y = inputs
        a0, a1 = self._resolved_axes([_shape(x), _shape(y)])
        if self.normalize:
            x, y = _l2_normalize(x, a0), _l2_normalize(y, a1)
        return _batch_dot(x, y, a0, a1)

    def compute_mask(self, inputs, mask=None):
        self._masks(inputs, mask)
        return None

    def compute_output_shape(self, input_shape):
        s1, s2 = list(input_shape[0]), list(input_shape[1])
        a0, a1 = self._resolved_axes([s1, s2])
        s1.pop(a0)
        s2.pop(a1)
        s2.pop(0)
        out = s1 + s2
        return tuple(out + [1] if len(out) == 1 else out)

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(x, axis):
    # x / max(||x||, eps), eps = 1e-7 (Keras' backend.epsilon())
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=axis, keepdims=True), 1e-14))


def _batch_dot(x, y, a0, a1):
    """Keras' ``batch_dot`` with ops: x's axis a0 summed against y's axis a1, sample by sample."""
    x_ndim, y_ndim = len(_shape(x)), len(_shape(y))
    x_ndim0, y_ndim0 = x_ndim, y_ndim
    if x_ndim == 2:  # x: [N, C] -> [N, 1, C]
        x, a0, x_ndim = ops.expand_dims(x, 1), a0 + 1, 3
    if y_ndim == 2:  # y: [N, C] -> [N, C, 1]
        y, y_ndim = ops.expand_dims(y, 2), 3
    if a0 != x_ndim - 1:  # x's summed axis last
        x = ops.transpose(x, [i for i in range(x_ndim) if i != a0] + [a0])
    if a1 != 1:  # y's summed axis second
        y = ops.transpose(y, [0, a1] + [i for i in range(1, y_ndim) if i != a1])
    xs, ys = _shape(x), _shape(y)
    N = xs[0]
    if x_ndim > 3:  # [N, ..., C] -> [N, M, C]
        x = ops.reshape(x, (N, math.prod(xs[1:-1]), xs[-1]))
    if y_ndim > 3:  # [N, C, ...] -> [N, C, K]
        y = ops.reshape(y, (N, ys[1], math.prod(ys[2:])))
    out = ops.matmul(x, y)  # [N, M, K]
    if x_ndim > 3 or y_ndim > 3:
        out = ops.reshape(out, (N, *xs[1:-1], *ys[2:]))
    if x_ndim0 == 2:
        out = ops.squeeze(out, 1)
    elif y_ndim0 == 2:
        out = ops.squeeze(out, -1)
    return out


# ---- Keras' functional shortcuts ---------------------------------------------------------------------------
def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """``Dot(axes=axes, normalize=normalize, **kwargs)(inputs)`` (Keras' default ``axes=-1``)."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
