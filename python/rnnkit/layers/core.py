"""Dense, Embedding, Masking, Dropout and Activation, in NumPy (batch-major, any number of leading axes); Lambda,
Identity and OpLayer, which compute with ``rnnkit.ops`` and are differentiated by the tape."""

from __future__ import annotations

import inspect
import math
import operator

import numpy as np

from .. import activations as _activations
from .. import initializers
from ..engine.functional import flatten, pack_like
from ..engine.tape import value_of
from .base import Layer, _default_name, as_float_array, get_initializer, loading
from .recurrent import _rate, dropout_mask

__all__ = ["InputLayer", "Dense", "Embedding", "Masking", "Dropout", "Activation", "Lambda", "Identity", "OpLayer", "ACTIVATIONS",
           "cast_inputs"]


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _elementwise(name):
    triple = _activations.KERAS[name]
    return (lambda z: _activations.forward(triple, z), lambda dy, z, y: dy * _activations.derivative(triple, y))


# name -> (forward(z) -> y, backward(dy, z, y) -> dz): Keras' elementwise activations (rnnkit.activations), softmax
ACTIVATIONS = {name: _elementwise(name) for name in _activations.KERAS}
ACTIVATIONS["softmax"] = (_softmax, lambda dy, z, y: y * (dy - (dy * y).sum(axis=-1, keepdims=True)))


def _activation(name):
    name = "linear" if name is None else name
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)} or None, got {name!r}")
    return name


