"""Recurrent layers: SimpleRNN, LSTM and GRU, one class each over a shared ``Recurrent`` base.

Inputs are batch-major ``x: [N, T, C]``; the layer hands the kernels of ``rnnkit.functional`` the
time-major ``[T, N, C]`` array (one transpose per layer boundary) and a mask as per-sequence ``lengths``.
Outputs: ``[N, T, H]`` with ``return_sequences``, else ``[N, H]`` (each sequence's state after its own last
step); with ``return_state`` a list ``[output, h_n]`` (LSTM: ``[output, h_n, c_n]``). As in Keras 3, a sequence
output repeats a sequence's last valid output at its padded steps (zeros before its first), and with
``go_backwards`` it is the whole padded sequence reversed: the padding's zeros first, then the outputs of the
valid steps from the last to the first. Inside ``Bidirectional`` both directions output zeros at padded
steps, the backward one aligned with the input steps (Keras' ``zero_output_for_mask``).

Weights use PyTorch's layout for the matrices, ``W_ih: [G*H, C]``, ``W_hh: [G*H, H]`` (LSTM gates i, f, g, o; GRU
r, z, n), and Keras' biases: one ``bias: [G*H]`` (the kernels' ``b_ih``, their ``b_hh`` zero) for SimpleRNN,
LSTM and GRU with ``reset_after=False``; ``b_ih`` and ``b_hh`` for GRU with ``reset_after=True``, whose
recurrent bias sits inside ``r * (W_hn h + b_hn)`` (Keras' ``bias [2, 3H]``). With one bias the layer trains
what Keras trains: the two biases of the kernels only ever add up, and training both would move their sum at
twice the rate. Initialisation follows Keras: ``kernel_initializer`` is called once on the Keras-shaped
kernel ``[C, G*H]`` and ``recurrent_initializer`` on ``[H, G*H]`` (as Keras' ``add_weight`` does), then
transposed; the bias gets ``bias_initializer`` (LSTM: forget block set to 1 with ``unit_forget_bias``).

Activations are Keras': ``activation`` (SimpleRNN's nonlinearity; the candidate and, for LSTM, the output's
``tanh(c_t)``) and ``recurrent_activation`` (the gates of LSTM and GRU), any of ``rnnkit.activations.KERAS`` (or
None for linear, or a function with one of those names). The defaults run the kernels' fused path; others run
element by element. ``LSTM(use_peepholes=True)`` adds the peephole weights ``peepholes: [3H]`` (gates i, f, o,
started at zero: ONNX's ``P``), which let the gates see the cell state. ``LSTM(proj_size=P)`` (PyTorch's) projects
the output: ``h_t = W_hr (o * tanh(c_t))`` with ``W_hr: [P, H]`` (the last weight), so outputs and ``h`` have P
values, ``c`` keeps H, and ``W_hh`` is ``[4H, P]``. ``clip`` (ONNX's, not a Keras argument) clips every gate's
pre-activation to ``[-clip, clip]``.
"""

from __future__ import annotations

import numpy as np

from .. import activations as _activations
from .. import functional, initializers
from .. import random as _random
from ..cells import CELLS, cell_options
from .base import Layer, as_float_array, backward_possible, get_initializer, sequence_batch, shift_steps

__all__ = ["Recurrent", "SimpleRNN", "LSTM", "GRU", "dropout_mask", "reverse_steps", "carried_steps"]


def dropout_mask(shape, rate, dtype):
    """An inverted-dropout mask: ``shape`` of 0 and 1/(1-rate), drawn from rnnkit's generator."""
    keep = _random.generator().random(shape) >= rate
    return keep.astype(dtype) / np.asarray(1.0 - rate, dtype)


def reverse_steps(a, lengths):
    """a: [N, T, ...] with each sequence's first ``lengths[n]`` steps reversed (all T when lengths is None).

    Its own inverse; padded steps stay where they are, so a right-padded mask still describes the result.
    """
    if lengths is None:
        return a[:, ::-1]
    t = np.arange(a.shape[1])
    index = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return a[np.arange(a.shape[0])[:, None], index]


