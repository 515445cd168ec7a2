"""Differentiable tensor operations for custom layers, cells and models (Keras' ``keras.ops`` names).

Every function takes ndarrays, Python numbers, rnnkit tensors and variables (and, in a functional model under
construction, symbolic tensors: the call becomes a node of the graph). On plain arrays it is the NumPy
computation and returns an ndarray; given a tensor it returns a tensor, and while gradients are recorded (a
model's training step) it records its backward on the tape. Each backward is checked against central finite
differences in float64 (tests/test_ops.py).

Integer and boolean results (``argmax``, ``one_hot``, comparisons, ``shape``) carry no gradient.
"""

from __future__ import annotations

import builtins
import functools

import numpy as np

from .engine.calls import any_symbolic
from .engine.tape import Node, Tensor, Variable, is_recording, tracked, value_of

__all__ = ["matmul", "add", "subtract", "multiply", "divide", "negative", "power", "relu", "tanh", "sigmoid",
           "softmax", "exp", "log", "sqrt", "square", "abs", "sum", "mean", "max", "min", "concatenate", "stack",
           "split", "reshape", "transpose", "expand_dims", "squeeze", "repeat", "broadcast_to", "zeros", "ones",
           "zeros_like", "ones_like", "shape", "cast", "where", "clip", "maximum", "minimum", "one_hot", "argmax",
           "less", "less_equal", "greater", "greater_equal", "equal", "take_slice", "convert_to_tensor",
           "convert_to_numpy"]


def _op(fn):
    """Symbolic tensors among the arguments make the call a node of the functional graph under construction."""

    @functools.wraps(fn)
    def op(*args, **kwargs):
        if any_symbolic(args) or any_symbolic(kwargs.values()):
            from .engine.functional import symbolic_op

            return symbolic_op(op, args, kwargs)
        return fn(*args, **kwargs)

    return op


def _apply(forward, backward, *args, name=""):
    """forward(*values) -> y; backward(g, y, *values) -> one gradient per argument (None: none). The result is an
    ndarray when no argument is a tensor (or a variable while recording), else a tensor."""
    values = [value_of(a) for a in args]
    y = forward(*values)
    if not builtins.any(isinstance(a, Tensor) for a in args) and not (
            is_recording() and builtins.any(isinstance(a, Variable) for a in args)):
        return y
    inputs = [tracked(a) for a in args]
    if not is_recording() or backward is None or builtins.all(t is None for t in inputs):
        return Tensor(y)
    return Tensor(y, Node(inputs, lambda g, sink: backward(g, y, *values), name=name))


def _constant(forward, *args):
    """A result with no gradient (integers, booleans): a tensor when an argument is one."""
    return _apply(forward, None, *args)


