"""rnnkit.losses: values against hand computations, gradients against central finite differences."""

import math

import numpy as np
import pytest

from rnnkit import losses

N, T, K = 3, 4, 3


def _probabilities(rng, shape):
    p = rng.uniform(0.2, 1.0, shape)
    return p / p.sum(axis=-1, keepdims=True)


def make_case(name, rng, from_logits):
    """(loss, y_true, y_pred) on [N, T, K] float64, away from kinks and clipping."""
    shape = (N, T, K)
    if name in ("mse", "mae", "huber"):
        y_true = rng.standard_normal(shape)
        # |error| in [0.1, 0.8] or [1.2, 2.0]: away from mae's and huber's (delta=1) kinks
        magnitude = np.where(rng.random(shape) < 0.5, rng.uniform(0.1, 0.8, shape), rng.uniform(1.2, 2.0, shape))
        return losses.get(name), y_true, y_true + magnitude * rng.choice([-1.0, 1.0], shape)
    if name == "binary_crossentropy":
        y_true = rng.random(shape)  # soft labels are allowed
        y_pred = rng.standard_normal(shape) if from_logits else rng.uniform(0.05, 0.95, shape)
        return losses.BinaryCrossentropy(from_logits), y_true, y_pred
    labels = rng.integers(0, K, (N, T))
    y_pred = rng.standard_normal(shape) if from_logits else rng.uniform(0.2, 1.0, shape)
    if name == "categorical_crossentropy":
        return losses.CategoricalCrossentropy(from_logits), np.eye(K)[labels], y_pred
    return losses.SparseCategoricalCrossentropy(from_logits), labels, y_pred


CASES = [("mse", False), ("mae", False), ("huber", False), ("binary_crossentropy", False),
         ("binary_crossentropy", True), ("categorical_crossentropy", False), ("categorical_crossentropy", True),
         ("sparse_categorical_crossentropy", False), ("sparse_categorical_crossentropy", True)]
CASE_IDS = [f"{n}{'-logits' if lg else ''}" for n, lg in CASES]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize(("name", "from_logits"), CASES, ids=CASE_IDS)
def test_gradient_matches_central_differences(name, from_logits, masked, rng):
    loss, y_true, y_pred = make_case(name, rng, from_logits)
    mask = rng.random((N, T)) < 0.6 if masked else None
    if masked:
        mask[0, 0], mask[0, 1] = True, False
    value, grad = loss.value_and_grad(y_true, y_pred, mask)
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    h = 1e-6
    numeric = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        plus, minus = y_pred.copy(), y_pred.copy()
        plus[index] += h
        minus[index] -= h
        numeric[index] = (loss(y_true, plus, mask) - loss(y_true, minus, mask)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert value == loss(y_true, y_pred, mask)
    if masked:
        assert not grad[~mask].any()  # masked steps contribute nothing


@pytest.mark.parametrize(("name", "from_logits"), CASES, ids=CASE_IDS)
def test_masked_steps_are_excluded(name, from_logits, rng):
    loss, y_true, y_pred = make_case(name, rng, from_logits)
    mask = np.zeros((N, T), dtype=bool)
    mask[:, :2] = True
    mask[1, 2] = True
    value = loss(y_true, y_pred, mask)
    # the mean over kept steps equals the loss of the kept steps alone, as a flat batch
    assert math.isclose(value, loss(y_true[mask], y_pred[mask]), rel_tol=1e-13)
    garbage = y_pred.copy()
    garbage[~mask] = 0.5 if name != "categorical_crossentropy" else 0.3
    assert loss(y_true, garbage, mask) == value
    none_kept, grad = loss.value_and_grad(y_true, y_pred, np.zeros((N, T), dtype=bool))
    assert none_kept == 0.0 and not grad.any()


def test_values_against_hand_computation():
    y_true = np.array([[0.0, 1.0], [2.0, -1.0]])
    y_pred = np.array([[0.5, 1.0], [0.0, 1.5]])
    # errors: [0.5, 0], [-2, 2.5]
    assert math.isclose(losses.get("mse")(y_true, y_pred), ((0.25 + 0) / 2 + (4 + 6.25) / 2) / 2)
    assert math.isclose(losses.get("mae")(y_true, y_pred), ((0.5 + 0) / 2 + (2 + 2.5) / 2) / 2)
    # huber, delta 1: 0.5*0.25, 0, 2-0.5, 2.5-0.5
    assert math.isclose(losses.get("huber")(y_true, y_pred), ((0.125 + 0) / 2 + (1.5 + 2.0) / 2) / 2)
    assert math.isclose(losses.Huber(delta=3.0)(y_true, y_pred), ((0.125 + 0) / 2 + (2.0 + 3.125) / 2) / 2)

    p = np.array([[0.8], [0.3]])
    bce = -(math.log(0.8) + math.log(0.7)) / 2  # labels 1 and 0
    assert math.isclose(losses.get("binary_crossentropy")(np.array([[1.0], [0.0]]), p), bce)
    logits = np.log(p / (1 - p))
    assert math.isclose(losses.BinaryCrossentropy(from_logits=True)(np.array([[1.0], [0.0]]), logits), bce)

    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    cce = -(math.log(0.7) + math.log(0.5)) / 2
    assert math.isclose(losses.get("categorical_crossentropy")(np.array([[0, 1, 0], [1, 0, 0]]), probs), cce)
    assert math.isclose(losses.get("sparse_categorical_crossentropy")(np.array([1, 0]), probs), cce)
    assert math.isclose(losses.get("sparse_categorical_crossentropy")(np.array([[1], [0]]), probs), cce)
    # unnormalised inputs are normalised first; logits go through log-softmax
    assert math.isclose(losses.get("categorical_crossentropy")(np.array([[0, 1, 0], [1, 0, 0]]), 4 * probs), cce)
    assert math.isclose(losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([1, 0]), np.log(probs) + 3),
                        cce)


