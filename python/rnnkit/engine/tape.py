"""Eager tensors, variables and the tape that differentiates them.

A ``Tensor`` holds an ndarray (``value``) and, while gradients are recorded (``recording()``), the ``Node`` that
made it. Operations on tensors (the operators ``+ - * / @ -x x[...]``, ``rnnkit.ops`` and the NumPy functions that
``rnnkit.ops`` names) return tensors; a layer with a ``backward`` of its own (every built-in layer) is one node
whose backward is the layer's. ``gradients(outputs, output_grads)`` walks the nodes from the outputs back, in the
reverse of the order they were made, summing the gradients that reach each tensor, and returns the gradient of
every weight it reached (by the weight array's ``id``). A weight used twice (a shared layer) gets the sum.

A ``Variable`` is a weight a user's layer made with ``add_weight``: its ``value`` is the array in the layer's
``weights``. Outside ``recording()`` it behaves as that array; inside it, every operation reading it records it
as a leaf whose gradient is the weight's.

A NumPy function the tape cannot see, given a tensor that gradients flow through, is a TypeError naming it (a
silently missing gradient would be worse): use ``rnnkit.ops`` instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools

import numpy as np

__all__ = ["Tensor", "Variable", "Node", "recording", "is_recording", "gradients", "value_of", "as_tensor"]

_RECORDING = contextvars.ContextVar("rnnkit_recording", default=None)  # None, or {id(weight array): leaf Tensor}
_ids = itertools.count()


@contextlib.contextmanager
def recording():
    """Operations on tensors inside this block are recorded for ``gradients``."""
    token = _RECORDING.set({})
    try:
        yield
    finally:
        _RECORDING.reset(token)


@contextlib.contextmanager
def not_recording():
    """Nothing inside this block is recorded (an inner ``predict``, a shape trial)."""
    token = _RECORDING.set(None)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def is_recording():
    return _RECORDING.get() is not None


class Node:
    """One recorded operation: ``inputs`` (tensors, in the order ``backward`` returns their gradients) and
    ``backward(output_grads, sink) -> input grads`` (one per input, None for none); ``sink(weight, grad)`` takes a
    weight array's gradient directly (a layer node's weights). ``n_outputs`` tensors carry this node."""

    __slots__ = ("id", "inputs", "backward", "n_outputs", "weight", "name")

    def __init__(self, inputs, backward, n_outputs=1, weight=None, name=""):
        self.id = next(_ids)
        self.inputs, self.backward, self.n_outputs, self.weight, self.name = inputs, backward, n_outputs, weight, name


class Operand:
    """What tensors, variables and symbolic tensors share: array attributes read from ``value``, the operators
    (``rnnkit.ops``), and NumPy's functions dispatched to ``rnnkit.ops`` (a TypeError naming those it has not)."""

    __slots__ = ()
    __array_priority__ = 1000

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)

    def __len__(self):
        return len(self.value)

    def numpy(self):
        return np.array(self.value)

    @property
    def T(self):
        return _ops().transpose(self)

    def _converts(self):
        """True when handing the values to NumPy loses no gradient."""
        return True

    def __array__(self, dtype=None, copy=None):
        if not self._converts():
            raise TypeError(_untracked("numpy.asarray (or another function that converts it to an ndarray)"))
        return self.value if dtype is None else self.value.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _dispatch_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _dispatch_function(func, args, kwargs)

    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().subtract(self, other)
    def __rsub__(self, other): return _ops().subtract(other, self)
    def __mul__(self, other): return _ops().multiply(self, other)
    def __rmul__(self, other): return _ops().multiply(other, self)
    def __truediv__(self, other): return _ops().divide(self, other)
    def __rtruediv__(self, other): return _ops().divide(other, self)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __pow__(self, other): return _ops().power(self, other)
    def __neg__(self): return _ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().abs(self)
    def __getitem__(self, key): return _ops().take_slice(self, key)
    def __lt__(self, other): return _ops().less(self, other)
    def __le__(self, other): return _ops().less_equal(self, other)
    def __gt__(self, other): return _ops().greater(self, other)
    def __ge__(self, other): return _ops().greater_equal(self, other)


class Tensor(Operand):
    """An eager tensor: ``value`` (ndarray), the ``Node`` that made it (None for a constant or an input), the
    output ``index`` of that node, and Keras' ``_keras_mask`` ([N, T] bool or None) for the layers after it."""

    __slots__ = ("value", "node", "index", "_keras_mask")

    def __init__(self, value, node=None, index=0, mask=None):
        self.value = value if isinstance(value, np.ndarray) else np.asarray(value)
        self.node, self.index, self._keras_mask = node, index, mask

    def _converts(self):
        return self.node is None

    def __repr__(self):
        return f"<rnnkit.Tensor shape={self.value.shape} dtype={self.value.dtype}>\n{self.value!r}"

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    def __iter__(self):
        return (self[i] for i in range(len(self.value)))


