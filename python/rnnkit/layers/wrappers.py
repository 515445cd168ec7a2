"""Bidirectional: a recurrent layer run forward and, with its own weights, backward over each sequence;
TimeDistributed: a layer applied to every step of a sequence."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..engine.calls import accepts, own_backward
from ..engine.functional import flatten, pack_like
from ..engine.tape import value_of
from .base import Layer
from .recurrent import Recurrent
from .registry import deserialize, serialize

__all__ = ["Bidirectional", "TimeDistributed"]

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Bidirectional(layer, merge_mode="concat"): ``layer`` over x, and a copy of it (its own weights) over
    each sequence from its own last step back to its first (the kernels' ``reverse=True``), outputs aligned
    with the input steps, then merged: "concat" ([..., 2H]), "sum", "mul", "ave", or None (a list of both).

    x: [N, T, C]; mask: [N, T] right-padded. With ``return_state`` the output is
    ``[merged, *forward_states, *backward_states]``. Weights: the forward layer's, then the backward layer's.
    """

    supports_masking = True
    input_ndim = (3, "[N, T, C]")

    def __init__(self, layer, merge_mode="concat", **kwargs):
        if not isinstance(layer, Recurrent):
            raise TypeError(f"layer: Bidirectional wraps a SimpleRNN, LSTM or GRU, got {type(layer).__name__}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode: expected one of {_MERGE_MODES}, got {merge_mode!r}")
        if "batch_input_shape" not in kwargs and "input_shape" not in kwargs and layer.batch_input_shape:
            kwargs["batch_input_shape"] = layer.batch_input_shape
        super().__init__(**{"dtype": layer.dtype, **kwargs})
        config = layer.get_config()
        config.pop("batch_input_shape", None)
        self.forward_layer = type(layer).from_config({**config, "name": "forward_" + layer.name})
        self.backward_layer = type(layer).from_config(
            {**config, "name": "backward_" + layer.name, "go_backwards": not layer.go_backwards})
        self.forward_layer._zero_padding = self.backward_layer._zero_padding = True
        self.backward_layer._align_output = True
        self.merge_mode, self._inner_name = merge_mode, layer.name
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state

    def build(self, input_shape):
        f, b = self.forward_layer, self.backward_layer
        f.ensure_built(input_shape)
        b.ensure_built(input_shape)
        self.weights = f.weights + b.weights  # the same arrays: set_weights and optimizers update the layers
        self.weight_names = [f"forward/{n}" for n in f.weight_names] + [f"backward/{n}" for n in b.weight_names]
        self._n_trainable = len(self.weights)
        self.built = True

    def reset_states(self, states=None):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    # Keras' signature: layer(sequences, initial_state=None, mask=None, training=None), so a state passed
    # positionally is the initial state (as in Keras), never the mask
    _call_positional = ("initial_state", "mask", "training")

    def call(self, x, mask=None, training=False, initial_state=None):
        n = self.forward_layer.n_states
        init_f, init_b = (None, None) if initial_state is None else (initial_state[:n], initial_state[n:])
        out_f = self.forward_layer(x, mask=mask, training=training, initial_state=init_f)
        out_b = self.backward_layer(x, mask=mask, training=training, initial_state=init_b)
        if self.return_state:
            (y_f, *states_f), (y_b, *states_b) = out_f, out_b
        else:
            y_f, y_b, states_f, states_b = out_f, out_b, [], []
        self._pair = (y_f, y_b)
        if self.merge_mode is None:
            merged = [y_f, y_b]
        elif self.merge_mode == "concat":
            merged = np.concatenate([y_f, y_b], axis=-1)
        elif self.merge_mode == "sum":
            merged = y_f + y_b
        elif self.merge_mode == "mul":
            merged = y_f * y_b
        else:
            merged = (y_f + y_b) / 2
        if self.return_state:
            return [*(merged if self.merge_mode is None else [merged]), *states_f, *states_b]
        return merged

    def backward(self, dout):
        """dout: gradient of the output (a list like the output for merge_mode=None or return_state)."""
        n = self.forward_layer.n_states
        douts = list(dout) if (self.return_state or self.merge_mode is None) else [dout]
        if self.merge_mode is None:
            dy_f, dy_b, rest = douts[0], douts[1], douts[2:]
        else:
            d, rest = douts[0], douts[1:]
            y_f, y_b = self._pair
            if d is None:
                dy_f = dy_b = None
            elif self.merge_mode == "concat":
                H = y_f.shape[-1]
                dy_f, dy_b = d[..., :H], d[..., H:]
            elif self.merge_mode == "sum":
                dy_f = dy_b = d
            elif self.merge_mode == "mul":
                dy_f, dy_b = d * y_b, d * y_f
            else:
                dy_f = dy_b = d / 2
        rest = list(rest) + [None] * (2 * n - len(rest))
        pack_f = [dy_f, *rest[:n]] if self.return_state else dy_f
        pack_b = [dy_b, *rest[n:]] if self.return_state else dy_b
        dx = self.forward_layer.backward(pack_f) + self.backward_layer.backward(pack_b)
        self.grads = self.forward_layer.grads + self.backward_layer.grads
        return dx

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        out, states = (shape[0], shape[1:]) if self.return_state else (shape, [])
        if self.merge_mode is None:
            outs = [out, out]
        else:
            outs = [(*out[:-1], 2 * out[-1]) if self.merge_mode == "concat" else out]
        return [*outs, *states, *states] if (self.return_state or self.merge_mode is None) else outs[0]

    def compute_mask(self, x, mask=None):
        if not self.return_sequences:
            return None
        n = 2 if self.merge_mode is None else 1
        if not self.return_state and n == 1:
            return mask
        return [mask] * n + [None] * (2 * self.forward_layer.n_states if self.return_state else 0)

    def get_config(self):
        layer = self.forward_layer
        inner = {"class_name": type(layer).__name__, "config": {**layer.get_config(), "name": self._inner_name}}
        return {**super().get_config(), "layer": inner, "merge_mode": self.merge_mode}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(deserialize(config.pop("layer")), **config)


