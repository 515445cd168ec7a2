"""Losses with their gradients, Keras 3 formulas and "sum_over_batch_size" reduction.

    loss = rnnkit.losses.get("sparse_categorical_crossentropy")   # or SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_grad(y_true, y_pred, sample_mask=None)

``y_pred: [N, ..., K]`` (``[N, K]`` per sample, ``[N, T, K]`` per time step). Each position
``[N, ...]`` has a loss over the last axis: the mean over K for mse / mae / huber / binary
crossentropy, the sum over classes for categorical crossentropies. ``sample_mask: [N, ...]``
(bool; ``[N, T]`` for sequences) drops positions; the loss is the mean over the kept positions
(0.0 when none is kept). ``grad = dloss/dy_pred`` has y_pred's shape and dtype, already divided
by the number of kept positions. ``y_true`` has y_pred's shape (``[N, ...]`` integer class ids
for the sparse loss, a trailing axis of 1 allowed); non-finite ``y_true`` raises ValueError.

Probabilities (``from_logits=False``) are clipped to ``[1e-7, 1 - 1e-7]`` as Keras does (the
gradient is zero where the clip is active); categorical inputs are first normalised to sum to 1.
With ``from_logits=True`` the stable log-sigmoid / log-softmax forms are used.
"""

from __future__ import annotations

import numpy as np

from .initializers import Configurable, deserialize_object, get_object, serialize_object

__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "masked_mean", "get", "serialize", "deserialize",
]

EPSILON = 1e-7  # Keras' backend epsilon, used to clip probabilities


def masked_mean(values: np.ndarray, sample_mask=None) -> tuple[float, np.ndarray]:
    """Mean of ``values: [N, ...]`` over the positions where ``sample_mask`` (same shape, bool) is
    True; returns ``(mean, weights)`` with ``weights`` = mask / count (zeros if nothing is kept),
    so ``d mean / d values = weights``."""
    if sample_mask is None:
        weights = np.full(values.shape, 1.0 / max(values.size, 1), dtype=values.dtype)
    else:
        mask = np.asarray(sample_mask)
        if mask.shape != values.shape:
            raise ValueError(f"sample_mask has shape {mask.shape}, expected {values.shape} (y_pred's shape "
                             "without its last axis)")
        mask = mask.astype(bool)
        weights = mask / max(int(mask.sum()), 1)
        weights = weights.astype(values.dtype)
    return float(np.sum(values * weights)), weights


