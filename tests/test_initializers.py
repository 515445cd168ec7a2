"""rnnkit.initializers: shapes, dtypes, Keras' formulas (bounds and spreads), reproducibility, configs."""

import json
import math

import numpy as np
import pytest

import rnnkit.random
from rnnkit import initializers

NAMES = ["zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal", "variance_scaling",
         "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
         "orthogonal", "uniform_pytorch"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_reproducibility(name, dtype):
    init = initializers.get(name)
    rnnkit.random.set_seed(7)
    first = init((6, 4), dtype, fan=4)
    assert first.shape == (6, 4) and first.dtype == dtype and np.isfinite(first).all()
    rnnkit.random.set_seed(7)
    np.testing.assert_array_equal(init((6, 4), dtype, fan=4), first)
    rnnkit.random.set_seed(7)  # both dtypes draw the same numbers
    np.testing.assert_array_equal(init((6, 4), np.float64, fan=4).astype(dtype), first)


@pytest.mark.parametrize(("name", "limit"), [
    ("glorot_uniform", math.sqrt(6 / (200 + 300))),
    ("he_uniform", math.sqrt(6 / 200)),
    ("lecun_uniform", math.sqrt(3 / 200)),
    ("random_uniform", 0.05),
])
def test_uniform_bounds(name, limit):
    rnnkit.random.set_seed(0)
    values = initializers.get(name)((200, 300), np.float64)
    assert np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.99 * limit  # the whole range is used
    assert math.isclose(values.std(), limit / math.sqrt(3), rel_tol=0.02)


@pytest.mark.parametrize(("name", "stddev"), [
    ("glorot_normal", math.sqrt(2 / (200 + 300))),
    ("he_normal", math.sqrt(2 / 200)),
    ("lecun_normal", math.sqrt(1 / 200)),
])
def test_truncated_variance_scaling_keeps_the_variance(name, stddev):
    """Keras divides by 0.8796 (the std of a unit normal cut at 2) so the variance is scale / n."""
    rnnkit.random.set_seed(0)
    values = initializers.get(name)((200, 300), np.float64)
    assert math.isclose(values.std(), stddev, rel_tol=0.02)
    assert np.abs(values).max() <= 2 * stddev / 0.87962566103423978


def test_truncated_normal_and_random_normal():
    rnnkit.random.set_seed(0)
    values = initializers.TruncatedNormal(mean=1.0, stddev=0.5)((100, 100))
    assert np.abs(values - 1.0).max() <= 1.0
    normal = initializers.RandomNormal(stddev=2.0)((100, 100), np.float64)
    assert math.isclose(normal.std(), 2.0, rel_tol=0.03) and np.abs(normal).max() > 4.0


def test_variance_scaling_fans_for_more_dimensions():
    rnnkit.random.set_seed(0)
    values = initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform")((3, 50, 40), np.float64)
    limit = math.sqrt(3 * 2.0 / (40 * 3))  # fan_out = shape[-1] * receptive field
    assert values.shape == (3, 50, 40) and np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.99 * limit
    with pytest.raises(ValueError, match="mode must be one of"):
        initializers.VarianceScaling(mode="fan")


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (2, 3, 6)])
def test_orthogonal(shape):
    rnnkit.random.set_seed(0)
    q = initializers.Orthogonal(gain=2.0)(shape, np.float64).reshape(-1, shape[-1])
    gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(q.shape)), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        initializers.Orthogonal()((4,))


def test_uniform_pytorch_uses_fan():
    rnnkit.random.set_seed(0)
    values = initializers.get("uniform_pytorch")((400, 16), np.float64, fan=16)
    assert np.abs(values).max() <= 0.25 and np.abs(values).max() > 0.249
    with pytest.raises(ValueError, match="uniform_pytorch needs fan > 0"):
        initializers.get("uniform_pytorch")((4, 4))


def test_constants():
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(initializers.get("ones")(4, np.float64), np.ones(4))
    np.testing.assert_array_equal(initializers.Constant(0.5)((2,)), [0.5, 0.5])


def test_serialize_deserialize_and_get():
    for name in NAMES:
        init = initializers.get(name)
        data = json.loads(json.dumps(initializers.serialize(init)))
        rebuilt = initializers.deserialize(data)
        assert type(rebuilt) is type(init) and rebuilt.get_config() == init.get_config()
    assert initializers.serialize(initializers.Orthogonal(gain=3.0)) == {"class_name": "Orthogonal",
                                                                         "config": {"gain": 3.0}}
    assert initializers.get(initializers.serialize(initializers.RandomUniform(-1, 2))).maxval == 2.0
    init = initializers.HeNormal()
    assert initializers.get(init) is init and initializers.get("Glorot_Uniform").get_config() == {}
    with pytest.raises(ValueError, match=r"unknown initializer 'xavier'; known names: \['constant'"):
        initializers.get("xavier")
    with pytest.raises(ValueError, match="unknown initializer class 'Xavier'"):
        initializers.deserialize({"class_name": "Xavier", "config": {}})
    with pytest.raises(TypeError, match="floating dtype"):
        initializers.get("zeros")((2,), np.int32)
