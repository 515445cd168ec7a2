"""Metrics: ``metric(y_true, y_pred, sample_mask=None) -> float``, the mean over the batch.

    metric = rnnkit.metrics.get("accuracy", loss="sparse_categorical_crossentropy")
    metric.name                                   # "accuracy": the key for the training logs
    value = metric(y_true, y_pred, sample_mask)   # y_pred: [N, ..., K], sample_mask: [N, ...] bool

Each position ``[N, ...]`` scores the mean over the last axis (binary accuracy, mae, mse) or one
value (categorical accuracies); the metric is the mean over the positions kept by
``sample_mask``, like the losses (``rnnkit.losses.masked_mean``). Metrics pickle (their per-position
functions are module-level functions or ``functools.partial`` of them, never closures).

``"accuracy"`` (or ``"acc"``) picks its variant from the loss when one is given, as Keras'
compile does: binary crossentropy -> binary accuracy (threshold 0.5, or 0.0 on logits when the
loss has ``from_logits=True``), sparse categorical -> sparse categorical accuracy, categorical
-> categorical accuracy. Without a loss it decides from the shapes, as Keras 3 does: K == 1 ->
binary; ``y_true`` with one axis fewer or a trailing 1 -> sparse; otherwise categorical.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import losses

__all__ = ["Metric", "get"]


def _binary_accuracy(y_true, y_pred, threshold):
    return np.mean(y_true == (y_pred > threshold), axis=-1)


def _binary(threshold):
    return partial(_binary_accuracy, threshold=threshold)


def _categorical(y_true, y_pred):
    return np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)


def _sparse(y_true, y_pred):
    return y_true == np.argmax(y_pred, axis=-1)


class Metric:
    """``per_position(y_true, y_pred) -> [N, ...]`` averaged over the kept positions; the arrays are
    first validated as ``check_with``'s (a Loss) inputs are."""

    def __init__(self, name, per_position, check_with):
        self.name = name
        self._per_position = per_position
        self._loss = check_with

    def __call__(self, y_true, y_pred, sample_mask=None) -> float:
        y_true, y_pred = self._loss._check(y_true, y_pred)
        values = np.asarray(self._per_position(y_true, y_pred), dtype=y_pred.dtype)
        return losses.masked_mean(values, sample_mask)[0]

    def __repr__(self):
        return f"<rnnkit.metrics.Metric {self.name!r}>"


def _accuracy_for_loss(loss):
    """(per_position, loss used for validation) for "accuracy" given the model's loss."""
    if isinstance(loss, losses.BinaryCrossentropy):
        return _binary(0.0 if loss.from_logits else 0.5), losses.BinaryCrossentropy()
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return _sparse, losses.SparseCategoricalCrossentropy()
    if isinstance(loss, losses.CategoricalCrossentropy):
        return _categorical, losses.CategoricalCrossentropy()
    return None


class _ShapeAccuracy(Metric):
    """Keras 3's "accuracy" without a loss to go by: the variant is chosen from the shapes."""

    def __init__(self, name):
        super().__init__(name, None, None)

    def __call__(self, y_true, y_pred, sample_mask=None):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_pred.shape[-1] == 1:
            loss = losses.BinaryCrossentropy()
        elif y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
            loss = losses.SparseCategoricalCrossentropy()
        else:
            loss = losses.CategoricalCrossentropy()
        return Metric(self.name, *_accuracy_for_loss(loss))(y_true, y_pred, sample_mask)


def _loss_per_position(y_true, y_pred, loss):
    return loss._per_position(y_true, y_pred)[0]


def _loss_values(name):
    """A loss' per-position values as a metric ("mae", "mse")."""
    loss = losses.get(name)
    return partial(_loss_per_position, loss=loss), loss


_METRICS = {  # name -> () -> (per_position, loss used for validation)
    "binary_accuracy": lambda: (_binary(0.5), losses.BinaryCrossentropy()),
    "categorical_accuracy": lambda: (_categorical, losses.CategoricalCrossentropy()),
    "sparse_categorical_accuracy": lambda: (_sparse, losses.SparseCategoricalCrossentropy()),
    **{name: partial(_loss_values, name) for name in ("mae", "mean_absolute_error", "mse", "mean_squared_error")},
}


def get(identifier, loss=None) -> Metric:
    """A metric from its name ("accuracy"/"acc", "binary_accuracy", "categorical_accuracy",
    "sparse_categorical_accuracy", "mae", "mse", and the long names of the last two) or a Metric
    (returned as is). ``loss`` (a name or Loss) resolves "accuracy"; ``metric.name`` is ``identifier``."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name or a Metric, got {type(identifier).__name__}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        resolved = None if loss is None else _accuracy_for_loss(losses.get(loss))
        return Metric(identifier, *resolved) if resolved else _ShapeAccuracy(identifier)
    if key not in _METRICS:
        raise ValueError(f"unknown metric {identifier!r}; known names: {sorted(['accuracy', 'acc', *_METRICS])}")
    return Metric(identifier, *_METRICS[key]())
