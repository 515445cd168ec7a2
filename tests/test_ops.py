"""rnnkit.ops and the tape: every backward against central finite differences in float64, the Tensor operators
and the NumPy functions that run as ops, the NumPy functions the tape cannot see (a TypeError), the ops without
a gradient, and the types and dtypes of results."""

import numpy as np
import pytest

from helpers import central_differences
from rnnkit import ops
from rnnkit.engine import tape

M = np.random.default_rng(7).standard_normal((5, 3))  # a constant operand (ndarray @ tensor)
COND = np.random.default_rng(8).standard_normal((3, 4)) > 0


def make(rng, spec):
    """A float64 array: spec is a shape, or (shape, kind) with kind "pos" (in [0.5, 2]), "away" (|x| in
    [0.3, 1.5], away from 0) or "clip" (near -1, 0 or 1: away from the bounds +-0.5)."""
    shape, kind = spec if isinstance(spec, tuple) and isinstance(spec[-1], str) else (spec, "n")
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "away":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)
    if kind == "clip":
        return rng.choice([-1.0, 0.0, 1.0], shape) + rng.uniform(-0.2, 0.2, shape)
    return rng.standard_normal(shape)


def tape_gradients(fn, arrays, seed=0):
    """(outputs as ndarrays, the random projections R, the tape's gradient of sum(R * fn(...)) for each array):
    fn runs inside recording() on a Variable per array (fn may return a tensor or a list of tensors)."""
    variables = [tape.Variable(a, f"x{i}") for i, a in enumerate(arrays)]
    with tape.recording():
        out = fn(*variables)
    outs = out if isinstance(out, list) else [out]
    assert all(isinstance(y, tape.Tensor) for y in outs)
    rng = np.random.default_rng(seed)
    projections = [rng.standard_normal(y.shape).astype(y.dtype) for y in outs]
    weights, _ = tape.gradients(outs, projections)
    return [y.value for y in outs], projections, [weights[id(a)][1] for a in arrays]


def check_gradients(fn, arrays):
    values, projections, analytic = tape_gradients(fn, arrays)

    def loss():
        out = fn(*arrays)
        outs = out if isinstance(out, list) else [out]
        assert all(isinstance(y, (np.ndarray, np.generic)) for y in outs)
        return float(sum(np.sum(r * y) for r, y in zip(projections, outs)))

    for a, g in zip(arrays, analytic):
        assert np.shape(g) == a.shape
    for g, n in zip(analytic, central_differences(loss, arrays)):
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)


def case(id, fn, *specs):
    return pytest.param(fn, specs, id=id)


REDUCTIONS = [case(f"{name}-axis{axis}-keepdims{keep}", lambda x, op=op, axis=axis, keep=keep: op(x, axis, keep),
                   (2, 3, 4))
              for name, op in [("sum", ops.sum), ("mean", ops.mean), ("max", ops.max), ("min", ops.min)]
              for axis in [None, 1, -1, (0, 2)] for keep in [False, True]]