def carried_steps(lengths, T):
    """index: [N, T] of the step whose output each step of a right-padded sequence output shows in Keras 3: the
    step itself inside the sequence, its last valid step after it (the step itself, a zero output, for an empty
    sequence)."""
    t = np.arange(T)
    last = lengths[:, None] - 1
    return np.where((t >= lengths[:, None]) & (last >= 0), last, t)


def _rate(name, value):
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a rate in [0, 1), got {value}")
    return value


class Recurrent(Layer):
    """Shared machinery of the recurrent layers; a subclass names its ``cell`` (its gates and states are
    ``rnnkit.cells``').

    x: [N, T, C]; mask: [N, T] right-padded or None; initial_state: list of [N, H] arrays (h, and c for LSTM).
    ``stateful=True`` keeps the final states of each call as the next call's initial states (the gradient is
    cut between calls: truncated BPTT); ``reset_states()`` forgets them.
    """

    cell = None  # "rnn" | "lstm" | "gru": the functional kernel pair (rnnkit.cells names its facts)
    options = ()  # names of constructor arguments passed on to the kernels and kept in the config
    use_peepholes = False
    proj_size = None
    supports_masking = True
    input_ndim = (3, "[N, T, C]")

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 dropout=0.0, recurrent_dropout=0.0, use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", activation="tanh",
                 recurrent_activation="sigmoid", clip=None, **kwargs):
        super().__init__(**kwargs)
        self._set_activations(activation=activation, recurrent_activation=recurrent_activation)
        # ONNX's clip: every gate's pre-activation clipped to [-clip, clip] (ValueError naming it otherwise)
        self.clip = cell_options(self.cell, clip=clip).get("clip")
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units: expected a positive integer, got {units!r}")
        self.units = int(units)
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful, self.use_bias = bool(go_backwards), bool(stateful), bool(use_bias)
        self.dropout, self.recurrent_dropout = _rate("dropout", dropout), _rate("recurrent_dropout", recurrent_dropout)
        self.kernel_initializer = get_initializer("kernel_initializer", kernel_initializer)
        self.recurrent_initializer = get_initializer("recurrent_initializer", recurrent_initializer)
        self.bias_initializer = get_initializer("bias_initializer", bias_initializer)
        self.states = None  # stateful: [h_n] or [h_n, c_n] of the last call
        self.state_grads = None  # after backward: gradient of the initial states, [N, H] each
        # set by Bidirectional: zeros at padded steps (both layers), a go_backwards output aligned with the input
        # steps (its backward layer)
        self._zero_padding = self._align_output = False
        self._context = None

    def _set_activations(self, **given):
        """Keras' activation arguments this cell has (rnnkit.cells), kept as Keras names."""
        spec = CELLS[self.cell]
        for argument, value in given.items():
            if argument not in spec.keras_activations and value != "sigmoid":
                raise TypeError(f"{type(self).__name__}: unexpected keyword argument {argument!r}")
        for argument in spec.keras_activations:
            value = given[argument]
            name = getattr(value, "__name__", value) if callable(value) else value
            _activations.keras(name, argument)  # ValueError naming the argument
            setattr(self, argument, "linear" if name is None else name)

    # ---- weights --------------------------------------------------------------------------------------
    def build(self, input_shape):
        C, H, G, P = input_shape[-1], self.units, self.gates, self._state_sizes[0]
        if C is None:
            raise ValueError(f"x: layer {self.name!r} needs a known feature size, got input shape {input_shape}")
        dt = self.dtype
        self._add_weight("W_ih", self.kernel_initializer((C, G * H), dt, fan=H).T)
        self._add_weight("W_hh", self.recurrent_initializer((P, G * H), dt, fan=H).T)
        if self.use_bias:
            bias = np.array(self.bias_initializer((G * H,), dt, fan=H), dtype=dt)
            if getattr(self, "unit_forget_bias", False):
                bias[H:2 * H] = 1.0
            if self.two_biases:
                self._add_weight("b_ih", bias)
                self._add_weight("b_hh", self.bias_initializer((G * H,), dt, fan=H))
            else:
                self._add_weight("bias", bias)
        if self.use_peepholes:
            self._add_weight("peepholes", np.zeros(3 * H, dt))
        if self.proj_size:
            self._add_weight("W_hr", self.kernel_initializer((H, P), dt, fan=H).T)
        self._zero_bias = np.zeros(G * H, dt)
        self.built = True

    @property
    def gates(self):
        """G, the cell's gate blocks."""
        return CELLS[self.cell].G

    @property
    def n_states(self):
        """The states a sequence carries: 1 (h), LSTM 2 (h, c)."""
        return len(CELLS[self.cell].states)

    @property
    def _state_sizes(self):
        """The sizes of the states: [H] (LSTM [H, H]; with proj_size P [P, H]); the output has the first."""
        return [self.proj_size or self.units, self.units][:self.n_states]

    @property
    def two_biases(self):
        """GRU with reset_after keeps the kernels' two biases (Keras has both); the other layers keep one."""
        return bool(getattr(self, "reset_after", False))

    def _kernel_weights(self):
        """(W_ih, W_hh, b_ih, b_hh) for the kernels."""
        w, zero = self.weights, self._zero_bias
        if not self.use_bias:
            return w[0], w[1], zero, zero
        return (w[0], w[1], w[2], w[3]) if self.two_biases else (w[0], w[1], w[2], zero)

    def _kernel_options(self):
        options = {name: getattr(self, name) for name in self.options if name != "unit_forget_bias"}
        spec = CELLS[self.cell]
        roles = {role: getattr(self, argument) for argument, rs in spec.keras_activations.items() for role in rs}
        chosen = [roles[role] for role, _, _ in spec.activations]
        if chosen != [default for _, default, _ in spec.activations]:
            options["activations"] = chosen
        if self.clip is not None:
            options["clip"] = self.clip
        if self.use_peepholes:
            options["peepholes"] = self.weights[self.weight_names.index("peepholes")]
        if self.proj_size:
            options["W_hr"] = self.weights[self.weight_names.index("W_hr")]
        return options

    # ---- forward and backward ------------------------------------------------------------------------
    # Keras' signature: layer(sequences, initial_state=None, mask=None, training=None), so a state passed
    # positionally is the initial state (as in Keras), never the mask
    _call_positional = ("initial_state", "mask", "training")

    def call(self, x, mask=None, training=False, initial_state=None):
        x, lengths, offsets = sequence_batch(self, x, mask, leading=True)
        N, T, C = x.shape
        in_mask = dropout_mask((N, 1, C), self.dropout, self.dtype) if training and self.dropout else None
        rec_mask = dropout_mask((N, self._state_sizes[0]), self.recurrent_dropout, self.dtype) \
            if training and self.recurrent_dropout else None
        states0 = self._initial_states(initial_state, N)

        keep = backward_possible()
        kw = dict(lengths=lengths, reverse=self.go_backwards, return_cache=keep, **self._kernel_options())
        if rec_mask is not None:
            kw["recurrent_mask"] = rec_mask
        if self.n_states == 2:
            kw["c0"] = states0[1]
        if offsets is None:
            x_t = (x if in_mask is None else x * in_mask).transpose(1, 0, 2)  # [T, N, C] (functional copies it once)
        else:  # left padding: the kernels run on the batch moved to right padding, gathered time-major at once
            x_t = x[np.arange(N)[None, :], (np.arange(T)[:, None] + offsets[None, :]) % T]
            if in_mask is not None:
                x_t *= in_mask.transpose(1, 0, 2)
        out = getattr(functional, f"{self.cell}_forward")(x_t, *self._kernel_weights(), h0=states0[0], **kw)
        y_t, states, cache = out[0], list(out[1:-1]), out[-1]  # y_t: [T, N, H]
        if self.stateful:
            self.states = states
        self._context = (cache, in_mask, lengths, offsets, y_t.shape) if keep else None

        if self.return_sequences:
            # [N, T, H], each step's output at its input step, zeros at padded steps (a view: the next
            # layer's transpose undoes it)
            output = y_t.transpose(1, 0, 2)
            reverse = self.go_backwards and not self._align_output
            carry = self._carried_lengths(lengths, offsets, output.shape[1])
            if offsets is None and carry is None:
                output = output[:, ::-1] if reverse else output
            else:  # one gather, time-major: the steps shown, moved back to left padding, repeated past the end
                T = output.shape[1]
                index = np.broadcast_to(np.arange(T), (N, T))
                if carry is not None:
                    index = carried_steps(carry, T)
                if offsets is not None:  # back to left padding (the whole sequence reversed: the other way)
                    index = (index + (offsets[:, None] if reverse else -offsets[:, None])) % T
                if reverse:
                    index = T - 1 - index
                output = y_t[index.T, np.arange(N)[None, :]].transpose(1, 0, 2)
        else:
            output = states[0]
        return [output, *states] if self.return_state else output

    def _carried_lengths(self, lengths, offsets, T):
        """lengths: [N] for ``carried_steps`` (each padded step after them repeats the last valid output), or None
        for none: Keras 3 repeats the last output over trailing padding; leading padding shows zeros, and with
        ``go_backwards`` (the whole sequence reversed) a left-padded sequence's reversed outputs come first, the
        last of them repeated after them. Inside Bidirectional padded steps are zeros."""
        if lengths is None or self._zero_padding or (self.go_backwards and self._align_output):
            return None
        backwards = self.go_backwards
        if offsets is None:
            carry = None if backwards else lengths
        else:
            carry = np.where(offsets > 0, lengths, T) if backwards else np.where(offsets > 0, T, lengths)
        return None if carry is None or (carry >= T).all() else carry

    def _initial_states(self, initial_state, N):
        if initial_state is None:
            if self.stateful and self.states is not None:
                if self.states[0].shape[0] != N:
                    raise ValueError(f"x: stateful layer {self.name!r} holds states for batches of "
                                     f"{self.states[0].shape[0]}, got a batch of {N}; call reset_states() first")
                return self.states
            return [None] * self.n_states
        states = [initial_state] if isinstance(initial_state, np.ndarray) else list(initial_state)
        if len(states) != self.n_states:
            raise ValueError(f"initial_state: layer {self.name!r} takes {self.n_states} state array(s), "
                             f"got {len(states)}")
        states = [as_float_array(s, self.dtype, "initial_state") for s in states]
        for s, size in zip(states, self._state_sizes):
            if s.shape != (N, size):
                raise ValueError(f"initial_state: expected arrays of shape [N, H] = [{N}, {size}], got {s.shape}")
        return states

    def backward(self, dout):
        """dout: the gradient of the output ([N, T, H] or [N, H]; with return_state a list with one entry
        per returned array, None for zero). Returns dx: [N, T, C]; fills ``grads`` and ``state_grads``."""
        if self._context is None:
            raise RuntimeError(f"layer {self.name!r}: backward() needs a forward call first")
        cache, in_mask, lengths, offsets, (T, N, H) = self._context
        douts = list(dout) if self.return_state else [dout]
        dy = None if douts[0] is None else np.asarray(douts[0], dtype=self.dtype)
        dstates = [None if d is None else np.asarray(d, dtype=self.dtype) for d in douts[1:]]
        dstates += [None] * (self.n_states - len(dstates))
        if self.return_sequences and dy is not None:
            carry = self._carried_lengths(lengths, offsets, T)
            if carry is not None:
                # a padded step's gradient reaches the last valid step it repeats
                valid = np.arange(T) < carry[:, None]
                carried = np.where(valid[:, :, None], 0, dy).sum(axis=1)  # [N, H]
                dy = np.where(valid[:, :, None], dy, 0)
                rows = np.flatnonzero(carry > 0)
                dy[rows, carry[rows] - 1] += carried[rows]
            if offsets is not None:
                dy = shift_steps(dy, offsets, back=self.go_backwards and not self._align_output)
            if self.go_backwards and not self._align_output:
                dy = dy[:, ::-1]
        if self.return_sequences:
            dy_t = np.zeros((T, N, H), self.dtype) if dy is None else dy.transpose(1, 0, 2)
        else:
            dy_t = np.zeros((T, N, H), self.dtype)
            if dy is not None:
                dstates[0] = dy if dstates[0] is None else dstates[0] + dy
        out = getattr(functional, f"{self.cell}_backward")(cache, dy_t, *dstates)
        if offsets is None:
            dx = out[0].transpose(1, 0, 2)
        else:  # back to the steps of the left-padded input, batch-major at once
            dx = out[0][(np.arange(T)[None, :] - offsets[:, None]) % T, np.arange(N)[:, None]]
        if in_mask is not None:
            dx = dx * in_mask
        self.state_grads = list(out[1:1 + self.n_states])
        dW_ih, dW_hh, db_ih, db_hh, *dextra = out[1 + self.n_states:]  # then dpeepholes, dW_hr when present
        self.grads = [dW_ih, dW_hh] + ([db_ih, db_hh] if self.two_biases else [db_ih]) * self.use_bias + dextra
        return dx

    def reset_states(self, states=None):
        """Forget the carried states (stateful layers); ``states`` ([N, H] arrays: h, and c for LSTM) sets them."""
        if states is not None:
            states = [states] if isinstance(states, np.ndarray) else list(states)
            states = self._initial_states(states, np.shape(states[0])[0])
        self.states = states

    # ---- shapes, masks, config ------------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        N, T = input_shape[0], input_shape[1]
        P = self._state_sizes[0]
        output = (N, T, P) if self.return_sequences else (N, P)
        return [output] + [(N, size) for size in self._state_sizes] if self.return_state else output

    def compute_mask(self, x, mask=None):
        if not self.return_sequences:
            return None
        return [mask] + [None] * self.n_states if self.return_state else mask

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, return_sequences=self.return_sequences, return_state=self.return_state,
                      go_backwards=self.go_backwards, stateful=self.stateful, dropout=self.dropout,
                      recurrent_dropout=self.recurrent_dropout, use_bias=self.use_bias,
                      kernel_initializer=initializers.serialize(self.kernel_initializer),
                      recurrent_initializer=initializers.serialize(self.recurrent_initializer),
                      bias_initializer=initializers.serialize(self.bias_initializer))
        config.update({name: getattr(self, name) for name in self.options})
        config.update({argument: getattr(self, argument) for argument in CELLS[self.cell].keras_activations})
        if self.clip is not None:  # not a Keras argument: in the config only when set
            config["clip"] = self.clip
        return config


