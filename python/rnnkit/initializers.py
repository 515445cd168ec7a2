"""Weight initializers (Keras 3 names and formulas), drawing from ``rnnkit.random.generator()``.

An initializer is a callable ``init(shape, dtype=float32, *, fan=None) -> ndarray``.
``shape`` is read in Keras' orientation: for a 2-D shape ``fan_in = shape[0]`` (inputs) and
``fan_out = shape[1]`` (units); for more dimensions the leading ones form the receptive field
(``fan_in = shape[-2] * prod(shape[:-2])``). ``fan`` is used only by ``"uniform_pytorch"``
(PyTorch's ``uniform(-1/sqrt(fan), 1/sqrt(fan))``; RNN layers pass ``fan=H``, Dense ``fan=C``).
Values are drawn in float64 and then cast, so float32 and float64 layers draw the same numbers.

This module also holds the small configuration helpers that optimizers and losses share:
``get_config()`` returns the constructor arguments (read back from attributes of the same
names) and ``serialize`` / ``deserialize`` use ``{"class_name": ..., "config": ...}``.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from .random import generator

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
    "LecunNormal", "Orthogonal", "UniformPytorch", "get", "serialize", "deserialize",
]


# ------------------------------------------------------------------------------------------------
# configuration helpers shared with optimizers and losses
# ------------------------------------------------------------------------------------------------

class Configurable:
    """``get_config()`` = the constructor arguments, read back from attributes of the same names."""

    def get_config(self) -> dict:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def serialize_object(obj) -> dict:
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize_object(data, classes: dict, kind: str):
    """Rebuild ``serialize_object``'s output from ``classes`` (class name -> class)."""
    if not isinstance(data, dict) or set(data) != {"class_name", "config"}:
        raise ValueError(f"expected a serialized {kind} {{'class_name': ..., 'config': ...}}, got {data!r}")
    cls = classes.get(data["class_name"])
    if cls is None:
        raise ValueError(f"unknown {kind} class {data['class_name']!r}; known: {sorted(classes)}")
    return cls.from_config(dict(data["config"]))


def get_object(identifier, names: dict, classes: dict, base: type, kind: str):
    """An instance of ``base`` from a name (case-insensitive, default arguments), a serialized
    dict, or an instance (returned as is). Unknown names raise ValueError listing the known ones."""
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        cls = names.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown {kind} {identifier!r}; known names: {sorted(names)}")
        return cls()
    if isinstance(identifier, dict):
        obj = deserialize_object(identifier, classes, kind)
        if not isinstance(obj, base):
            raise ValueError(f"{identifier['class_name']} is not a {kind}")
        return obj
    raise TypeError(f"{kind} must be a name, a serialized dict or a {base.__name__}, got {type(identifier).__name__}")


# ------------------------------------------------------------------------------------------------
# initializers
# ------------------------------------------------------------------------------------------------

def _fans(shape):
    """(fan_in, fan_out) in Keras' orientation (see the module docstring)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_normal(shape, stddev):
    """Normal(0, stddev) redrawn until every value lies within two standard deviations."""
    rng = generator()
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * stddev


class Initializer(Configurable):
    """Base class: subclasses define ``_draw(shape, fan) -> float64 ndarray``."""

    def __call__(self, shape, dtype=np.float32, *, fan=None) -> np.ndarray:
        shape = tuple(int(s) for s in (shape if np.ndim(shape) else (shape,)))
        if any(s < 0 for s in shape):
            raise ValueError(f"shape must have non-negative entries, got {shape}")
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        return np.asarray(self._draw(shape, fan), dtype=dtype)

    def _draw(self, shape, fan):
        raise NotImplementedError


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def _draw(self, shape, fan):
        return np.full(shape, self.value)


class Zeros(Constant):
    def __init__(self):
        super().__init__(0.0)


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def _draw(self, shape, fan):
        return self.mean + self.stddev * generator().standard_normal(shape)


class TruncatedNormal(RandomNormal):
    """Normal(mean, stddev) with values beyond two standard deviations redrawn."""

    def _draw(self, shape, fan):
        return self.mean + _truncated_normal(shape, self.stddev)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def _draw(self, shape, fan):
        return generator().uniform(self.minval, self.maxval, shape)


class VarianceScaling(Initializer):
    """Keras' VarianceScaling: ``n`` = fan_in, fan_out or their mean (``mode``);
    uniform: ``U(-limit, limit)`` with ``limit = sqrt(3 * scale / n)``; truncated_normal:
    ``stddev = sqrt(scale / n) / 0.87962566103423978`` cut at two stddevs; untruncated_normal:
    ``stddev = sqrt(scale / n)``."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {self._MODES}, got {mode!r}")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self._DISTRIBUTIONS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def _draw(self, shape, fan):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return generator().uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return math.sqrt(variance) * generator().standard_normal(shape)
        return _truncated_normal(shape, math.sqrt(variance) / 0.87962566103423978)


