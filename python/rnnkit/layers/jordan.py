"""Jordan: a recurrent layer whose recurrence runs through its output.

``h_t = activation(W_xh x_t + W_yh y_prev + b_h)``, ``y_t = output_activation(W_hy h_t + b_y)``, y_prev = 0 (or
``initial_state``) at each sequence's first step. x: [N, T, C] -> [N, T, O] with ``return_sequences``
(zeros at padded steps), else [N, O] (each sequence's output at its own last step). U = ``units`` hidden
units, O = ``output_units`` outputs.

Weights (PyTorch-style, rows are outputs), in this order: ``W_xh: [U, C]``, ``W_yh: [U, O]``,
``W_hy: [O, U]``, then with ``use_bias`` ``b_h: [U]``, ``b_y: [O]``. As in the other recurrent layers,
``kernel_initializer`` is called on the Keras-shaped kernels ``[C, U]`` and ``[U, O]``,
``recurrent_initializer`` on ``[O, U]``, then transposed; both biases get ``bias_initializer``.
There is no dropout, ``stateful`` or ``return_state``, and Bidirectional wraps only SimpleRNN, LSTM and GRU.
"""

from __future__ import annotations

import numpy as np

from .. import functional, initializers
from .base import Layer, as_float_array, get_initializer, sequence_batch
from .recurrent import reverse_steps

__all__ = ["Jordan"]


class Jordan(Layer):
    """Jordan(units, output_units, activation="tanh", output_activation=None, return_sequences=False,
    go_backwards=False, use_bias=True, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
    bias_initializer="zeros").

    activation: "tanh", "relu" or "sigmoid"; output_activation: None (linear), "linear", "tanh" or "sigmoid".
    Masks: [N, T] right-padded. ``call(x, initial_state=y0)`` takes y0: [N, O]; after ``backward`` its
    gradient is ``state_grads[0]``.
    """

    supports_masking = True
    input_ndim = (3, "[N, T, C]")

    def __init__(self, units, output_units, activation="tanh", output_activation=None, return_sequences=False,
                 go_backwards=False, use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        for name, value in (("units", units), ("output_units", output_units)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.units, self.output_units = int(units), int(output_units)
        options = functional._jordan_options(activation, output_activation)  # ValueError for unknown names
        self.activation, self.output_activation = options["activation"], options["output_activation"]
        self.return_sequences, self.go_backwards, self.use_bias = (bool(return_sequences), bool(go_backwards),
                                                                   bool(use_bias))
        self.kernel_initializer = get_initializer("kernel_initializer", kernel_initializer)
        self.recurrent_initializer = get_initializer("recurrent_initializer", recurrent_initializer)
        self.bias_initializer = get_initializer("bias_initializer", bias_initializer)
        self.state_grads = None
        self._context = None

    def build(self, input_shape):
        C, U, O, dt = input_shape[-1], self.units, self.output_units, self.dtype
        if C is None:
            raise ValueError(f"x: layer {self.name!r} needs a known feature size, got input shape {input_shape}")
        self._add_weight("W_xh", self.kernel_initializer((C, U), dt, fan=U).T)
        self._add_weight("W_yh", self.recurrent_initializer((O, U), dt, fan=U).T)
        self._add_weight("W_hy", self.kernel_initializer((U, O), dt, fan=U).T)
        if self.use_bias:
            self._add_weight("b_h", self.bias_initializer((U,), dt, fan=U))
            self._add_weight("b_y", self.bias_initializer((O,), dt, fan=U))
        else:
            self._zero_biases = (np.zeros(U, dt), np.zeros(O, dt))
        self.built = True

    def _kernel_weights(self):
        """(W_xh, W_yh, b_h, W_hy, b_y), the kernels' order."""
        W_xh, W_yh, W_hy = self.weights[:3]
        b_h, b_y = self.weights[3:5] if self.use_bias else self._zero_biases
        return W_xh, W_yh, b_h, W_hy, b_y

    def call(self, x, mask=None, training=False, initial_state=None):
        x, lengths = sequence_batch(self, x, mask)
        N = x.shape[0]
        y0 = None
        if initial_state is not None:
            y0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
            y0 = as_float_array(y0, self.dtype, "initial_state")
            if y0.shape != (N, self.output_units):
                raise ValueError(f"initial_state: expected an array of shape [N, O] = [{N}, {self.output_units}], "
                                 f"got {y0.shape}")
        y_t, y_n, cache = functional.jordan_forward(
            x.transpose(1, 0, 2), *self._kernel_weights(), y0=y0, lengths=lengths, reverse=self.go_backwards,
            activation=self.activation, output_activation=self.output_activation)  # y_t: [T, N, O]
        self._context = (cache, lengths, y_t.shape)
        if not self.return_sequences:
            return y_n
        output = y_t.transpose(1, 0, 2)  # [N, T, O]
        return reverse_steps(output, lengths) if self.go_backwards else output

    def backward(self, dout):
        """dout: [N, T, O] or [N, O] (the output's gradient). Returns dx: [N, T, C]; fills ``grads`` (the
        trainable weights' order) and ``state_grads`` ([dy0])."""
        if self._context is None:
            raise RuntimeError(f"layer {self.name!r}: backward() needs a forward call first")
        cache, lengths, (T, N, O) = self._context
        dout = np.asarray(dout, dtype=self.dtype)
        dy_n = None
        if self.return_sequences:
            dy_t = (reverse_steps(dout, lengths) if self.go_backwards else dout).transpose(1, 0, 2)
        else:
            dy_t, dy_n = np.zeros((T, N, O), self.dtype), dout
        dx, dy0, dW_xh, dW_yh, db_h, dW_hy, db_y = functional.jordan_backward(cache, dy_t, dy_n)
        self.state_grads = [dy0]
        self.grads = [dW_xh, dW_yh, dW_hy, db_h, db_y] if self.use_bias else [dW_xh, dW_yh, dW_hy]
        return dx.transpose(1, 0, 2)

    def compute_output_shape(self, input_shape):
        N, T = input_shape[0], input_shape[1]
        return (N, T, self.output_units) if self.return_sequences else (N, self.output_units)

    def compute_mask(self, x, mask=None):
        return mask if self.return_sequences else None

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, output_units=self.output_units, activation=self.activation,
                      output_activation=self.output_activation, return_sequences=self.return_sequences,
                      go_backwards=self.go_backwards, use_bias=self.use_bias,
                      kernel_initializer=initializers.serialize(self.kernel_initializer),
                      recurrent_initializer=initializers.serialize(self.recurrent_initializer),
                      bias_initializer=initializers.serialize(self.bias_initializer))
        return config