def test_probabilities_are_clipped_like_keras():
    eps = losses.EPSILON
    value, grad = losses.get("binary_crossentropy").value_and_grad(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert math.isclose(value, -math.log(eps), rel_tol=1e-9)  # both terms clipped to log(1e-7)
    assert not grad.any()  # the clip's gradient is zero
    big_logits = np.array([[800.0, -800.0]])  # stable forms: no overflow warnings (pytest runs -W error)
    assert losses.BinaryCrossentropy(from_logits=True)(np.array([[1.0, 0.0]]), big_logits) == 0.0
    assert math.isclose(losses.CategoricalCrossentropy(from_logits=True)(np.array([[0.0, 1.0]]), big_logits), 1600.0)


def test_float32_keeps_dtype(rng):
    y_pred = rng.standard_normal((4, 3)).astype(np.float32)
    value, grad = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        np.array([0, 1, 2, 1]), y_pred)
    assert grad.dtype == np.float32 and isinstance(value, float)
    _, grad64 = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        np.array([0, 1, 2, 1]), y_pred.astype(np.float64))
    np.testing.assert_allclose(grad, grad64, rtol=1e-5, atol=1e-7)


def test_single_output_accepts_targets_without_trailing_axis():
    y_pred = np.array([[0.5], [1.0]])
    assert losses.get("mse")(np.array([0.0, 1.0]), y_pred) == losses.get("mse")(np.array([[0.0], [1.0]]), y_pred)


def test_input_errors():
    mse = losses.get("mse")
    with pytest.raises(ValueError, match="y_true contains non-finite values"):
        mse(np.array([[np.nan, 1.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"y_true has shape \(2, 3\), expected \(2, 2\)"):
        mse(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="y_pred must be a floating array"):
        mse(np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"sample_mask has shape \(3,\), expected \(2,\)"):
        mse(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"integer class ids in \[0, 3\)"):
        losses.get("sparse_categorical_crossentropy")(np.array([0, 3]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="integer class ids"):
        losses.get("sparse_categorical_crossentropy")(np.array([0.5, 1]), np.ones((2, 3)))


def test_get_and_serialize():
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("MAE"), losses.MeanAbsoluteError)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert losses.get(loss) is loss
    rebuilt = losses.get(losses.serialize(loss))
    assert isinstance(rebuilt, losses.SparseCategoricalCrossentropy) and rebuilt.from_logits
    assert losses.deserialize(losses.serialize(losses.Huber(2.0))).delta == 2.0
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; known names: \['binary_crossentropy'"):
        losses.get("hinge")