class SimpleRNN(Recurrent):
    """Elman RNN: ``h_t = activation(W_ih x_t + b_ih + W_hh h_prev + b_hh)``."""

    cell = "rnn"

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)


class LSTM(Recurrent):
    """LSTM (gates i, f, g, o); ``unit_forget_bias`` starts the forget gate's ``b_ih`` block at 1 (Keras);
    ``use_peepholes`` adds ``peepholes: [3H]`` (i, f, o)."""

    cell, options = "lstm", ("unit_forget_bias", "use_peepholes", "proj_size")

    def __init__(self, units, unit_forget_bias=True, use_peepholes=False, proj_size=None, **kwargs):
        self.unit_forget_bias = bool(unit_forget_bias)
        self.use_peepholes = bool(use_peepholes)
        if proj_size is not None and (isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer))
                                      or proj_size < 1):
            raise ValueError(f"proj_size: expected a positive integer or None, got {proj_size!r}")
        self.proj_size = None if proj_size is None else int(proj_size)
        super().__init__(units, **kwargs)

    def _kernel_options(self):
        options = super()._kernel_options()
        options.pop("use_peepholes"), options.pop("proj_size")
        return options


class GRU(Recurrent):
    """GRU (gates r, z, n); ``reset_after=True`` (Keras 3 and PyTorch) applies r after the W_hn product."""

    cell, options = "gru", ("reset_after",)

    def __init__(self, units, reset_after=True, **kwargs):
        self.reset_after = bool(reset_after)
        super().__init__(units, **kwargs)
