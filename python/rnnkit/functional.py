"""Forward and backpropagation through time over whole sequences, in C++.

Shape legend: T = time steps, N = batch, C = input features, H = hidden units,
G = gates (RNN 1, GRU 3, LSTM 4). Arrays are time-major: ``x: [T, N, C]``,
``y: [T, N, H]``; states ``h0, c0, h_n, c_n: [N, H]``. Weights use PyTorch's
layout: ``W_ih: [G*H, C]``, ``W_hh: [G*H, H]``, ``b_ih, b_hh: [G*H]``; LSTM gates
i, f, g, o; GRU gates r, z, n.

``lengths: [N]`` (integers in [0, T]) gives each sequence's own length: steps past
it leave the state unchanged and output zeros, and ``h_n`` is the state after the
sequence's own last step. ``reverse=True`` runs each sequence from its own last
step back to its first, with outputs aligned with the input steps.
``recurrent_mask: [N, H]`` (Keras' recurrent dropout) multiplies ``h_prev`` where it
enters the ``W_hh`` product, the same mask at every step; the state itself is kept
whole (GRU's ``z * h_prev`` term sees it unmasked). The dtype of
``x`` (float32 or float64) is the dtype of the computation; every other array must
have it too.

``return_cache=False`` (inference, like PyTorch under ``no_grad``) returns ``None`` in place of the
cache and runs with small working buffers instead of keeping every step's state and gates.

Variants of the cells (``rnnkit.cells`` lists each cell's facts):

* ``activations``: the cell's activations in ONNX's order, RNN ``[f]``, GRU ``[f, g]``, LSTM ``[f, g, h]``
  (f on the gates i, f, o / r, z; g on the candidate; h on the LSTM's ``c_t``), each a Keras name
  (``"hard_sigmoid"``, ``"relu"``, ...) or a kernel triple ``(name, alpha, beta)`` of ``rnnkit.activations``.
  The defaults (RNN tanh, GRU sigmoid/tanh, LSTM sigmoid/tanh/tanh) keep the fused, vectorised path; other
  activations run element by element.
* ``clip``: ONNX's cell clip, every gate's pre-activation limited to ``[-clip, clip]`` (not the LSTM's ``c_t``
  where it enters h, as in ONNX Runtime); a clipped value passes no gradient.
* ``peepholes: [3H]`` (LSTM): ONNX's ``P`` in the order i, f, o (``rnnkit.convert.from_onnx_lstm`` reorders
  it): ``i = f(... + p_i * c_prev)``, ``f = f(... + p_f * c_prev)``, ``o = f(... + p_o * c_t)``; its gradient
  follows the biases' in what ``lstm_backward`` returns.
* ``W_hr: [P, H]`` (LSTM): PyTorch's projection (``nn.LSTM(proj_size=P)``, its ``weight_hr``):
  ``h_t = W_hr (o * h(c_t))``, so that ``h0, h_n: [N, P]``, ``y: [T, N, P]``, ``W_hh: [4H, P]`` while ``c`` keeps H;
  its gradient comes last.

Arrays that are not C-contiguous (Fortran order, strided views) are copied once
per call, on purpose; everything else is passed to the kernels without a copy.
``rnnkit.reference`` holds NumPy implementations with the same signatures.
"""

from __future__ import annotations

from . import _isa
from .cells import cell_options, options_valid as _options_valid

__all__ = [
    "Cache",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]

_NONLINEARITIES = ("tanh", "relu")


class Cache:
    """What a forward call keeps for its backward call. Read-only; reusable."""

    __slots__ = ("cell", "options", "inputs", "lengths", "recurrent_mask", "reverse", "arrays", "params", "W_hr")

    def __init__(self, cell, options, inputs, lengths, recurrent_mask, reverse, arrays, params=None, W_hr=None):
        self.cell = cell
        self.options = options
        self.inputs = inputs  # (x, W_ih, W_hh, b_ih, b_hh)
        self.params = params  # the cell's own parameters (LSTM peepholes [3H]) or None
        self.W_hr = W_hr  # the LSTM's output projection [P, H] or None
        self.lengths = lengths
        self.recurrent_mask = recurrent_mask
        self.reverse = reverse
        # h_prev [T, N, H] the state entering each step; gates [T, N, G*H] activated gates;
        # aux [T, N, H] the cell's own record (LSTM c_prev; GRU W_hn h_rec + b_hn or r * h_rec);
        # h_rec [T, N, H] h_prev * recurrent_mask (only with a mask)
        self.arrays = arrays

    @property
    def x(self):
        return self.inputs[0]

    def __repr__(self):
        T, N, C = self.x.shape
        return f"<rnnkit.functional.Cache of {self.cell}_forward: T={T}, N={N}, C={C}, H={self.inputs[2].shape[1]}>"