class Loss(Configurable):
    """Base class. Subclasses define ``_per_position(y_true, y_pred) -> (loss [N, ...], dloss/dy_pred
    [N, ..., K])`` on validated arrays of y_pred's dtype."""

    sparse = False

    def __call__(self, y_true, y_pred, sample_mask=None) -> float:
        return self.value_and_grad(y_true, y_pred, sample_mask)[0]

    def value_and_grad(self, y_true, y_pred, sample_mask=None) -> tuple[float, np.ndarray]:
        y_true, y_pred = self._check(y_true, y_pred)
        values, grad = self._per_position(y_true, y_pred)
        value, weights = masked_mean(values, sample_mask)
        return value, (grad * weights[..., None]).astype(y_pred.dtype, copy=False)

    def _check(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        if y_pred.ndim < 2 or not np.issubdtype(y_pred.dtype, np.floating):
            raise ValueError(f"y_pred must be a floating array [N, ..., K], got shape {y_pred.shape} "
                             f"and dtype {y_pred.dtype}")
        y_true = np.asarray(y_true)
        expected = y_pred.shape[:-1] if self.sparse else y_pred.shape
        if self.sparse and y_true.shape == expected + (1,):
            y_true = y_true[..., 0]  # [N, ..., 1] class ids
        elif not self.sparse and y_pred.shape[-1] == 1 and y_true.shape == expected[:-1]:
            y_true = y_true[..., None]  # [N, ...] targets for a single output
        if y_true.shape != expected:
            raise ValueError(f"y_true has shape {y_true.shape}, expected {expected} for y_pred of shape {y_pred.shape}")
        if not np.all(np.isfinite(y_true)):
            raise ValueError("y_true contains non-finite values (NaN or inf)")
        if self.sparse:
            labels = y_true.astype(np.int64)
            if np.any(labels != y_true) or np.any(labels < 0) or np.any(labels >= y_pred.shape[-1]):
                raise ValueError(f"y_true must hold integer class ids in [0, {y_pred.shape[-1]}), got values in "
                                 f"[{y_true.min()}, {y_true.max()}]")
            return labels, y_pred
        return y_true.astype(y_pred.dtype, copy=False), y_pred

    def _per_position(self, y_true, y_pred):
        raise NotImplementedError


class MeanSquaredError(Loss):
    """mean over K of ``(y_pred - y_true)**2``."""

    def __init__(self):
        pass

    def _per_position(self, y_true, y_pred):
        error = y_pred - y_true
        return np.mean(np.square(error), axis=-1), error * (2.0 / y_pred.shape[-1])


class MeanAbsoluteError(Loss):
    """mean over K of ``|y_pred - y_true|`` (gradient ``sign(error)``, 0 at 0)."""

    def __init__(self):
        pass

    def _per_position(self, y_true, y_pred):
        error = y_pred - y_true
        return np.mean(np.abs(error), axis=-1), np.sign(error) / y_pred.shape[-1]


class Huber(Loss):
    """mean over K of ``0.5 * e**2`` where ``|e| <= delta``, else ``delta * |e| - 0.5 * delta**2``."""

    def __init__(self, delta=1.0):
        if not delta > 0:
            raise ValueError(f"delta must be > 0, got {delta!r}")
        self.delta = float(delta)

    def _per_position(self, y_true, y_pred):
        error = y_pred - y_true
        small = np.abs(error) <= self.delta
        values = np.where(small, 0.5 * np.square(error), self.delta * np.abs(error) - 0.5 * self.delta ** 2)
        grad = np.where(small, error, self.delta * np.sign(error))
        return np.mean(values, axis=-1), grad / y_pred.shape[-1]


class BinaryCrossentropy(Loss):
    """mean over K of ``-(y log p + (1 - y) log(1 - p))``; ``p = sigmoid(y_pred)`` if ``from_logits``."""

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def _per_position(self, y_true, y_pred):
        if self.from_logits:
            # max(x, 0) - x y + log(1 + exp(-|x|))
            values = np.maximum(y_pred, 0) - y_pred * y_true + np.log1p(np.exp(-np.abs(y_pred)))
            grad = 0.5 * (1.0 + np.tanh(0.5 * y_pred)) - y_true  # sigmoid(x) - y
        else:
            p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
            values = -(y_true * np.log(p) + (1.0 - y_true) * np.log(1.0 - p))
            grad = np.where(p == y_pred, (p - y_true) / (p * (1.0 - p)), 0.0)
        return np.mean(values, axis=-1), grad / y_pred.shape[-1]


class CategoricalCrossentropy(Loss):
    """``-sum_k y_k log q_k`` with ``q = softmax(y_pred)`` if ``from_logits``, else
    ``q = clip(y_pred / sum(y_pred), 1e-7, 1 - 1e-7)``."""

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def _per_position(self, y_true, y_pred):
        if self.from_logits:
            shifted = y_pred - np.max(y_pred, axis=-1, keepdims=True)
            log_q = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
            # dL/dx = softmax(x) * sum(y) - y
            grad = np.exp(log_q) * np.sum(y_true, axis=-1, keepdims=True) - y_true
            return -np.sum(y_true * log_q, axis=-1), grad
        total = np.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / total
        q_clipped = np.clip(q, EPSILON, 1.0 - EPSILON)
        # a = dL/dq (zero where clipped); dq_k/dp_j = (delta_kj - q_k) / total
        a = np.where(q_clipped == q, -y_true / q_clipped, 0.0)
        grad = (a - np.sum(a * q, axis=-1, keepdims=True)) / total
        return -np.sum(y_true * np.log(q_clipped), axis=-1), grad


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """CategoricalCrossentropy with ``y_true: [N, ...]`` integer class ids instead of one-hot rows."""

    sparse = True

    def _per_position(self, y_true, y_pred):
        one_hot = (y_true[..., None] == np.arange(y_pred.shape[-1])).astype(y_pred.dtype)
        return super()._per_position(one_hot, y_pred)


_CLASSES = {cls.__name__: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy,
                                          CategoricalCrossentropy, SparseCategoricalCrossentropy)}
_NAMES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
          "mean_absolute_error": MeanAbsoluteError, "huber": Huber, "binary_crossentropy": BinaryCrossentropy,
          "categorical_crossentropy": CategoricalCrossentropy,
          "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}


def serialize(loss: Loss) -> dict:
    return serialize_object(loss)


def deserialize(data: dict) -> Loss:
    return deserialize_object(data, _CLASSES, "loss")


def get(identifier) -> Loss:
    """A loss from a name ("mse", "sparse_categorical_crossentropy", ...), ``serialize``'s output
    or a Loss instance. Names give Keras' defaults (``from_logits=False``, ``delta=1.0``)."""
    return get_object(identifier, _NAMES, _CLASSES, Loss, "loss")