CASES = [
    # arithmetic, with broadcasting operands
    case("add-row", ops.add, (3, 4), (4,)),
    case("add-column", ops.add, (3, 4), (3, 1)),
    case("subtract-row", ops.subtract, (3, 4), (4,)),
    case("subtract-column-first", ops.subtract, (3, 1), (3, 4)),
    case("multiply-column", ops.multiply, (3, 4), (3, 1)),
    case("multiply-leading", ops.multiply, (4,), (2, 3, 4)),
    case("multiply-same-variable", lambda a: ops.multiply(a, a), (3, 4)),
    case("divide-row", ops.divide, (3, 4), ((4,), "pos")),
    case("divide-column-first", ops.divide, (3, 1), ((3, 4), "pos")),
    case("negative", ops.negative, (3, 4)),
    case("power-both", ops.power, ((3, 4), "pos"), (3, 4)),
    case("power-row", ops.power, ((3, 4), "pos"), (4,)),
    case("power-int", lambda a: ops.power(a, 3), (3, 4)),
    case("matmul-2d", ops.matmul, (3, 4), (4, 5)),
    case("matmul-batched-weight", ops.matmul, (2, 3, 4), (4, 5)),
    case("matmul-batched-both", ops.matmul, (2, 3, 4), (2, 4, 5)),
    case("matmul-broadcast-first", ops.matmul, (3, 4), (2, 4, 5)),
    case("matmul-vector-matrix", ops.matmul, (4,), (4, 5)),
    case("matmul-matrix-vector", ops.matmul, (3, 4), (4,)),
    case("matmul-batched-vector", ops.matmul, (2, 3, 4), (4,)),
    case("matmul-vector-vector", ops.matmul, (4,), (4,)),
    case("maximum", ops.maximum, (3, 4), (3, 4)),
    case("maximum-row", ops.maximum, (3, 4), (4,)),
    case("minimum", ops.minimum, (3, 4), (3, 4)),
    case("minimum-column", ops.minimum, (3, 1), (3, 4)),
    # elementwise functions
    case("relu", ops.relu, ((3, 4), "away")),
    case("abs", ops.abs, ((3, 4), "away")),
    case("tanh", ops.tanh, (3, 4)),
    case("sigmoid", ops.sigmoid, (3, 4)),
    case("softmax-last", ops.softmax, (3, 4)),
    case("softmax-axis0", lambda x: ops.softmax(x, axis=0), (3, 4)),
    case("exp", ops.exp, (3, 4)),
    case("log", ops.log, ((3, 4), "pos")),
    case("sqrt", ops.sqrt, ((3, 4), "pos")),
    case("square", ops.square, (3, 4)),
    case("clip", lambda x: ops.clip(x, -0.5, 0.5), ((4, 5), "clip")),
    case("where", lambda a, b: ops.where(COND, a, b), (3, 4), (4,)),
    case("cast", lambda x: ops.cast(x, "float64"), (3, 4)),
    # reductions
    *REDUCTIONS,
    # shapes
    case("concatenate", lambda a, b: ops.concatenate([a, b], axis=1), (2, 3), (2, 2)),
    case("concatenate-last", lambda a, b, c: ops.concatenate([a, b, c], axis=-1), (2, 1, 3), (2, 1, 1), (2, 1, 2)),
    case("stack", lambda a, b: ops.stack([a, b]), (2, 3), (2, 3)),
    case("stack-axis1", lambda a, b: ops.stack([a, b], axis=1), (2, 3), (2, 3)),
    case("stack-last", lambda a, b, c: ops.stack([a, b, c], axis=-1), (2, 3), (2, 3), (2, 3)),
    case("split-sections", lambda x: ops.split(x, 3, axis=1), (2, 6)),
    case("split-indices", lambda x: ops.split(x, [1, 4], axis=-1), (2, 6)),
    case("split-axis0", lambda x: ops.split(x, [2], axis=0), (3, 2)),
    case("reshape", lambda x: ops.reshape(x, (3, 4)), (2, 6)),
    case("reshape-flat", lambda x: ops.reshape(x, (-1,)), (2, 3, 2)),
    case("transpose", ops.transpose, (3, 4)),
    case("transpose-axes", lambda x: ops.transpose(x, (2, 0, 1)), (2, 3, 4)),
    case("expand_dims", lambda x: ops.expand_dims(x, 1), (3, 4)),
    case("expand_dims-last", lambda x: ops.expand_dims(x, -1), (3, 4)),
    case("squeeze-axis", lambda x: ops.squeeze(x, 1), (3, 1, 4)),
    case("squeeze-all", ops.squeeze, (3, 1, 4, 1)),
    case("repeat-flat", lambda x: ops.repeat(x, 2), (2, 3)),
    case("repeat-axis1", lambda x: ops.repeat(x, 3, axis=1), (2, 3)),
    case("repeat-last", lambda x: ops.repeat(x, 2, axis=-1), (2, 3, 2)),
    case("broadcast_to", lambda x: ops.broadcast_to(x, (2, 3, 4)), (3, 1)),
    case("broadcast_to-row", lambda x: ops.broadcast_to(x, (3, 4)), (4,)),
    # take_slice through x[...]
    case("getitem-last-step", lambda x: x[:, -1], (2, 3, 4)),
    case("getitem-range", lambda x: x[:, 1:3], (2, 4, 3)),
    case("getitem-ellipsis", lambda x: x[..., 0], (2, 3, 4)),
    case("getitem-int", lambda x: x[1], (3, 4)),
    case("getitem-newaxis", lambda x: x[None, 1:], (3, 4)),
    case("getitem-repeated", lambda x: x[np.array([0, 2, 0, 0])], (3, 4)),
    case("getitem-repeated-list", lambda x: x[:, [1, 1, 3]], (3, 4)),
    case("getitem-pairs", lambda x: x[np.array([0, 1, 1]), np.array([2, 2, 2])], (3, 4)),
    # the operators record the ops
    case("op-add", lambda a, b: a + b, (3, 4), (4,)),
    case("op-subtract", lambda a, b: a - b, (3, 4), (3, 1)),
    case("op-multiply", lambda a, b: a * b, (3, 4), (4,)),
    case("op-divide", lambda a, b: a / b, (3, 4), ((3, 1), "pos")),
    case("op-matmul", lambda a, b: a @ b, (2, 3, 4), (4, 5)),
    case("op-negative", lambda a: -a, (3, 4)),
    case("op-power", lambda a: a ** 2, (3, 4)),
    case("op-rsub", lambda a: 2.0 - a, (3, 4)),
    case("op-rdiv", lambda a: 3.0 / a, ((3, 4), "pos")),
    case("op-rmul", lambda a: 2.0 * a + 1.0, (3, 4)),
    case("op-rmatmul", lambda a: M @ a, (3, 4)),
    case("op-T", lambda a: a.T, (3, 4)),
    case("op-chain", lambda a, b: -(a * b - 1.0) / (b * b + 1.0), (3, 4), (4,)),
    case("op-weight-twice", lambda W, x, z: W @ x + W @ z, (3, 4), (4, 2), (4, 2)),
    # NumPy functions given a tensor run as the ops
    case("np-tanh", np.tanh, (3, 4)),
    case("np-exp", np.exp, (3, 4)),
    case("np-maximum", np.maximum, (3, 4), (4,)),
    case("np-matmul", np.matmul, (3, 4), (4, 2)),
    case("np-concatenate", lambda a: np.concatenate([a, a], axis=1), (3, 4)),
    case("np-sum", lambda a: np.sum(a, axis=0), (3, 4)),
    case("np-mean", lambda a: np.mean(a, axis=(0, 1)), (2, 3, 4)),
    case("np-transpose", np.transpose, (3, 4)),
]