def _unbroadcast(g, shape):
    """g summed over the axes that broadcasting added to an operand of ``shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _shape(v):
    return np.shape(v)


# ---- arithmetic ----------------------------------------------------------------------------------------
@_op
def add(x1, x2):
    return _apply(np.add, lambda g, y, a, b: (_unbroadcast(g, _shape(a)), _unbroadcast(g, _shape(b))), x1, x2,
                  name="add")


@_op
def subtract(x1, x2):
    return _apply(np.subtract, lambda g, y, a, b: (_unbroadcast(g, _shape(a)), _unbroadcast(-g, _shape(b))),
                  x1, x2, name="subtract")


@_op
def multiply(x1, x2):
    return _apply(np.multiply, lambda g, y, a, b: (_unbroadcast(g * b, _shape(a)), _unbroadcast(g * a, _shape(b))),
                  x1, x2, name="multiply")


@_op
def divide(x1, x2):
    return _apply(np.divide,
                  lambda g, y, a, b: (_unbroadcast(g / b, _shape(a)), _unbroadcast(-g * y / b, _shape(b))),
                  x1, x2, name="divide")


@_op
def negative(x):
    return _apply(np.negative, lambda g, y, a: (-g,), x, name="negative")


@_op
def power(x1, x2):
    """x1 ** x2; the gradient reaches both (the exponent's needs x1 > 0 where it is used)."""
    def backward(g, y, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            db = g * y * np.log(np.where(np.asarray(a) > 0, a, 1))
        b1 = b - 1 if isinstance(b, (int, float)) else np.asarray(b) - 1  # a Python number keeps a's dtype
        return _unbroadcast(g * b * np.power(a, b1), _shape(a)), _unbroadcast(db, _shape(b))
    return _apply(np.power, backward, x1, x2, name="power")


@_op
def matmul(x1, x2):
    """x1 @ x2 (NumPy's rules: 1-D operands, batched leading axes)."""
    return _apply(np.matmul, _matmul_backward, x1, x2, name="matmul")


def _matmul_backward(g, y, a, b):
    a, b = np.asarray(a), np.asarray(b)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if b.ndim == 1:  # restore the output's axes in reverse (a 0-d g when both operands are 1-D)
        g2 = np.expand_dims(g2, -1)
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    da = g2 @ np.swapaxes(b2, -1, -2)
    if b2.ndim == 2 and a2.ndim > 2:  # x: [..., C] @ W: [C, H]: one product over every leading row
        db = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
    else:
        db = np.swapaxes(a2, -1, -2) @ g2
    return _unbroadcast(da, a2.shape).reshape(a.shape), _unbroadcast(db, b2.shape).reshape(b.shape)


@_op
def maximum(x1, x2):
    """Elementwise maximum; where they tie the gradient goes to x1."""
    return _apply(np.maximum, lambda g, y, a, b: (_unbroadcast(g * (a >= b), _shape(a)),
                                                  _unbroadcast(g * (a < b), _shape(b))), x1, x2, name="maximum")


@_op
def minimum(x1, x2):
    """Elementwise minimum; where they tie the gradient goes to x1."""
    return _apply(np.minimum, lambda g, y, a, b: (_unbroadcast(g * (a <= b), _shape(a)),
                                                  _unbroadcast(g * (a > b), _shape(b))), x1, x2, name="minimum")


# ---- elementwise functions -----------------------------------------------------------------------------
def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(z, np.float32), copy=False)


@_op
def relu(x):
    return _apply(lambda a: np.maximum(a, 0), lambda g, y, a: (g * (a > 0),), x, name="relu")


@_op
def tanh(x):
    return _apply(np.tanh, lambda g, y, a: (g * (1 - y * y),), x, name="tanh")


@_op
def sigmoid(x):
    return _apply(_sigmoid, lambda g, y, a: (g * y * (1 - y),), x, name="sigmoid")


@_op
def softmax(x, axis=-1):
    def forward(a):
        e = np.exp(a - np.max(a, axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return _apply(forward, lambda g, y, a: (y * (g - (g * y).sum(axis=axis, keepdims=True)),), x, name="softmax")


@_op
def exp(x):
    return _apply(np.exp, lambda g, y, a: (g * y,), x, name="exp")


@_op
def log(x):
    return _apply(np.log, lambda g, y, a: (g / a,), x, name="log")


@_op
def sqrt(x):
    return _apply(np.sqrt, lambda g, y, a: (g / (2 * y),), x, name="sqrt")


@_op
def square(x):
    return _apply(np.square, lambda g, y, a: (2 * g * a,), x, name="square")


@_op
def abs(x):  # noqa: A001 - Keras' name
    return _apply(np.abs, lambda g, y, a: (g * np.sign(a),), x, name="abs")


@_op
def clip(x, x_min, x_max):
    """x limited to [x_min, x_max]; the gradient passes where x is inside (bounds included)."""
    return _apply(lambda a: np.clip(a, x_min, x_max), lambda g, y, a: (g * ((a >= x_min) & (a <= x_max)),), x,
                  name="clip")


@_op
def where(condition, x1, x2):
    """x1 where ``condition`` holds, else x2 (broadcast together)."""
    cond = np.asarray(value_of(condition), dtype=bool)
    return _apply(lambda a, b: np.where(cond, a, b),
                  lambda g, y, a, b: (_unbroadcast(np.where(cond, g, 0), _shape(a)),
                                      _unbroadcast(np.where(cond, 0, g), _shape(b))), x1, x2, name="where")


# ---- reductions ----------------------------------------------------------------------------------------
def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(int(a) % ndim for a in axis)


def _expand(g, axis, ndim, keepdims):
    """g with the reduced ``axis`` restored as size-1 axes."""
    return g if keepdims else np.expand_dims(g, _axes(axis, ndim))


@_op
def sum(x, axis=None, keepdims=False):  # noqa: A001
    return _apply(lambda a: np.sum(a, axis=_tuple(axis), keepdims=keepdims),
                  lambda g, y, a: (np.broadcast_to(_expand(g, axis, np.ndim(a), keepdims), np.shape(a)),), x,
                  name="sum")


@_op
def mean(x, axis=None, keepdims=False):
    def backward(g, y, a):
        count = int(np.prod([np.shape(a)[i] for i in _axes(axis, np.ndim(a))], dtype=np.int64))  # keeps g's dtype
        return (np.broadcast_to(_expand(g, axis, np.ndim(a), keepdims) / count, np.shape(a)),)
    return _apply(lambda a: np.mean(a, axis=_tuple(axis), keepdims=keepdims), backward, x, name="mean")


def _extreme(reduce, name):
    def op(x, axis=None, keepdims=False):
        def backward(g, y, a):
            hit = a == _expand(y, axis, np.ndim(a), keepdims)  # ties share the gradient equally
            share = hit / hit.sum(axis=_tuple(axis), keepdims=True)
            return ((share * _expand(g, axis, np.ndim(a), keepdims)).astype(np.result_type(g), copy=False),)
        return _apply(lambda a: reduce(a, axis=_tuple(axis), keepdims=keepdims), backward, x, name=name)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"The {name}imum over ``axis``; tied extremes share the gradient equally."
    return _op(op)


max = _extreme(np.max, "max")  # noqa: A001
min = _extreme(np.min, "min")  # noqa: A001


def _tuple(axis):
    return tuple(axis) if isinstance(axis, list) else axis


# ---- shapes --------------------------------------------------------------------------------------------
@_op
def reshape(x, newshape):
    return _apply(lambda a: np.reshape(a, newshape), lambda g, y, a: (g.reshape(np.shape(a)),), x, name="reshape")


@_op
def transpose(x, axes=None):
    def backward(g, y, a):
        return (g.transpose(None if axes is None else np.argsort(axes)),)
    return _apply(lambda a: np.transpose(a, axes), backward, x, name="transpose")


@_op
def expand_dims(x, axis):
    return _apply(lambda a: np.expand_dims(a, axis), lambda g, y, a: (g.reshape(np.shape(a)),), x,
                  name="expand_dims")


@_op
def squeeze(x, axis=None):
    return _apply(lambda a: np.squeeze(a, _tuple(axis)), lambda g, y, a: (g.reshape(np.shape(a)),), x,
                  name="squeeze")


@_op
def broadcast_to(x, shape):
    return _apply(lambda a: np.broadcast_to(a, shape), lambda g, y, a: (_unbroadcast(g, np.shape(a)),), x,
                  name="broadcast_to")


@_op
def repeat(x, repeats, axis=None):
    """Each element repeated ``repeats`` (an int) times along ``axis`` (the flattened array for None)."""
    repeats = int(repeats)

    def backward(g, y, a):
        if axis is None:
            return (g.reshape(-1, repeats).sum(axis=1).reshape(np.shape(a)),)
        ax = axis % np.ndim(a)
        shape = np.shape(a)
        return (g.reshape(*shape[:ax], shape[ax], repeats, *shape[ax + 1:]).sum(axis=ax + 1),)
    return _apply(lambda a: np.repeat(a, repeats, axis), backward, x, name="repeat")


@_op
def concatenate(xs, axis=0):
    xs = list(xs)

    def backward(g, y, *values):
        cuts = np.cumsum([np.shape(v)[axis] for v in values])[:-1]
        return tuple(np.split(g, cuts, axis=axis))
    return _apply(lambda *values: np.concatenate(values, axis=axis), backward, *xs, name="concatenate")


@_op
def stack(xs, axis=0):
    xs = list(xs)

    def backward(g, y, *values):
        return tuple(np.moveaxis(g, axis, 0))
    return _apply(lambda *values: np.stack(values, axis=axis), backward, *xs, name="stack")


@_op
def split(x, indices_or_sections, axis=0):
    """A list of pieces of x along ``axis``: ``indices_or_sections`` equal parts, or cut before each index."""
    size = np.shape(value_of(x))[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if size % indices_or_sections:
            raise ValueError(f"indices_or_sections: {indices_or_sections} does not divide axis {axis} of size {size}")
        step = size // indices_or_sections
        cuts = list(range(step, size, step))
    else:
        cuts = list(indices_or_sections)
    bounds = [0, *cuts, size]
    ndim = np.ndim(value_of(x))
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        key = [slice(None)] * ndim
        key[axis] = slice(start, stop)
        pieces.append(take_slice(x, tuple(key)))
    return pieces


@_op
def take_slice(x, key):
    """x[key] (what ``tensor[key]`` does): basic slicing and integer-array indexing."""
    key = _index_value(key)
    basic = _is_basic(key)

    def backward(g, y, a):
        grad = np.zeros(np.shape(a), g.dtype)
        if basic:
            grad[key] += g
        else:
            np.add.at(grad, key, g)
        return (grad,)
    return _apply(lambda a: a[key], backward, x, name="getitem")


def _index_value(key):
    if isinstance(key, tuple):
        return tuple(_index_value(k) for k in key)
    key = value_of(key)
    return key


def _is_basic(key):
    parts = key if isinstance(key, tuple) else (key,)
    return builtins.all(isinstance(k, (int, np.integer, slice)) or k is None or k is Ellipsis for k in parts)


# ---- constants and conversions -----------------------------------------------------------------------
def zeros(shape, dtype="float32"):
    return np.zeros(shape, dtype)


def ones(shape, dtype="float32"):
    return np.ones(shape, dtype)


def zeros_like(x, dtype=None):
    return np.zeros(np.shape(value_of(x)), dtype or _dtype(x))


def ones_like(x, dtype=None):
    return np.ones(np.shape(value_of(x)), dtype or _dtype(x))


def _dtype(x):
    return np.asarray(value_of(x)).dtype


def shape(x):
    """The shape of x, a tuple of ints."""
    return tuple(np.shape(value_of(x)))


@_op
def cast(x, dtype):
    """x in ``dtype``; the gradient passes between floating dtypes only."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return _constant(lambda a: np.asarray(a).astype(dtype), x)
    return _apply(lambda a: np.asarray(a).astype(dtype), lambda g, y, a: (g.astype(np.asarray(a).dtype),), x,
                  name="cast")


@_op
def one_hot(x, num_classes, axis=-1, dtype="float32"):
    def forward(a):
        out = (np.asarray(a)[..., None] == np.arange(num_classes)).astype(dtype)
        return out if axis == -1 else np.moveaxis(out, -1, axis)
    return _constant(forward, x)


@_op
def argmax(x, axis=-1, keepdims=False):
    return _constant(lambda a: np.argmax(a, axis=axis, keepdims=keepdims), x)


def _comparison(ufunc, name, symbol):
    def op(x1, x2):
        return _constant(ufunc, x1, x2)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``x1 {symbol} x2``, elementwise: booleans, no gradient."
    return _op(op)


less = _comparison(np.less, "less", "<")
less_equal = _comparison(np.less_equal, "less_equal", "<=")
greater = _comparison(np.greater, "greater", ">")
greater_equal = _comparison(np.greater_equal, "greater_equal", ">=")
equal = _comparison(np.equal, "equal", "==")


def convert_to_tensor(x, dtype=None):
    """x as a tensor (a tensor or variable as it is; anything else a constant of ``dtype``)."""
    if isinstance(x, (Tensor, Variable)) or getattr(x, "_symbolic", False):
        return x if dtype is None else cast(x, dtype)
    return Tensor(np.asarray(x, dtype=dtype))


def convert_to_numpy(x):
    """The values of x as an ndarray (a copy for a tensor or a variable)."""
    return np.array(value_of(x))


# NumPy functions given a tensor run as these ops (so ``np.tanh(x)`` records its gradient too)
UFUNCS = {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "true_divide": divide,
          "negative": negative, "power": power, "matmul": matmul, "maximum": maximum, "minimum": minimum,
          "tanh": tanh, "exp": exp, "log": log, "sqrt": sqrt, "square": square, "absolute": abs, "less": less,
          "less_equal": less_equal, "greater": greater, "greater_equal": greater_equal, "equal": equal}
FUNCTIONS = {"concatenate": concatenate, "stack": stack, "split": split, "sum": sum, "mean": mean, "max": max,
             "amax": max, "min": min, "amin": min, "reshape": reshape, "transpose": transpose,
             "expand_dims": expand_dims, "squeeze": squeeze, "where": where, "clip": clip, "repeat": repeat,
             "broadcast_to": broadcast_to, "zeros_like": zeros_like, "ones_like": ones_like, "shape": shape,
             "argmax": argmax, "matmul": matmul}
