"""rnnkit.metrics: values on hand-made batches, masks, and how "accuracy" is resolved."""

import math

import numpy as np
import pytest

from rnnkit import losses, metrics

PROBS = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])
LABELS = np.array([1, 1, 2, 0])  # argmax hits rows 0, 2, 3


def test_categorical_and_sparse_accuracy():
    assert metrics.get("sparse_categorical_accuracy")(LABELS, PROBS) == 0.75
    assert metrics.get("categorical_accuracy")(np.eye(3)[LABELS], PROBS) == 0.75
    assert metrics.get("sparse_categorical_accuracy")(LABELS[:, None], PROBS) == 0.75


def test_binary_accuracy_is_a_mean_over_the_last_axis():
    y_true = np.array([[1.0, 0.0], [0.0, 0.0]])
    y_pred = np.array([[0.9, 0.6], [0.2, 0.4]])  # row 0: one of two right, row 1: both
    assert metrics.get("binary_accuracy")(y_true, y_pred) == 0.75


@pytest.mark.parametrize(("loss", "y_true", "y_pred", "expected"), [
    ("sparse_categorical_crossentropy", LABELS, PROBS, 0.75),
    ("categorical_crossentropy", np.eye(3)[LABELS], PROBS, 0.75),
    ("binary_crossentropy", np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.9, 0.6], [0.2, 0.7]]), 0.75),
    (losses.BinaryCrossentropy(from_logits=True), np.array([[1.0], [0.0]]), np.array([[0.3], [-0.2]]), 1.0),
])
def test_accuracy_follows_the_loss(loss, y_true, y_pred, expected):
    metric = metrics.get("accuracy", loss=loss)
    assert metric.name == "accuracy"
    assert metric(y_true, y_pred) == expected


def test_accuracy_from_shapes_without_a_loss():
    acc = metrics.get("acc")
    assert acc.name == "acc"
    assert acc(LABELS, PROBS) == 0.75  # one axis fewer: sparse
    assert acc(np.eye(3)[LABELS], PROBS) == 0.75  # same shape: categorical
    assert acc(np.array([[1.0], [1.0]]), np.array([[0.9], [0.4]])) == 0.5  # K == 1: binary, threshold 0.5


def test_masked_sequence_accuracy():
    y_pred = np.stack([PROBS, PROBS[::-1]])  # [N=2, T=4, K=3]
    y_true = np.stack([LABELS, LABELS])
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    # kept: row 0 steps 0, 1 (hit, miss); row 1 argmax [0, 2, 0, 1] vs [1, 1, 2, 0]: all miss
    assert math.isclose(metrics.get("accuracy", loss="sparse_categorical_crossentropy")(y_true, y_pred, mask), 1 / 6)


def test_mae_and_mse_values_and_mask():
    y_true = np.array([[0.0, 1.0], [2.0, -1.0]])
    y_pred = np.array([[0.5, 1.0], [0.0, 1.5]])
    assert math.isclose(metrics.get("mae")(y_true, y_pred), (0.25 + 2.25) / 2)
    assert math.isclose(metrics.get("mean_squared_error")(y_true, y_pred), (0.125 + 5.125) / 2)
    assert math.isclose(metrics.get("mse")(y_true, y_pred, np.array([True, False])), 0.125)
    assert metrics.get("mse").name == "mse"


def test_get_errors_and_instances():
    metric = metrics.get("mae")
    assert metrics.get(metric) is metric
    with pytest.raises(ValueError, match=r"unknown metric 'f1'; known names: \['acc', 'accuracy', 'binary_accuracy'"):
        metrics.get("f1")
    with pytest.raises(TypeError, match="metric must be a name"):
        metrics.get(1)
    with pytest.raises(ValueError, match="y_true has shape"):
        metrics.get("categorical_accuracy")(np.zeros((4, 2)), PROBS)