@pytest.mark.parametrize("fn, specs", CASES)
def test_gradient_matches_finite_differences(fn, specs):
    rng = np.random.default_rng(0)
    check_gradients(fn, [make(rng, s) for s in specs])


def test_operators_record_the_same_gradient_as_the_ops(rng):
    a, b = rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, 4)
    pairs = [(lambda x, y: x + y, ops.add), (lambda x, y: x - y, ops.subtract), (lambda x, y: x * y, ops.multiply),
             (lambda x, y: x / y, ops.divide), (lambda x, y: x @ ops.expand_dims(y, 1),
                                                lambda x, y: ops.matmul(x, ops.expand_dims(y, 1))),
             (lambda x, y: -x + y, lambda x, y: ops.add(ops.negative(x), y)),
             (lambda x, y: 2.0 - x * y, lambda x, y: ops.subtract(2.0, ops.multiply(x, y)))]
    for operator, op in pairs:
        _, _, by_operator = tape_gradients(operator, [a, b])
        _, _, by_op = tape_gradients(op, [a, b])
        for g, h in zip(by_operator, by_op):
            np.testing.assert_array_equal(g, h)


def test_gradients_reach_wrt_tensors(rng):
    x = rng.standard_normal((3, 4))
    with tape.recording():
        h = ops.tanh(tape.Variable(x, "x"))
        y = ops.sum(h * h)
    weights, (dh,) = tape.gradients([y], [np.float64(1.0)], wrt=[h])
    np.testing.assert_allclose(dh, 2 * np.tanh(x))
    np.testing.assert_allclose(weights[id(x)][1], 2 * np.tanh(x) * (1 - np.tanh(x) ** 2))


