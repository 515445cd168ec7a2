"""Dense, Embedding, Masking, Dropout and Activation, in NumPy (batch-major, any number of leading axes)."""

from __future__ import annotations

import numpy as np

from .. import initializers
from .base import Layer, as_float_array, get_initializer
from .recurrent import _rate, dropout_mask

__all__ = ["Dense", "Embedding", "Masking", "Dropout", "Activation", "ACTIVATIONS"]


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# name -> (forward(z) -> y, backward(dy, z, y) -> dz)
ACTIVATIONS = {
    "linear": (lambda z: z, lambda dy, z, y: dy),
    "relu": (lambda z: np.maximum(z, 0), lambda dy, z, y: dy * (z > 0)),
    "tanh": (np.tanh, lambda dy, z, y: dy * (1 - y * y)),
    "sigmoid": (_sigmoid, lambda dy, z, y: dy * y * (1 - y)),
    "softmax": (_softmax, lambda dy, z, y: y * (dy - (dy * y).sum(axis=-1, keepdims=True))),
    "softplus": (lambda z: np.logaddexp(0, z), lambda dy, z, y: dy * _sigmoid(z)),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))), lambda dy, z, y: dy * np.where(z > 0, 1, y + 1)),
}


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
