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
import difflib
import inspect
import re

import numpy as np

from .. import initializers
from ..engine.calls import call_layer
from ..engine.tape import Variable

__all__ = ["Layer", "mask_to_lengths", "as_float_array", "shift_steps"]

_FLOAT_DTYPES = ("float32", "float64")
_name_counts = collections.Counter()  # Keras-style default names: lstm, lstm_1, lstm_2, ...

_NO_BACKWARD = contextvars.ContextVar("rnnkit_no_backward", default=False)


class no_backward:
    """Forward calls inside this block keep nothing for a backward pass (``predict`` and ``evaluate`` use it): the
    recurrent kernels then run without a cache, in less memory."""

    __slots__ = ("token",)

    def __enter__(self):
        self.token = _NO_BACKWARD.set(True)

    def __exit__(self, *exc):
        _NO_BACKWARD.reset(self.token)


def backward_possible():
    """False inside ``no_backward()``."""
    return not _NO_BACKWARD.get()


_WEIGHT_SOURCE = contextvars.ContextVar("rnnkit_weight_source", default=None)  # (source, layers being built)


@contextlib.contextmanager
def weights_from(source):
    """Layers built inside this block run no initializer: each ``add_weight(name, value)`` registers the array
    ``source(layer, name, shape, owners)`` returns (of ``shape`` and the layer's dtype; kept as it is, not
    copied), ``owners`` being the layers whose build is building ``layer``, outermost first (() for a model's
    own layers). While a layer builds, its initializer attributes stand aside for one that returns read-only
    zero-stride views of zero (nothing drawn, nothing allocated), so ``value`` only tells the shape, and
    ``source`` raises for a shape it cannot supply. ``rnnkit.saving`` loads models this way."""
    token = _WEIGHT_SOURCE.set((source, ()))
    try:
        yield
    finally:
        _WEIGHT_SOURCE.reset(token)


def loading():
    """True inside ``weights_from``: the layers being built take their weights from a source (a file)."""
    return _WEIGHT_SOURCE.get() is not None


class _NoInitializer(initializers.Initializer):
    """A layer's initializers while it builds inside ``weights_from``: zeros of the shape, without memory."""

    def __call__(self, shape, dtype=np.float32, *, fan=None):
        return np.broadcast_to(np.zeros((), dtype), tuple(shape) if np.ndim(shape) else (shape,))


def mask_to_lengths(mask, leading=False):
    """lengths: [N] int64 from a right-padded prefix mask: [N, T] bool; ValueError for any other mask. With
    ``leading``, a left-padded mask (padding first, as ``pad_sequences``' default ``padding="pre"`` makes) is
    accepted too, and the result is ``(lengths, offsets)``: offsets[n] = the padded steps before sequence n
    (None when no row has any)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a boolean array [N, T], got shape {mask.shape}")
    lengths = mask.sum(axis=1, dtype=np.int64)
    T = mask.shape[1]
    if leading:
        if T == 0:
            return lengths, None
        # each row one run of True steps: starting at step 0 (right padding, or none) or ending at the last step
        first = mask[:, 0]
        runs = first.astype(np.int64)
        if T > 1:
            runs += np.count_nonzero(mask[:, 1:] & ~mask[:, :-1], axis=1)
        right = first | (lengths == 0)
        ok = (runs <= 1) & (right | mask[:, -1])
        if ok.all():
            return lengths, (None if right.all() else np.where(right, 0, T - lengths))
        bad = np.flatnonzero(~ok)
    else:
        right = mask == (np.arange(T) < lengths[:, None])
        if right.all():
            return lengths
        bad = np.flatnonzero(~right.all(axis=1))
    row = int(bad[0])
    where = "padding at the start or at the end of each sequence" if leading else \
        "padding at the end of each sequence"
    raise ValueError(
        f"mask: sequence {row} is not right-padded{' or left-padded' if leading else ''} (mask "
        f"{mask[row].astype(int).tolist()}); rnnkit's recurrent kernels take one length per sequence, so the True "
        f"steps of each mask row must be contiguous, with {where}")


def as_float_array(x, dtype, name="x"):
    """x as an array of ``dtype`` (a copy only when needed); TypeError naming ``name`` unless x holds real numbers
    (complex values would lose their imaginary part; strings and objects are not data). Values beyond the range
    of ``dtype`` become inf, without a warning; NaN and inf pass through."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued numeric array, got dtype {x.dtype}")
    with np.errstate(over="ignore"):
        return x.astype(dtype, copy=False)