class Variable(Operand):
    """A weight made by ``Layer.add_weight``: ``value`` is the layer's array (updated in place by optimizers).
    Reads as that array outside ``recording()``; inside it, as a leaf tensor whose gradient is the weight's."""

    __slots__ = ("value", "name", "trainable", "path")

    def __init__(self, value, name, trainable=True, path=None):
        self.value, self.name, self.trainable, self.path = value, name, trainable, path or name

    def _converts(self):
        return not (self.trainable and is_recording())

    def assign(self, value):
        """Writes ``value`` into the weight, in place (its shape must be the weight's)."""
        value = np.asarray(value_of(value))
        if value.shape != self.value.shape:
            raise ValueError(f"value: variable {self.path!r} has shape {self.value.shape}, got {value.shape}")
        self.value[...] = value

    def assign_add(self, value):
        self.assign(self.value + np.asarray(value_of(value)))

    def assign_sub(self, value):
        self.assign(self.value - np.asarray(value_of(value)))

    def __repr__(self):
        return f"<rnnkit.Variable path={self.path!r} shape={self.value.shape} dtype={self.value.dtype}>"


def _ops():
    from .. import ops

    return ops


def value_of(x):
    """The ndarray (or other value) behind a Tensor or Variable; anything else as it is."""
    return x.value if isinstance(x, (Tensor, Variable)) else x


def as_tensor(x):
    """x as a Tensor: a Tensor as it is; a Variable as its recorded leaf (or a constant tensor outside
    ``recording()``); anything else a constant tensor."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Variable):
        return _leaf(x) or Tensor(x.value)
    return Tensor(np.asarray(x))


def tracked(x):
    """The tensor that gradients flow to for argument ``x``, or None (a constant)."""
    if isinstance(x, Tensor):
        return x if x.node is not None else None
    if isinstance(x, Variable):
        return _leaf(x)
    return None


def _leaf(variable):
    leaves = _RECORDING.get()
    if leaves is None or not variable.trainable:
        return None
    leaf = leaves.get(id(variable.value))
    if leaf is None:
        weight = variable.value
        leaf = leaves[id(weight)] = Tensor(weight, Node((), None, weight=weight, name=variable.path))
    return leaf


def gradients(outputs, output_grads, wrt=()):
    """The gradient of ``sum(output_grads[i] * outputs[i])``: {id(weight array): (weight, gradient)} for every
    weight reached, and the gradients of the tensors in ``wrt`` (a list, None where nothing reached one)."""
    pending = {}  # node -> [grad per output]
    order = {}
    stack = []
    for out, g in zip(outputs, output_grads):
        if out is None or g is None or not isinstance(out, Tensor) or out.node is None:
            continue
        _accumulate(pending, out.node, out.index, g)
        stack.append(out.node)
    while stack:  # every node the outputs depend on
        node = stack.pop()
        if node.id in order:
            continue
        order[node.id] = node
        stack.extend(t.node for t in node.inputs if t is not None and t.node is not None)
    weights = {}
    wanted = {id(t.node): None for t in wrt if isinstance(t, Tensor) and t.node is not None}

    def sink(weight, grad):
        key = id(weight)
        weights[key] = (weight, grad if key not in weights else weights[key][1] + grad)

    found = {}
    for node_id in sorted(order, reverse=True):
        node = order[node_id]
        grads = pending.pop(node, None)
        if grads is None:
            continue
        if id(node) in wanted:
            found[id(node)] = grads
        if node.weight is not None:
            sink(node.weight, grads[0])
            continue
        in_grads = node.backward(grads if node.n_outputs > 1 else grads[0], sink)
        for t, g in zip(node.inputs, in_grads):
            if t is not None and g is not None and t.node is not None:
                _accumulate(pending, t.node, t.index, g)
    wrt_grads = [found.get(id(t.node), [None] * (t.index + 1))[t.index] if isinstance(t, Tensor) and t.node
                 else None for t in wrt]
    return weights, wrt_grads


def _accumulate(pending, node, index, grad):
    slots = pending.get(node)
    if slots is None:
        slots = pending[node] = [None] * node.n_outputs
    slots[index] = grad if slots[index] is None else slots[index] + grad


def _untracked(what):
    return (f"{what} was given an rnnkit tensor that gradients flow through; the tape cannot see NumPy functions, "
            "so the gradient would be lost. Use the rnnkit.ops function of the same name (e.g. rnnkit.ops.matmul, "
            "rnnkit.ops.concatenate), the operators + - * / @ and indexing, or call it outside training")


def _dispatch_ufunc(ufunc, method, inputs, kwargs):
    from .. import ops

    op = ops.UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
    if op is None:
        if not any(tracked(x) is not None for x in inputs):  # nothing to differentiate: plain NumPy
            return getattr(ufunc, method)(*(value_of(x) for x in inputs), **kwargs)
        raise TypeError(_untracked(f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")))
    return op(*inputs)


def _dispatch_function(func, args, kwargs):
    from .. import ops

    op = ops.FUNCTIONS.get(func.__name__)
    if op is None:
        flat = []
        _flatten((args, kwargs), flat)
        if not any(tracked(x) is not None for x in flat):
            return func(*_map(value_of, args), **_map(value_of, kwargs))
        raise TypeError(_untracked(f"numpy.{func.__name__}"))
    return op(*args, **kwargs)


def _flatten(x, out):
    if isinstance(x, (list, tuple)):
        for item in x:
            _flatten(item, out)
    elif isinstance(x, dict):
        for item in x.values():
            _flatten(item, out)
    else:
        out.append(x)


def _map(fn, x):
    if isinstance(x, list):
        return [_map(fn, i) for i in x]
    if isinstance(x, tuple):
        return tuple(_map(fn, i) for i in x)
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    return fn(x)
