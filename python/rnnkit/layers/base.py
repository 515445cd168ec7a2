"""The Layer base class and the helpers every layer shares.

A layer works on batch-major arrays: ``x: [N, ...]`` (``[N, T, C]`` for sequences). It keeps its weights
as a list of ndarrays in ``self.weights`` (trainable ones first, in a fixed order) and, after ``backward``,
one gradient per trainable weight in ``self.grads``, same order and shapes.

Masks are boolean ``[N, T]`` arrays, True where a step holds data. rnnkit's kernels take per-sequence
``lengths`` instead of masks, so a mask must be a right-padded prefix: ``mask[n] == [True]*L_n + [False]*(T-L_n)``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import re

import numpy as np

from .. import initializers

__all__ = ["Layer", "mask_to_lengths"]

_FLOAT_DTYPES = ("float32", "float64")
_name_counts = collections.Counter()  # Keras-style default names: lstm, lstm_1, lstm_2, ...

_NO_BACKWARD = contextvars.ContextVar("rnnkit_no_backward", default=False)


@contextlib.contextmanager
def no_backward():
    """Forward calls inside this block keep nothing for a backward pass (``Sequential.predict`` and
    ``evaluate`` use it): the recurrent kernels then run without a cache, in less memory."""
    token = _NO_BACKWARD.set(True)
    try:
        yield
    finally:
        _NO_BACKWARD.reset(token)


def backward_possible():
    """False inside ``no_backward()``."""
    return not _NO_BACKWARD.get()


def mask_to_lengths(mask):
    """lengths: [N] int64 from a right-padded prefix mask: [N, T] bool; ValueError for any other mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a boolean array [N, T], got shape {mask.shape}")
    lengths = mask.sum(axis=1, dtype=np.int64)
    if not np.array_equal(mask, np.arange(mask.shape[1]) < lengths[:, None]):
        bad = int(np.flatnonzero((mask != (np.arange(mask.shape[1]) < lengths[:, None])).any(axis=1))[0])
        raise ValueError(
            f"mask: sequence {bad} is not right-padded (mask {mask[bad].astype(int).tolist()}); rnnkit's "
            "recurrent kernels take one length per sequence, so the True steps of each mask row must come first "
            "and the padding after them — put padding at the end of each sequence")
    return lengths


def sequence_batch(layer, x, mask):
    """A recurrent layer's input: (x as an [N, T, C] array of the layer's dtype, lengths: [N] int64 or None for
    no mask), ValueError naming the argument for any other shape."""
    x = np.asarray(x, dtype=layer.dtype)
    if x.ndim != 3:
        raise ValueError(f"x: layer {layer.name!r} expects a batch of sequences [N, T, C], got shape {x.shape}")
    N, T, _ = x.shape
    lengths = None if mask is None else mask_to_lengths(mask)
    if lengths is not None and lengths.shape[0] != N:
        raise ValueError(f"mask: expected shape [N, T] = [{N}, {T}], got {np.shape(mask)}")
    return x, lengths


def get_initializer(argument, identifier):
    """rnnkit.initializers.get(identifier), with errors naming the layer ``argument``."""
    try:
        return initializers.get(identifier)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{argument}: {e}") from None


class Layer:
    """Base of every layer.

    Subclasses set ``supports_masking`` and implement ``build(input_shape)`` (calling ``add_weight``),
    ``call(x, mask=None, training=False)``, ``backward(dout) -> dx`` (filling ``self.grads``),
    ``compute_output_shape`` and, when their arguments differ from the base's, ``get_config``.
    Shapes passed to ``build``/``compute_output_shape`` include the batch axis (``None`` when unknown).
    """

    supports_masking = False
    checks_features = True  # the last input axis is a feature axis, fixed once built

    def __init__(self, name=None, dtype="float32", trainable=True, input_shape=None, batch_input_shape=None,
                 batch_size=None, input_dim=None):
        if str(np.dtype(dtype)) not in _FLOAT_DTYPES:
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        self.dtype = str(np.dtype(dtype))
        self.name = name or _default_name(type(self).__name__)
        self.trainable = bool(trainable)
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        if batch_input_shape is None and input_shape is not None:
            batch_input_shape = (batch_size, *input_shape)
        self.batch_input_shape = None if batch_input_shape is None else tuple(batch_input_shape)
        self.built = False
        self.input_spec = None  # the batch input shape the layer was built for
        self.weights, self.weight_names, self._n_trainable = [], [], 0
        self.grads = []

    # ---- weights -------------------------------------------------------------------------------------
    def add_weight(self, name, value, trainable=True):
        """Registers ``value`` (an ndarray of the layer dtype); trainable weights are kept before the rest."""
        value = np.array(value, dtype=self.dtype, order="C")  # the layer's own copy
        at = self._n_trainable if trainable else len(self.weights)
        self.weights.insert(at, value)
        self.weight_names.insert(at, name)
        self._n_trainable += bool(trainable)
        return value

    @property
    def trainable_weights(self):
        return self.weights[:self._n_trainable] if self.trainable else []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Copies ``weights`` into the layer's arrays in place (optimizers keep references to them)."""
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"weights: layer {self.name!r} expects {len(self.weights)} arrays "
                             f"({', '.join(self.weight_names)}), got {len(weights)}")
        for name, own, new in zip(self.weight_names, self.weights, weights):
            new = np.asarray(new)
            if new.shape != own.shape:
                raise ValueError(f"weights: {self.name}/{name} expects shape {own.shape}, got {new.shape}")
            own[...] = new

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    # ---- building and calling -----------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def ensure_built(self, input_shape):
        """Builds on first use; afterwards checks the feature axes of ``input_shape`` still match."""
        input_shape = tuple(input_shape)
        if not self.built:
            self.build(input_shape)
            self.input_spec = (None, *input_shape[1:])
            self.built = True
        elif len(input_shape) != len(self.input_spec) or (
                self.checks_features and input_shape[-1] != self.input_spec[-1]):
            raise ValueError(f"x: layer {self.name!r} was built for inputs of shape {self.input_spec}, "
                             f"got {input_shape}")

    def check_input(self, x, name="x"):
        """x as an array of the layer dtype; TypeError for non-numeric data, ValueError for NaN or inf."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a real-valued numeric array, got dtype {x.dtype}")
        x = x.astype(self.dtype, copy=False)
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0].tolist()
            raise ValueError(f"{name}: contains NaN or inf (first at index {bad}); clean or impute the data first")
        return x

    def __call__(self, x, mask=None, training=False, **kwargs):
        self.ensure_built(np.shape(x))
        return self.call(x, mask=mask, training=training, **kwargs)

    def call(self, x, mask=None, training=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, x, mask=None):
        """The mask of this layer's output, given its input's: passed through by default."""
        return mask if self.supports_masking else None

    # ---- configuration --------------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype, "trainable": self.trainable}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def _default_name(class_name):
    prefix = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return f"{prefix}_{n}" if n else prefix