def sequence_batch(layer, x, mask, leading=False):
    """A recurrent layer's input: (x as an [N, T, C] array of the layer's dtype, lengths: [N] int64 or None for
    no mask), ValueError naming the argument for any other shape, TypeError for non-numeric data. With ``leading``
    the result is (x, lengths, offsets), a left-padded mask allowed (see ``mask_to_lengths``)."""
    x = as_float_array(x, layer.dtype)
    if x.ndim != 3:
        raise ValueError(f"x: layer {layer.name!r} expects a batch of sequences [N, T, C], got shape {x.shape}")
    N, T, _ = x.shape
    if mask is not None and np.shape(mask) != (N, T):
        raise ValueError(f"mask: expected shape [N, T] = [{N}, {T}], got {np.shape(mask)}")
    if not leading:
        return x, None if mask is None else mask_to_lengths(mask)
    lengths, offsets = (None, None) if mask is None else mask_to_lengths(mask, leading=True)
    return x, lengths, offsets


def shift_steps(a, offsets, back=False):
    """a: [N, T, ...] with each sequence n moved ``offsets[n]`` steps earlier (``back``: later), the steps pushed
    out coming in at the other end: a left-padded batch as a right-padded one, and back."""
    T = a.shape[1]
    t = np.arange(T)
    index = (t[None, :] - offsets[:, None]) % T if back else (t[None, :] + offsets[:, None]) % T
    return a[np.arange(a.shape[0])[:, None], index]


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
    input_ndim = None  # (number of axes, legend) of the inputs the layer takes, e.g. (3, "[N, T, C]"); None: any
    # what a forward or backward call keeps for the next backward call: not part of the layer's state, so a
    # pickled layer leaves it out (reset to None; ``grads`` to [])
    _transient = ("_context", "_mask", "_keep", "_ids", "_pair", "grads", "state_grads")

    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        layer.__dict__["_init_call"] = (args, kwargs)  # a user's class: the default get_config
        return layer

    def __init__(self, name=None, dtype="float32", trainable=True, input_shape=None, batch_input_shape=None,
                 batch_size=None, input_dim=None, **unexpected):
        if unexpected:
            raise _unexpected_keyword(type(self), unexpected)
        dtype = "float32" if dtype is None else dtype
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
    def _add_weight(self, name, value, trainable=True):
        """Registers ``value`` (an ndarray of the layer dtype); trainable weights are kept before the rest.
        Inside ``weights_from`` the weight is the source's array for ``value``'s shape instead."""
        state = _WEIGHT_SOURCE.get()
        if state is None:
            value = np.array(value, dtype=self.dtype, order="C")  # the layer's own copy
        else:
            source, building = state
            owners = building[:-1] if building and building[-1] is self else building
            value = source(self, name, tuple(np.shape(value)), owners)
        at = self._n_trainable if trainable else len(self.weights)
        self.weights.insert(at, value)
        self.weight_names.insert(at, name)
        self._n_trainable += bool(trainable)
        return value

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True, regularizer=None,
                   constraint=None, aggregation="none", overwrite_with_gradient=False, name=None):
        """Keras' ``add_weight``: a new weight of ``shape`` drawn by ``initializer`` (a name, an Initializer or a
        callable ``(shape, dtype)``; default "glorot_uniform", "zeros" for a non-float dtype), returned as an
        ``rnnkit.Variable`` to use in ``call`` (``x @ self.w``, ``ops.matmul(x, self.w)``): its gradient is
        recorded whenever ``call`` runs in training. ``regularizer`` and ``constraint`` are not supported."""
        if regularizer is not None or constraint is not None:
            raise ValueError(f"add_weight: layer {self.name!r}: regularizer and constraint are not supported")
        shape = () if shape is None else tuple(int(d) for d in (shape if np.ndim(shape) else (shape,)))
        dtype = self.dtype if dtype is None else str(np.dtype(dtype))
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"add_weight: dtype: expected 'float32' or 'float64', got {dtype!r}")
        init = get_initializer("initializer", "glorot_uniform" if initializer is None else initializer) \
            if initializer is None or isinstance(initializer, (str, dict, initializers.Initializer)) else initializer
        if name is None or name in self.weight_names:
            base = name or "variable"
            name = next(f"{base}_{i}" if i else base for i in range(len(self.weights) + 1)
                        if (f"{base}_{i}" if i else base) not in self.weight_names)
        if _WEIGHT_SOURCE.get() is None:
            value = np.asarray(init(shape, dtype), dtype=dtype)
        else:  # loading: the source supplies the array; nothing is drawn
            value = np.broadcast_to(np.zeros((), dtype), shape)
        array = self._add_weight(name, value, trainable)
        variable = Variable(array, name, bool(trainable), path=f"{self.name}/{name}")
        self.__dict__.setdefault("_variables", []).append(variable)
        return variable

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
        self.check_input_ndim(input_shape)
        if not self.built:
            state = _WEIGHT_SOURCE.get()
            if state is None:
                self.build(input_shape)
            else:
                self._build_from(state, input_shape)
            self.input_spec = (None, *input_shape[1:])
            self.built = True
        elif len(input_shape) != len(self.input_spec) or (
                self.checks_features and input_shape[-1] != self.input_spec[-1]):
            raise ValueError(f"x: layer {self.name!r} was built for inputs of shape {self.input_spec}, "
                             f"got {input_shape}")

    def build_from_shape(self, input_shape):
        """A user's layer on first call: ``build(input_shape)`` (weights from the file when loading)."""
        state = _WEIGHT_SOURCE.get()
        if state is None:
            self.build(input_shape)
        else:
            self._build_from(state, input_shape)
        self.built = True

    def sublayers(self):
        """The layers this one holds in its attributes (directly, or in lists, tuples and dicts), in the order
        they were assigned."""
        found = []
        for value in self.__dict__.values():
            items = value.values() if type(value) is dict else value if type(value) in (list, tuple) else (value,)
            for item in items:
                if isinstance(item, Layer) and item is not self and not any(item is f for f in found):
                    found.append(item)
        return found

    def named_sublayers(self):
        """[(attribute path, layer)] for ``sublayers``: ``blocks.0`` for the first layer of a list ``blocks``."""
        found, seen = [], set()
        for attribute, value in vars(self).items():
            if isinstance(value, dict):
                items = [(f"{attribute}.{k}", v) for k, v in value.items()]
            elif isinstance(value, (list, tuple)):
                items = [(f"{attribute}.{i}", v) for i, v in enumerate(value)]
            else:
                items = [(attribute, value)]
            for key, item in items:
                if isinstance(item, Layer) and item is not self and id(item) not in seen:
                    seen.add(id(item))
                    found.append((key, item))
        return found

    def check_input_ndim(self, input_shape):
        """ValueError naming x unless ``input_shape`` has the number of axes the layer takes (before any weight is
        made for a wrong shape)."""
        if self.input_ndim is not None and len(input_shape) != self.input_ndim[0]:
            raise ValueError(f"x: layer {self.name!r} expects inputs {self.input_ndim[1]}, got shape "
                             f"{tuple(input_shape)}")

    def _build_from(self, state, input_shape):
        """``build`` inside ``weights_from``: the initializers stand aside and ``add_weight`` asks the source."""
        source, owners = state
        own = {key: value for key, value in vars(self).items() if isinstance(value, initializers.Initializer)}
        vars(self).update(dict.fromkeys(own, _NoInitializer()))
        token = _WEIGHT_SOURCE.set((source, (*owners, self)))
        try:
            self.build(input_shape)
        finally:
            _WEIGHT_SOURCE.reset(token)
            vars(self).update(own)

    def check_input(self, x, name="x"):
        """x as an array of the layer dtype; TypeError for non-numeric data, ValueError for NaN or inf (also
        for values beyond the range of the layer dtype)."""
        given = np.asarray(x)
        x = as_float_array(given, self.dtype, name)
        if not np.isfinite(x).all():
            bad = tuple(np.argwhere(~np.isfinite(x))[0].tolist())
            if given.dtype.kind == "f" and not np.isfinite(given[bad]):
                raise ValueError(f"{name}: contains NaN or inf (first at index {list(bad)}); clean or impute the "
                                 "data first")
            raise ValueError(f"{name}: the value {given[bad].item()!r} at index {list(bad)} is beyond the range of "
                             f"{self.dtype}; rescale the data or use layers of dtype float64")
        return x

    # the names of a built-in layer's positional arguments after its input (Keras' call signature)
    _call_positional = ("mask", "training")

    def __call__(self, *args, **kwargs):
        """Keras' layer call: on arrays the result; on an rnnkit tensor a tensor (recorded for gradients in
        training); on a symbolic tensor (``rnnkit.Input``) a node of a functional model."""
        return call_layer(self, args, kwargs)

    def _run(self, x, mask=None, training=False, **kwargs):
        """A built-in layer's call on arrays: builds it on first use, then ``call``."""
        self.ensure_built(np.shape(x))
        return self.call(x, mask=mask, training=bool(training), **kwargs)

    def call(self, x, mask=None, training=False):
        raise NotImplementedError(f"layer {self.name!r}: a Layer subclass defines call(inputs, ...)")

    def backward(self, dout):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, x, mask=None):
        """The mask of this layer's output, given its input's: passed through by default."""
        return mask if self.supports_masking else None

    # ---- configuration --------------------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments that rebuild the layer. For a user's class (one not defined in rnnkit) they
        include, as in Keras, the arguments its constructor was called with that are JSON data (numbers, strings,
        lists, dicts); a class taking other arguments defines ``get_config`` itself."""
        config = {"name": self.name, "dtype": self.dtype, "trainable": self.trainable}
        if getattr(self, "batch_input_shape", None) is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        if not type(self).__module__.startswith("rnnkit."):
            config.update((k, v) for k, v in self._captured_arguments().items() if k not in config)
        return config

    def _captured_arguments(self):
        args, kwargs = self.__dict__.get("_init_call", ((), {}))
        try:
            bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        except TypeError:
            return {}
        captured = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = inspect.signature(type(self).__init__).parameters[name].kind
            items = value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]
            for key, item in items:
                if kind is not inspect.Parameter.VAR_POSITIONAL and _is_json(item):
                    captured[key] = list(item) if isinstance(item, tuple) else item
        return captured

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"

    def __getstate__(self):
        """Pickling: the configuration, weights and (stateful layers) carried states, without the records of the
        last forward and backward calls."""
        state = dict(self.__dict__)
        for name in self._transient:
            if name in state:
                state[name] = [] if name == "grads" else None
        return state


def _is_json(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _unexpected_keyword(cls, unexpected):
    """TypeError naming the layer class the user called and the first unknown keyword (with the nearest known one)."""
    name = next(iter(unexpected))
    known = {p.name for klass in cls.__mro__ if "__init__" in vars(klass)
             for p in inspect.signature(klass.__init__).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(f"{cls.__name__}: unexpected keyword argument {name!r}{hint}")


def _default_name(class_name):
    prefix = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return f"{prefix}_{n}" if n else prefix