class Dense(Layer):
    """``y = activation(x @ kernel + bias)`` over the last axis: x: [N, ..., C] -> [N, ..., units]
    (a 3-D input gets the same weights at every step). kernel: [C, units] (Keras layout); bias: [units]."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units: expected a positive integer, got {units!r}")
        self.units, self.activation, self.use_bias = int(units), _activation(activation), bool(use_bias)
        self.kernel_initializer = get_initializer("kernel_initializer", kernel_initializer)
        self.bias_initializer = get_initializer("bias_initializer", bias_initializer)

    def build(self, input_shape):
        C = input_shape[-1]
        self._add_weight("kernel", self.kernel_initializer((C, self.units), self.dtype, fan=C))
        if self.use_bias:
            self._add_weight("bias", self.bias_initializer((self.units,), self.dtype, fan=C))
        self.built = True

    def call(self, x, mask=None, training=False):
        x = as_float_array(x, self.dtype)
        z = x @ self.weights[0]
        if self.use_bias:
            z += self.weights[1]
        y = ACTIVATIONS[self.activation][0](z)
        self._context = (x, z, y)
        return y

    def backward(self, dout):
        x, z, y = self._context
        dz = ACTIVATIONS[self.activation][1](np.asarray(dout, dtype=self.dtype), z, y)
        dz2 = dz.reshape(-1, self.units)
        self.grads = [x.reshape(len(dz2), x.shape[-1]).T @ dz2] + ([dz2.sum(axis=0)] if self.use_bias else [])
        return dz @ self.weights[0].T

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class Activation(Layer):
    """Applies an activation elementwise ("softmax" over the last axis)."""

    supports_masking = True
    checks_features = False

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(activation)

    def call(self, x, mask=None, training=False):
        z = as_float_array(x, self.dtype)
        y = ACTIVATIONS[self.activation][0](z)
        self._context = (z, y)
        return y

    def backward(self, dout):
        self.grads = []
        return ACTIVATIONS[self.activation][1](np.asarray(dout, dtype=self.dtype), *self._context)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class Dropout(Layer):
    """Inverted dropout while training (kept units scaled by 1/(1-rate)); the identity otherwise.
    ``noise_shape`` (with None for "as the input") shares one mask along axes of size 1."""

    supports_masking = True
    checks_features = False

    def __init__(self, rate, noise_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate("rate", rate)
        self.noise_shape = None if noise_shape is None else list(noise_shape)

    def call(self, x, mask=None, training=False):
        x = as_float_array(x, self.dtype)
        self._mask = None
        if not training or not self.rate:
            return x
        shape = x.shape if self.noise_shape is None else tuple(
            d if s is None else s for s, d in zip(self.noise_shape, x.shape))
        self._mask = dropout_mask(shape, self.rate, self.dtype)
        return x * self._mask

    def backward(self, dout):
        self.grads = []
        dout = np.asarray(dout, dtype=self.dtype)
        return dout if self._mask is None else dout * self._mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape}


class Masking(Layer):
    """Marks steps whose features all equal ``mask_value`` as padding: x: [N, T, C] -> the same with those
    steps zeroed, and mask: [N, T] (True where any feature differs from ``mask_value``)."""

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, x, mask=None):
        own = np.any(np.asarray(x) != self.mask_value, axis=-1)
        if mask is not None and np.shape(mask) != own.shape:
            raise ValueError(f"mask: expected shape {list(own.shape)} (x without its feature axis), "
                             f"got {list(np.shape(mask))}")
        return own if mask is None else own & np.asarray(mask, dtype=bool)

    def call(self, x, mask=None, training=False):
        x = as_float_array(x, self.dtype)
        self._keep = self.compute_mask(x, mask)[..., None]
        return x * self._keep

    def backward(self, dout):
        self.grads = []
        return np.asarray(dout, dtype=self.dtype) * self._keep

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


class Embedding(Layer):
    """Integer ids: [N, T] -> vectors: [N, T, output_dim]; ``embeddings: [input_dim, output_dim]``.
    ``mask_zero=True`` makes id 0 padding (output mask ``ids != 0``)."""

    supports_masking = True
    checks_features = False  # the last input axis is time

    def __init__(self, input_dim, output_dim, embeddings_initializer="random_uniform", mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.input_dim, self.output_dim, self.mask_zero = int(input_dim), int(output_dim), bool(mask_zero)
        self.embeddings_initializer = get_initializer("embeddings_initializer", embeddings_initializer)

    def build(self, input_shape):
        self._add_weight("embeddings", self.embeddings_initializer((self.input_dim, self.output_dim), self.dtype))
        self.built = True

    def check_input(self, x, name="x"):
        """x as an int64 array of ids in [0, input_dim); TypeError/ValueError naming ``name`` otherwise."""
        x = np.asarray(x)
        whole_floats = x.dtype.kind == "f" and np.all(np.isfinite(x)) and np.all(x == np.round(x))
        if x.dtype.kind not in "iu" and not whole_floats:
            raise TypeError(f"{name}: Embedding {self.name!r} expects integer ids, got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= self.input_dim):  # before the cast: 1e20 fits no int64
            raise ValueError(f"{name}: ids must lie in [0, input_dim={self.input_dim}), got values in "
                             f"[{x.min()}, {x.max()}]")
        return x.astype(np.int64, copy=False)

    def compute_mask(self, x, mask=None):
        return np.asarray(x) != 0 if self.mask_zero else mask

    def call(self, x, mask=None, training=False):
        self._ids = self.check_input(x)
        return self.weights[0][self._ids]

    def backward(self, dout):
        grad = np.zeros_like(self.weights[0])
        np.add.at(grad, self._ids.ravel(), np.asarray(dout, dtype=self.dtype).reshape(-1, self.output_dim))
        self.grads = [grad]
        return None

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "mask_zero": self.mask_zero}


# ---- layers the tape differentiates ------------------------------------------------------------------------
def cast_inputs(layer, x):
    """x (one input, or a nested list / tuple / dict of them) with every floating input cast to the layer's dtype,
    differentiably (Keras' autocast: integer and boolean inputs are left as they are)."""
    from .. import ops

    def cast(leaf):
        value = value_of(leaf)
        dtype = np.dtype(value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype)
        if dtype.kind != "f" or str(dtype) == layer.dtype:
            return leaf
        out = ops.cast(leaf, layer.dtype)
        mask = getattr(leaf, "_keras_mask", None)
        if mask is not None:
            out._keras_mask = mask  # a cast keeps the steps that hold data
        return out
    if isinstance(x, (list, tuple, dict)):
        return pack_like(x, [cast(leaf) for leaf in flatten(x)])
    return cast(x)


class Lambda(Layer):
    """Lambda(function, output_shape=None, mask=None, arguments=None): a layer that calls
    ``function(inputs, **arguments)`` (also ``mask=`` and ``training=`` when the function takes them).

    ``function`` computes with ``rnnkit.ops`` and the tensor operators, so the tape differentiates it: it gets
    arrays at inference and rnnkit tensors in training. ``output_shape`` (without the batch axis, or a function of
    the input shape) is what ``compute_output_shape`` reports; in a functional model the output shape comes from
    calling the function. ``mask``: None (the output has no mask), a function ``mask(inputs, input_mask)``, or a
    fixed mask. Floating inputs are cast to the layer's dtype first. Without ``output_shape``, ``compute_output_shape``
    calls the function on zeros.

    A Lambda layer is never rebuilt from a configuration: that would mean running code read from data. Its
    ``get_config`` names the function (module and name); make the layer again in code, or write a Layer subclass
    with a ``get_config`` of its own.
    """

    checks_features = False

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"function: expected a callable, got {type(function).__name__}")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"arguments: expected a dict of keyword arguments for the function, got "
                            f"{type(arguments).__name__}")
        if output_shape is not None and not callable(output_shape):
            shape = output_shape if isinstance(output_shape, (list, tuple)) else None
            if shape is None or any(d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer))
                                                       or d < 0) for d in shape):
                raise ValueError(f"output_shape: expected a shape without the batch axis (non-negative integers or "
                                 f"None), or a function of the input shape, got {output_shape!r}")
            output_shape = tuple(None if d is None else int(d) for d in shape)
        self.function, self.arguments = function, dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        self._output_shape = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            params = {}
        self._fn_expects_mask, self._fn_expects_training = "mask" in params, "training" in params

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._fn_expects_mask:
            kwargs["mask"] = mask
        if self._fn_expects_training:
            kwargs["training"] = training
        return self.function(cast_inputs(self, inputs), **kwargs)

    def compute_mask(self, inputs, mask=None):
        out = self.mask(inputs, mask) if callable(self.mask) else self.mask
        return None if out is None else np.asarray(value_of(out), dtype=bool)

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:  # from calls on zeros, as for a functional model (None: any size)
            from ..engine.functional import KerasTensor, _trial_outputs

            def spec(shape):
                if all(d is None or isinstance(d, (int, np.integer)) for d in shape):
                    return KerasTensor(shape, self.dtype)
                return [spec(s) for s in shape]
            shapes, _, returns_list = _trial_outputs(self, (spec(input_shape),), {})
            return shapes if returns_list else shapes[0]
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = flatten(input_shape)[0] if input_shape else None
        return (first, *self._output_shape)

    def get_config(self):
        config = {**super().get_config(), "function": _function_config(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (_function_config(self._output_shape) if callable(self._output_shape)
                                      else list(self._output_shape))
        if self.mask is not None:
            config["mask"] = (_function_config(self.mask) if callable(self.mask)
                              else _encode(np.asarray(value_of(self.mask)), "mask", self))
        config["arguments"] = _encode(self.arguments, "arguments", self)
        return config

    @classmethod
    def from_config(cls, config):
        raise ValueError("Lambda: a Lambda layer is not rebuilt from a configuration (its function is Python code, "
                         "which rnnkit never loads from data); make the layer again in code, or write a Layer "
                         "subclass with get_config")


def _function_config(fn):
    """A function described (not stored): Keras' keys, its module and name (``__lambda__`` for a lambda)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    lambda_ = getattr(fn, "__name__", None) == "<lambda>"
    return {"module": getattr(fn, "__module__", None), "class_name": "__lambda__" if lambda_ else "function",
            "config": name, "registered_name": None if lambda_ else name}


class Identity(Layer):
    """Returns its inputs as they are (any structure; their masks pass through; floating inputs cast to the layer's
    dtype, as Keras does). A placeholder layer."""

    supports_masking = True
    checks_features = False

    def call(self, inputs, mask=None):
        return cast_inputs(self, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class _Slot:
    """Where a symbolic tensor stood among an OpLayer's arguments: its value goes here at each call."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), str(dtype)


class OpLayer(Layer):
    """OpLayer(op, args, kwargs): the node of a functional model where an ``rnnkit.ops`` function (or a tensor
    operator: ``x[:, -1]``, ``a + b``) was applied to symbolic tensors (``engine.functional.symbolic_op`` makes
    it). ``call(tensors)`` gets the current values of those symbolic tensors (a flat list, in the order they appear
    in args and kwargs) and returns ``op(*args, **kwargs)`` with each put back in its place. Named after the op.

    ``get_config`` stores the op's name (a public name of ``rnnkit.ops``) and the other arguments, each symbolic
    tensor replaced by a placeholder ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype"}}``; slices,
    tuples, Ellipsis, NumPy arrays and dtypes are written as Keras writes them. TypeError for an argument no
    configuration can hold (a weight, an eager tensor, an object).
    """

    checks_features = False

    def __init__(self, op, args=(), kwargs=None, **layer_kwargs):
        if not callable(op):
            raise TypeError(f"op: expected an rnnkit.ops function, got {type(op).__name__}")
        kwargs = dict(kwargs or {})
        leaves = flatten((list(args), kwargs))
        slots = [_Slot(t.shape, t.dtype) if getattr(t, "_symbolic", False) else t for t in leaves]
        self.op, self._template = op, pack_like((list(args), kwargs), slots)
        op_name = getattr(op, "__name__", "op")
        if layer_kwargs.get("name") is None:
            layer_kwargs["name"] = _default_name(op_name)
        if layer_kwargs.get("dtype") is None:
            floats = [s.dtype for s in slots if isinstance(s, _Slot) and s.dtype in ("float32", "float64")]
            layer_kwargs["dtype"] = floats[0] if floats else "float32"
        super().__init__(**layer_kwargs)
        self._n_slots = sum(isinstance(s, _Slot) for s in slots)

    def call(self, tensors):
        tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
        if len(tensors) != self._n_slots:
            raise ValueError(f"tensors: layer {self.name!r} takes the values of its {self._n_slots} symbolic "
                             f"arguments, got {len(tensors)}")
        values = iter(tensors)
        args, kwargs = pack_like(self._template, [next(values) if isinstance(leaf, _Slot) else leaf
                                                  for leaf in flatten(self._template)])
        if loading():  # a file's op and arguments: what it would make is bounded before it runs
            _check_op_result(self.name, self.op, args, kwargs)
        return self.op(*args, **kwargs)

    def get_config(self):
        from .. import ops

        name = getattr(self.op, "__name__", None)
        if name not in ops.__all__ or getattr(ops, name) is not self.op:
            raise ValueError(f"layer {self.name!r}: its op {self.op!r} is not a public rnnkit.ops function, so a "
                             "configuration cannot name it")
        args, kwargs = self._template
        return {**super().get_config(), "function": name,
                "args": [_encode(a, f"argument {i} of rnnkit.ops.{name}", self) for i, a in enumerate(args)],
                "kwargs": {k: _encode(v, f"argument {k!r} of rnnkit.ops.{name}", self) for k, v in kwargs.items()}}

    @classmethod
    def from_config(cls, config):
        from .. import ops

        config = dict(config)
        name = config.pop("function", None)
        # an op a graph can hold: one of rnnkit.ops' functions of tensors (those taking symbolic ones)
        if not isinstance(name, str) or name not in ops.__all__ or not hasattr(getattr(ops, name), "__wrapped__"):
            raise ValueError(f"function: expected the name of an rnnkit.ops function of tensors, got {name!r:.100}")
        args, kwargs = config.pop("args", []), config.pop("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args, kwargs: expected a list and a dict of the op's arguments")
        layer = cls(getattr(ops, name), [_decode(a) for a in args], {k: _decode(v) for k, v in kwargs.items()},
                    **config)
        if not layer._n_slots:
            raise ValueError(f"args, kwargs: rnnkit.ops.{name} is applied to no symbolic tensor")
        return layer


_BROADCASTING = {"add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "where", "clip", "less",
                 "less_equal", "greater", "greater_equal", "equal"}


def _check_op_result(layer_name, op, args, kwargs):
    """ValueError when ``op(*args, **kwargs)`` (an rnnkit.ops function of tensors, tried while a model is rebuilt
    from a file) would make more than TRIAL_LIMIT values or TRIAL_OUTPUTS arrays: found from the shapes of its
    arguments, before it runs (a repeat, a one-hot, a broadcast, fancy indexing and a split can make far more than
    they are given)."""
    from ..engine.functional import TRIAL_LIMIT, TRIAL_OUTPUTS

    name = getattr(op, "__name__", "")
    a = inspect.signature(op.__wrapped__).bind(*args, **kwargs).arguments  # TypeError for a call it cannot take

    def shape(x):
        return np.shape(value_of(x))

    def size(x):
        return math.prod(shape(x))

    pieces = 1
    if name in _BROADCASTING:
        values = math.prod(np.broadcast_shapes(*(shape(x) for x in a.values())))
    elif name == "matmul":
        s1, s2 = shape(a["x1"]), shape(a["x2"])
        values = math.prod(np.broadcast_shapes(s1[:-2], s2[:-2])) * (s1[-2] if len(s1) > 1 else 1) * \
            (s2[-1] if len(s2) > 1 else 1)
    elif name == "repeat":
        values = size(a["x"]) * max(0, operator.index(a["repeats"]))
    elif name == "broadcast_to":
        values = math.prod(np.broadcast_shapes(shape(a["x"]), tuple(np.atleast_1d(a["shape"]).tolist())))
    elif name == "one_hot":
        values = size(a["x"]) * max(0, operator.index(a["num_classes"]))
    elif name == "take_slice":  # the index arrays' shape, then the shape numpy's indexing gives on items of no bytes
        from ..ops import _index_value

        key = _index_value(a["key"])
        arrays = [np.shape(k) for k in (key if isinstance(key, tuple) else (key,))
                  if isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype.kind != "b"]
        values = math.prod(np.broadcast_shapes(*arrays)) if arrays else 0
        if values <= TRIAL_LIMIT:
            values = np.broadcast_to(np.empty((), np.dtype([])), shape(a["x"]))[key].size
    elif name == "split":
        sections = a["indices_or_sections"]
        pieces = sections if isinstance(sections, (int, np.integer)) else len(sections) + 1
        values = size(a["x"])
    else:  # elementwise, reductions, reshapes, casts, concatenations: no more than their arguments hold
        values = sum(size(x) for x in flatten(list(a.values())))
    if values > TRIAL_LIMIT or pieces > TRIAL_OUTPUTS:
        raise ValueError(f"layer {layer_name!r}: rnnkit.ops.{name} would make {values} values"
                         + (f" in {pieces} arrays" if pieces > 1 else "") + " on inputs of shapes "
                         f"{[shape(x) for x in flatten(list(a.values())) if hasattr(value_of(x), 'shape')]}, more "
                         f"than a model rebuilt from a file may try (at most {TRIAL_LIMIT} values in "
                         f"{TRIAL_OUTPUTS} arrays)")


def _encode(value, what, layer):
    """value as JSON data, with Keras' forms for slices, tuples, Ellipsis and arrays; TypeError otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, _Slot):
        return {"class_name": "__keras_tensor__", "config": {"shape": list(value.shape), "dtype": value.dtype}}
    if isinstance(value, list):
        return [_encode(v, what, layer) for v in value]
    if isinstance(value, tuple):
        return {"class_name": "__tuple__", "config": {"value": [_encode(v, what, layer) for v in value]}}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode(v, what, layer) for k, v in value.items()} if "class_name" not in value else \
            {"class_name": "__dict__", "config": {k: _encode(v, what, layer) for k, v in value.items()}}
    if isinstance(value, slice):
        return {"class_name": "__slice__", "config": {"start": _encode(value.start, what, layer),
                                                      "stop": _encode(value.stop, what, layer),
                                                      "step": _encode(value.step, what, layer)}}
    if value is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"class_name": "__numpy__", "config": {"value": value.tolist(), "dtype": str(value.dtype)}}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return str(np.dtype(value))
    raise TypeError(f"layer {layer.name!r}: {what} is a {type(value).__name__}, which a layer configuration cannot "
                    "hold (JSON data, slices, tuples, NumPy arrays and dtypes only)")


_DECODERS = {
    "__keras_tensor__": lambda c: _Slot(c["shape"], c["dtype"]),
    "__tuple__": lambda c: tuple(_decode(v) for v in c["value"]),
    "__dict__": lambda c: {k: _decode(v) for k, v in c.items()},
    "__slice__": lambda c: slice(_decode(c["start"]), _decode(c["stop"]), _decode(c["step"])),
    "__ellipsis__": lambda c: Ellipsis,
    "__numpy__": lambda c: np.array(c["value"], dtype=_plain_dtype(c["dtype"])),
}


def _plain_dtype(name):
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise ValueError(f"args: expected a numeric dtype for an array argument, got {name!r:.100}")
    return dtype


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        decoder = _DECODERS.get(value.get("class_name")) if isinstance(value.get("class_name"), str) else None
        if decoder is not None:
            try:
                return decoder(value["config"])
            except (KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"args: a malformed {value['class_name']} entry ({e})") from None
        if "class_name" in value:
            raise ValueError(f"args: unknown entry class {value['class_name']!r:.100}")
        return {k: _decode(v) for k, v in value.items()}
    return value


class InputLayer(Layer):
    """The layer behind ``rnnkit.Input``: it holds the input's batch shape and dtype, and its symbolic tensor."""

    def __init__(self, batch_shape=None, dtype="float32", name=None, **kwargs):
        from ..engine.functional import GraphNode, KerasTensor

        float_dtype = dtype if np.dtype(dtype).kind == "f" else "float32"
        super().__init__(name=name, dtype=float_dtype, **kwargs)
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self.input_dtype = str(np.dtype(dtype))
        self.built = True
        self.output = KerasTensor(self.batch_shape, self.input_dtype, name=self.name)
        GraphNode(self, (), {}, [self.output], False)

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_shape), "dtype": self.input_dtype}

    def compute_output_shape(self, input_shape):
        return self.batch_shape