def test_tied_extremes_share_the_gradient():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    for op, expected in [(ops.max, [[0, 0.5, 0.5], [0.5, 0, 0.5]]), (ops.min, [[1, 0, 0], [0, 1, 0]])]:
        with tape.recording():
            y = op(tape.Variable(x, "x"), axis=1)
        weights, _ = tape.gradients([y], [np.ones(2)])
        np.testing.assert_array_equal(weights[id(x)][1], expected)


@pytest.mark.parametrize("call, name", [
    (lambda t: np.dot(t, t.T), "numpy.dot"),
    (lambda t: np.einsum("ij->i", t), "numpy.einsum"),
    (lambda t: np.cumsum(t, axis=0), "numpy.cumsum"),
    (lambda t: np.sin(t), "numpy.sin"),
    (lambda t: np.add.reduce(t), "numpy.add.reduce"),
], ids=["dot", "einsum", "cumsum", "sin", "add.reduce"])
def test_numpy_functions_the_tape_cannot_see_raise(rng, call, name):
    x = rng.standard_normal((3, 4))
    expected = call(x)
    v = tape.Variable(x, "x")
    with tape.recording():
        for t in [v, ops.tanh(v) * 1.0 + ops.zeros_like(x), v[:, :]]:
            with pytest.raises(TypeError, match=name.replace(".", r"\.")) as raised:
                call(t)
            assert "rnnkit.ops" in str(raised.value)
    np.testing.assert_allclose(call(v), expected)  # outside recording: the weight's array
    np.testing.assert_allclose(call(tape.Tensor(x)), expected)  # a constant tensor
    with tape.recording():
        np.testing.assert_allclose(call(tape.Tensor(x)), expected)  # a constant tensor inside recording


def test_asarray_of_a_tracked_tensor_raises(rng):
    x = rng.standard_normal((3, 4))
    v = tape.Variable(x, "x")
    with tape.recording():
        t = ops.exp(v)
        for tracked in [t, v]:
            with pytest.raises(TypeError, match="rnnkit.ops"):
                np.asarray(tracked)
        np.testing.assert_array_equal(np.asarray(tape.Tensor(x)), x)
    np.testing.assert_array_equal(np.asarray(v), x)