class TimeDistributed(Layer):
    """TimeDistributed(layer): ``layer`` applied to every step of a sequence, with the same weights at each:
    x: [N, T, ...] -> [N*T, ...] (``ops.reshape``) -> layer -> [N*T, ...] -> [N, T, ...]. TimeDistributed(Dense(H))
    turns x: [N, T, C] into [N, T, H].

    ``layer`` is built for one step's shape ``(None, *x.shape[2:])``; any layer works: a built-in one (it
    differentiates itself) or one the tape differentiates. The mask ([N, T]) passes through to the output, as in
    Keras; the inner layer gets a mask only when it has more axes than [N, T] (reshaped to [N*T, ...]).
    Weights: the inner layer's (the same arrays). The dtype is the inner layer's unless given.
    """

    supports_masking = True
    checks_features = False

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: TimeDistributed wraps an rnnkit layer, got {type(layer).__name__}")
        super().__init__(**{"dtype": layer.dtype, **kwargs})
        self.layer = layer

    def _step_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"x: TimeDistributed layer {self.name!r} expects inputs [N, T, ...] with at least 3 "
                             f"axes, got shape {input_shape}")
        return (None, *input_shape[2:])

    def build(self, input_shape):
        inner, shape = self.layer, self._step_shape(input_shape)
        if own_backward(type(inner)):
            inner.ensure_built(shape)
        elif not inner.built:
            inner.build_from_shape(shape)
        # the same arrays: set_weights and optimizers update the inner layer
        self.weights, self.weight_names, self._n_trainable = inner.weights, inner.weight_names, inner._n_trainable
        self.built = True

    def call(self, inputs, training=None, mask=None):
        shape = ops.shape(inputs)
        self._step_shape(shape)
        N, T = shape[:2]
        kwargs = {}
        if training is not None and accepts(type(self.layer), "training"):
            kwargs["training"] = training
        if mask is not None and np.ndim(mask) > 2 and accepts(type(self.layer), "mask"):
            mask = np.asarray(value_of(mask), dtype=bool)
            kwargs["mask"] = mask.reshape(N * T, *mask.shape[2:])
        out = self.layer(ops.reshape(inputs, (N * T, *shape[2:])), **kwargs)
        return pack_like(out, [ops.reshape(y, (N, T, *ops.shape(y)[1:])) for y in flatten(out)])

    def compute_output_shape(self, input_shape):
        from ..engine.functional import KerasTensor, _defines_output_shape, _trial_outputs

        shape, inner = (input_shape[0], *self._step_shape(input_shape)[1:]), self.layer
        if own_backward(type(inner)) or _defines_output_shape(type(inner)):
            step = inner.compute_output_shape(shape)
        else:  # a user's layer: from calls on zeros
            step = _trial_outputs(inner, (KerasTensor(shape, self.dtype),), {})[0][0]
        return (step[0], input_shape[1], *step[1:])

    def get_config(self):
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(deserialize(config.pop("layer")), **config)