def _variance_scaling(class_name, scale, mode, distribution, doc):
    """A VarianceScaling subclass with fixed arguments and no constructor arguments of its own."""
    def __init__(self):
        VarianceScaling.__init__(self, scale, mode, distribution)
    return type(class_name, (VarianceScaling,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


GlorotUniform = _variance_scaling("GlorotUniform", 1.0, "fan_avg", "uniform",
                                  "U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)).")
GlorotNormal = _variance_scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                                 "Truncated normal, stddev = sqrt(2 / (fan_in + fan_out)) (before truncation).")
HeUniform = _variance_scaling("HeUniform", 2.0, "fan_in", "uniform", "U(-limit, limit), limit = sqrt(6 / fan_in).")
HeNormal = _variance_scaling("HeNormal", 2.0, "fan_in", "truncated_normal",
                             "Truncated normal, stddev = sqrt(2 / fan_in) (before truncation).")
LecunUniform = _variance_scaling("LecunUniform", 1.0, "fan_in", "uniform", "U(-limit, limit), limit = sqrt(3 / fan_in).")
LecunNormal = _variance_scaling("LecunNormal", 1.0, "fan_in", "truncated_normal",
                                "Truncated normal, stddev = sqrt(1 / fan_in) (before truncation).")


class Orthogonal(Initializer):
    """Keras' Orthogonal: QR of a normal matrix [max(r, c), min(r, c)] with r = prod(shape[:-1]),
    c = shape[-1]; Q's columns signed by diag(R), transposed when r < c, times ``gain``."""

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def _draw(self, shape, fan):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape with at least 2 dimensions, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        q, r = np.linalg.qr(generator().standard_normal((max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)


class UniformPytorch(Initializer):
    """PyTorch's default for RNN and Linear weights: ``U(-1/sqrt(fan), 1/sqrt(fan))``; ``fan`` is
    required (H for recurrent layers, input features for Dense)."""

    def __init__(self):
        pass

    def _draw(self, shape, fan):
        if fan is None or not fan > 0:
            raise ValueError(f"uniform_pytorch needs fan > 0 (H for RNN layers, inputs for Dense), got fan={fan!r}")
        bound = 1.0 / math.sqrt(fan)
        return generator().uniform(-bound, bound, shape)


_CLASSES = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling, GlorotUniform,
    GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal, UniformPytorch)}
_NAMES = {"zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
          "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
          "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
          "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
          "orthogonal": Orthogonal, "uniform_pytorch": UniformPytorch,
          # Keras 3's aliases (its documented MinimalRNNCell uses initializer="uniform")
          "uniform": RandomUniform, "normal": RandomNormal, "zero": Zeros, "one": Ones}


def serialize(initializer: Initializer) -> dict:
    """``{"class_name": ..., "config": ...}`` (plain JSON data)."""
    return serialize_object(initializer)


def deserialize(data: dict) -> Initializer:
    return deserialize_object(data, _CLASSES, "initializer")


def get(identifier) -> Initializer:
    """From a name ("glorot_uniform", case-insensitive), ``serialize``'s output or an instance."""
    return get_object(identifier, _NAMES, _CLASSES, Initializer, "initializer")