@pytest.mark.parametrize("wrap", ["ndarray", "tensor", "variable"])
def test_ops_without_gradient_match_numpy(rng, wrap):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    labels = np.array([[0, 2, 1], [3, 3, 0]])
    as_input = {"ndarray": lambda a: a, "tensor": tape.Tensor, "variable": lambda a: tape.Variable(a, "a")}[wrap]
    with tape.recording():
        X, Y, L = as_input(x), as_input(y), as_input(labels)
        results = [
            (ops.argmax(X), np.argmax(x, axis=-1)),
            (ops.argmax(X, axis=0, keepdims=True), np.argmax(x, axis=0, keepdims=True)),
            (ops.one_hot(L, 4), np.eye(4, dtype=np.float32)[labels]),
            (ops.one_hot(L, 4, axis=0), np.moveaxis(np.eye(4, dtype=np.float32)[labels], -1, 0)),
            (ops.less(X, Y), x < y), (ops.less_equal(X, Y), x <= y), (ops.greater(X, 0.0), x > 0),
            (ops.greater_equal(X, Y), x >= y), (ops.equal(X, X), x == x),
            (ops.zeros_like(X), np.zeros_like(x)), (ops.ones_like(X), np.ones_like(x)),
        ]
        if wrap == "tensor":
            results += [(X < Y, x < y), (X <= Y, x <= y), (X > Y, x > y), (X >= Y, x >= y)]
        assert ops.shape(X) == (3, 4) and ops.shape(L) == (2, 3)
    for got, expected in results:
        got = tape.value_of(got)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_result_types(rng):
    x, y = rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, (3, 4))
    unary = [ops.tanh, ops.relu, lambda a: ops.sum(a, axis=0), ops.transpose, lambda a: ops.softmax(a),
             lambda a: ops.take_slice(a, (slice(None), 0)), lambda a: ops.split(a, 2, axis=1)[0]]
    binary = [ops.add, ops.multiply, ops.divide, lambda a, b: ops.matmul(a, ops.transpose(b)), ops.maximum,
              lambda a, b: ops.concatenate([a, b]), lambda a, b: ops.stack([a, b], axis=1)]
    calls = [lambda a, b, f=f: f(a) for f in unary] + binary
    for i, call in enumerate(calls):
        assert type(call(x, y)) is np.ndarray
        assert isinstance(call(tape.Tensor(x), y), tape.Tensor)
        if i >= len(unary):
            assert isinstance(call(x, tape.Tensor(y)), tape.Tensor)
        assert type(call(tape.Variable(x, "x"), y)) is np.ndarray  # outside recording: the weight's array
        with tape.recording():
            assert isinstance(call(tape.Variable(x, "x"), y), tape.Tensor)
            assert type(call(x, y)) is np.ndarray


@pytest.mark.parametrize("fn, specs", [
    case("add", ops.add, (3, 4), (4,)), case("divide-scalar", lambda a: a / 3.0, (3, 4)),
    case("power", lambda a: a ** 2, (3, 4)), case("matmul", ops.matmul, (2, 3, 4), (4, 5)),
    case("sigmoid", ops.sigmoid, (3, 4)), case("softmax", ops.softmax, (3, 4)), case("tanh", np.tanh, (3, 4)),
    case("log", ops.log, ((3, 4), "pos")), case("sqrt", ops.sqrt, ((3, 4), "pos")),
    case("relu", ops.relu, (3, 4)), case("sum", lambda a: ops.sum(a, axis=1), (3, 4)),
    case("sum-all", ops.sum, (3, 4)), case("mean", lambda a: ops.mean(a, axis=(0, 2)), (2, 3, 4)),
    case("mean-all", ops.mean, (3, 4)), case("max", lambda a: ops.max(a, axis=0), (3, 4)),
    case("getitem", lambda a: a[np.array([0, 0, 2])], (3, 4)), case("clip", lambda a: ops.clip(a, -0.5, 0.5), (3, 4)),
    case("cast", lambda a: ops.cast(a, "float32"), (3, 4)), case("repeat", lambda a: ops.repeat(a, 2, axis=0), (3, 4)),
    case("min-all", ops.min, (3, 4)), case("where", lambda a, b: ops.where(COND, a, b), (3, 4), (4,)),
    case("power-both", ops.power, ((3, 4), "pos"), (3, 4)), case("slice", lambda a: a[:, 1:3], (3, 4)),
])
def test_float32_stays_float32(fn, specs):
    rng = np.random.default_rng(0)
    arrays = [make(rng, s).astype(np.float32) for s in specs]
    assert fn(*arrays).dtype == np.float32
    values, _, grads = tape_gradients(fn, arrays)
    assert all(v.dtype == np.float32 for v in values)
    assert all(g.dtype == np.float32 for g in grads)


def test_cast_between_float_dtypes_passes_the_gradient(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    values, projections, (g,) = tape_gradients(lambda a: ops.cast(a, "float64"), [x])
    assert values[0].dtype == np.float64 and g.dtype == np.float32
    np.testing.assert_allclose(g, projections[0].astype(np.float32))
    with tape.recording():
        y = ops.cast(tape.Variable(x, "x"), "int32")
    assert y.dtype == np.int32 and y.node is None