def _forward(cell, options, x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, reverse, recurrent_mask, return_cache,
             params=None, W_hr=None):
    # the compiled module converts and checks every argument: nothing per array here, which a streaming
    # application (one call per step) would pay at every step
    y, h_n, c_n, arrays, inputs = getattr(_isa.current, f"{cell}_forward")(
        x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, recurrent_mask, bool(reverse), options, bool(return_cache),
        params, W_hr)
    if not return_cache:
        return y, h_n, c_n, None
    return y, h_n, c_n, Cache(cell, options, inputs[:5], inputs[5], inputs[6], bool(reverse), arrays, inputs[7],
                              inputs[8])


def _backward(cell, cache, dy, dh_n, dc_n):
    if not isinstance(cache, Cache):
        raise TypeError(f"cache: expected the rnnkit.functional.Cache returned by {cell}_forward, "
                        f"got {type(cache).__module__}.{type(cache).__qualname__}")
    if cache.cell != cell:
        raise TypeError(f"cache: expected a cache from {cell}_forward, got one from {cache.cell}_forward")
    if not _options_valid(cache.options):
        raise TypeError(f"cache: its options must be as {cell}_forward made them (flags, activations, clip); got "
                        f"{cache.options!r:.200}")
    kernel = getattr(_isa.current, f"{cell}_backward")
    c = cache
    out = kernel(*c.inputs, c.lengths, c.recurrent_mask, c.reverse, c.arrays, dy, dh_n, dc_n, c.options,
                 getattr(c, "params", None), getattr(c, "W_hr", None))
    # the seven of every cell, then the gradients of the extra weights the forward had
    return tuple(out[:7]) + tuple(g for g in out[7:] if g is not None)


def rnn_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, lengths=None, reverse=False, nonlinearity="tanh", *,
                activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """Elman RNN over whole sequences: ``h_t = act(W_ih x_t + b_ih + W_hh h_prev + b_hh)``.

    x: [T, N, C]; W_ih: [H, C]; W_hh: [H, H]; b_ih, b_hh: [H]; h0: [N, H] or None (zeros);
    lengths: [N] or None; nonlinearity: "tanh" or "relu" (PyTorch's), or ``activations=[act]`` (any, see the
    module's docstring); clip: float or None; recurrent_mask: [N, H] or None.
    Returns ``y: [T, N, H], h_n: [N, H], cache``.
    """
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {_NONLINEARITIES}, got {nonlinearity!r}")
    if activations is None:
        activations = [nonlinearity]
    elif nonlinearity != "tanh":
        raise ValueError("nonlinearity: give either nonlinearity or activations, not both")
    options = cell_options("rnn", activations, clip)
    y, h_n, _, cache = _forward("rnn", options, x, W_ih, W_hh, b_ih, b_hh, h0, None,
                                lengths, reverse, recurrent_mask, return_cache)
    return y, h_n, cache


def rnn_backward(cache, dy, dh_n=None):
    """Gradients of an Elman RNN. dy: [T, N, H]; dh_n: [N, H] or None (zero).

    Returns ``dx: [T, N, C], dh0: [N, H], dW_ih: [H, C], dW_hh: [H, H], db_ih: [H], db_hh: [H]``.
    """
    dx, dh0, _, dW_ih, dW_hh, db_ih, db_hh = _backward("rnn", cache, dy, dh_n, None)[:7]
    return dx, dh0, dW_ih, dW_hh, db_ih, db_hh


def lstm_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, c0=None, lengths=None, reverse=False, *, peepholes=None,
                 W_hr=None, activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """LSTM over whole sequences (gates i, f, g, o).

    x: [T, N, C]; W_ih: [4H, C]; W_hh: [4H, H]; b_ih, b_hh: [4H]; h0, c0: [N, H] or None (zeros);
    lengths: [N] or None; peepholes: [3H] (i, f, o) or None; W_hr: [P, H] or None (then ``W_hh: [4H, P]``,
    ``h0: [N, P]``); activations: [f, g, h] or None (sigmoid, tanh, tanh); clip: float or None;
    recurrent_mask: [N, H] ([N, P]) or None.
    Returns ``y: [T, N, H], h_n: [N, H], c_n: [N, H], cache`` (``y: [T, N, P], h_n: [N, P]`` with W_hr).
    """
    options = cell_options("lstm", activations, clip)
    if peepholes is not None:
        options["peepholes"] = True
    return _forward("lstm", options, x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, reverse, recurrent_mask,
                    return_cache, peepholes, W_hr)


def lstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Gradients of an LSTM. dy: [T, N, H]; dh_n, dc_n: [N, H] or None (zero).

    Returns ``dx: [T, N, C], dh0: [N, H], dc0: [N, H], dW_ih: [4H, C], dW_hh: [4H, H],
    db_ih: [4H], db_hh: [4H]``, then ``dpeepholes: [3H]`` and ``dW_hr: [P, H]`` when the forward had them (with
    W_hr: ``dh0: [N, P], dW_hh: [4H, P]``, and dy, dh_n have P values).
    """
    return _backward("lstm", cache, dy, dh_n, dc_n)


def gru_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, lengths=None, reverse=False, reset_after=True, *,
                activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """GRU over whole sequences (gates r, z, n).

    ``reset_after=True`` (PyTorch): ``n = tanh(W_in x + b_in + r * (W_hn h_prev + b_hn))``;
    ``reset_after=False`` (classic Keras, ONNX): ``n = tanh(W_in x + b_in + W_hn (r * h_prev) + b_hn)``.
    x: [T, N, C]; W_ih: [3H, C]; W_hh: [3H, H]; b_ih, b_hh: [3H]; h0: [N, H] or None (zeros);
    lengths: [N] or None; activations: [f, g] or None (sigmoid, tanh); clip: float or None;
    recurrent_mask: [N, H] or None. Returns ``y: [T, N, H], h_n: [N, H], cache``.
    """
    options = cell_options("gru", activations, clip, reset_after=reset_after)
    y, h_n, _, cache = _forward("gru", options, x, W_ih, W_hh, b_ih, b_hh, h0, None,
                                lengths, reverse, recurrent_mask, return_cache)
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None):
    """Gradients of a GRU. dy: [T, N, H]; dh_n: [N, H] or None (zero).

    Returns ``dx: [T, N, C], dh0: [N, H], dW_ih: [3H, C], dW_hh: [3H, H], db_ih: [3H], db_hh: [3H]``.
    """
    dx, dh0, _, dW_ih, dW_hh, db_ih, db_hh = _backward("gru", cache, dy, dh_n, None)[:7]
    return dx, dh0, dW_ih, dW_hh, db_ih, db_hh


# --------------------------------------------------------------------------------------------------
# Jordan network: the recurrence runs through the output
# --------------------------------------------------------------------------------------------------

_JORDAN_ACTIVATIONS = ("tanh", "relu", "sigmoid")
_JORDAN_OUTPUT_ACTIVATIONS = ("linear", "tanh", "sigmoid")


def _jordan_options(activation, output_activation):
    """The kernels' activation names; ValueError naming the argument for an unknown one."""
    output_activation = "linear" if output_activation is None else output_activation
    if activation not in _JORDAN_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {_JORDAN_ACTIVATIONS}, got {activation!r}")
    if output_activation not in _JORDAN_OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation: expected one of {_JORDAN_OUTPUT_ACTIVATIONS} or None, "
                         f"got {output_activation!r}")
    return {"activation": activation, "output_activation": output_activation}


class JordanCache(Cache):
    """What jordan_forward keeps for jordan_backward: ``inputs`` = (x, W_xh, W_yh, b_h, W_hy, b_y);
    ``arrays``: y_prev [T, N, O] the state entering each step, h [T, N, U] the hidden layer, y_step [T, N, O]
    each step's output as computed (also past a sequence's length, where y holds zeros)."""

    __slots__ = ()

    def __repr__(self):
        T, N, C = self.x.shape
        U, O = self.inputs[2].shape
        return f"<rnnkit.functional.JordanCache of jordan_forward: T={T}, N={N}, C={C}, U={U}, O={O}>"


def jordan_forward(x, W_xh, W_yh, b_h, W_hy, b_y, y0=None, lengths=None, reverse=False, activation="tanh",
                   output_activation=None):
    """Jordan network over whole sequences; the state is the output y (U = hidden units, O = outputs).

    ``h_t = activation(W_xh x_t + W_yh y_prev + b_h)``, ``y_t = output_activation(W_hy h_t + b_y)``, with
    y_prev = y0 (zeros when None) at a sequence's first step. activation: "tanh", "relu" or "sigmoid";
    output_activation: None (linear), "linear", "tanh" or "sigmoid". lengths and reverse as for the other cells:
    past a sequence's length the state y is kept and y_t is 0.
    x: [T, N, C]; W_xh: [U, C]; W_yh: [U, O]; b_h: [U]; W_hy: [O, U]; b_y: [O]; y0: [N, O] or None;
    lengths: [N] or None. Returns ``y: [T, N, O], y_n: [N, O], cache`` (the hidden layer is ``cache.arrays["h"]``).
    """
    options = _jordan_options(activation, output_activation)
    reverse = bool(reverse)
    y, y_n, arrays, inputs = _isa.current.jordan_forward(x, W_xh, W_yh, b_h, W_hy, b_y, y0, lengths, reverse,
                                                         **options)
    return y, y_n, JordanCache("jordan", options, inputs[:6], inputs[6], None, reverse, arrays)


def jordan_backward(cache, dy, dy_n=None):
    """Gradients of a Jordan network. dy: [T, N, O]; dy_n: [N, O] or None (zero).

    Returns ``dx: [T, N, C], dy0: [N, O], dW_xh: [U, C], dW_yh: [U, O], db_h: [U], dW_hy: [O, U], db_y: [O]``.
    """
    if not isinstance(cache, JordanCache):
        got = (f"one from {cache.cell}_forward" if isinstance(cache, Cache)
               else f"{type(cache).__module__}.{type(cache).__qualname__}")
        raise TypeError(f"cache: expected the rnnkit.functional.JordanCache returned by jordan_forward, got {got}")
    c = cache
    return _isa.current.jordan_backward(*c.inputs, c.lengths, c.reverse, **c.options, cache=c.arrays,
                                        dy=dy, dy_n=dy_n)


__all__ += ["JordanCache", "jordan_forward", "jordan_backward"]
