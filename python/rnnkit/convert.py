"""Weights of a recurrent layer between rnnkit's layout and those of Keras 3 and ONNX.

Shape legend: C = input features, H = hidden units, G = gates (SimpleRNN 1, GRU 3, LSTM 4), D = directions.

rnnkit (PyTorch's layout): ``W_ih: [G*H, C]``, ``W_hh: [G*H, H]``, ``b_ih, b_hh: [G*H]``; LSTM gates i, f, g, o;
GRU gates r, z, n.

Keras 3 (``layer.get_weights()`` of SimpleRNN / LSTM / GRU): ``kernel: [C, G*H]``, ``recurrent_kernel: [H, G*H]``
(the transposes) and ``bias``; LSTM gates i, f, c, o (PyTorch's order, c = g); GRU gates z, r, h.

* SimpleRNN, LSTM and GRU with ``reset_after=False`` have one bias ``[G*H]``. ``to_keras_*`` writes
  ``b_ih + b_hh`` there (the two are only ever added, so the outputs are the same); ``from_keras_*`` puts it
  in ``b_ih`` and zeros in ``b_hh``. So ``from_keras(to_keras(w))`` gives back the weights exactly when
  ``b_hh`` is zero, and the same outputs always.
* GRU with ``reset_after=True`` (Keras 3's default, like PyTorch) has ``bias: [2, 3H]``: row 0 the input bias,
  row 1 the recurrent bias (its h block is the one inside ``r * (...)``), so both biases round-trip exactly.
  Keras' GRU update ``h_t = z * h_prev + (1 - z) * hh`` is PyTorch's.

ONNX (operators RNN, LSTM, GRU): ``W: [D, G*H, C]``, ``R: [D, G*H, H]``, ``B: [D, 2*G*H]`` (``[Wb, Rb]``,
the input then the recurrent bias, both kept exactly); LSTM gates i, o, f, c; GRU gates z, r, h; D = 2 for
``direction="bidirectional"`` (forward first). rnnkit's ``gru_forward(..., reset_after=True)`` is ONNX's
``linear_before_reset=1``, ``reset_after=False`` is the default ``linear_before_reset=0``. The default
activations (sigmoid, tanh; SimpleRNN tanh) are rnnkit's; others, and ``clip``, are options of the functional
kernels (``rnnkit.activations.onnx`` reads ONNX's names). LSTM peepholes (ONNX input ``P: [D, 3H]``, gates i, o, f)
are the ``peepholes: [3H]`` of ``lstm_forward`` (gates i, f, o): ``from_onnx_peepholes`` / ``to_onnx_peepholes``.
``to_onnx_*`` takes one direction's weights (2-D / 1-D) or both stacked
along a leading axis ``[D, ...]``; ``from_onnx_*`` returns the direction ``direction`` (0 forward, 1 reverse).

Every function returns new C-contiguous arrays with the input's dtype; a missing bias (``None``) is zero.
"""

from __future__ import annotations

import numpy as np

from .cells import CELLS

__all__ = [
    "to_keras_rnn", "from_keras_rnn", "to_keras_lstm", "from_keras_lstm", "to_keras_gru", "from_keras_gru",
    "to_onnx_rnn", "from_onnx_rnn", "to_onnx_lstm", "from_onnx_lstm", "to_onnx_gru", "from_onnx_gru",
    "to_onnx_peepholes", "from_onnx_peepholes",
]

_GATES = {name: spec.G for name, spec in CELLS.items()}
# other layout's gate block k holds rnnkit's gate block ORDER[cell][k]
_KERAS_ORDER = {name: spec.keras_order() for name, spec in CELLS.items()}  # i f c o = i f g o; z r h = z r n
_ONNX_ORDER = {name: spec.onnx_order() for name, spec in CELLS.items()}  # i o f c <- i f g o; z r h <- r z n
# ONNX's peephole block k holds rnnkit's block _ONNX_PEEPHOLES[k]: i o f <- i f o
_PEEPHOLES = CELLS["lstm"].params[0]
_ONNX_PEEPHOLES = [_PEEPHOLES[2].index(g) for g in _PEEPHOLES[3]]


def _reorder(a, order, axis):
    """``a`` with its G equal gate blocks along ``axis`` put in ``order`` (block k of the result = block
    order[k] of ``a``)."""
    blocks = np.split(a, len(order), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[k] for k in order], axis=axis))


def _inverse(order):
    return list(np.argsort(order))


def _float_array(a, name):
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
    return a


def _check_shape(a, name, expected):
    """Raise ValueError naming ``name`` unless ``a.shape == expected``."""
    if a.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {list(expected)}, got {list(a.shape)}")


def _rnnkit_weights(cell, W_ih, W_hh, b_ih, b_hh, lead=()):
    """Checked rnnkit weights with ``lead`` leading axes (``()`` or ``(D,)``); None biases become zeros.
    Returns ``(W_ih [*lead, G*H, C], W_hh [*lead, G*H, H], b_ih [*lead, G*H], b_hh [*lead, G*H], H)``."""
    G = _GATES[cell]
    W_ih, W_hh = _float_array(W_ih, "W_ih"), _float_array(W_hh, "W_hh")
    if W_hh.ndim != len(lead) + 2 or W_hh.shape[-2] != G * W_hh.shape[-1]:
        raise ValueError(f"W_hh: expected shape [{', '.join(['D'] * len(lead) + [f'{G}*H', 'H'])}] "
                         f"({cell}, G={G}), got {list(W_hh.shape)}")
    H = W_hh.shape[-1]
    if W_ih.ndim != len(lead) + 2:
        raise ValueError(f"W_ih: expected {len(lead) + 2} axes [{', '.join(['D'] * len(lead) + [f'{G}*H', 'C'])}], "
                         f"got shape {list(W_ih.shape)}")
    _check_shape(W_ih, "W_ih", (*W_hh.shape[:-2], G * H, W_ih.shape[-1]))
    biases = []
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        b = np.zeros((*W_hh.shape[:-2], G * H), W_hh.dtype) if b is None else _float_array(b, name)
        _check_shape(b, name, (*W_hh.shape[:-2], G * H))
        biases.append(b)
    return W_ih, W_hh, biases[0], biases[1], H


# ---- Keras ------------------------------------------------------------------------------------------

def _to_keras(cell, W_ih, W_hh, b_ih, b_hh, two_biases=False):
    W_ih, W_hh, b_ih, b_hh, _ = _rnnkit_weights(cell, W_ih, W_hh, b_ih, b_hh)
    order = _KERAS_ORDER[cell]
    kernel = _reorder(W_ih.T, order, axis=1)  # [C, G*H]
    recurrent_kernel = _reorder(W_hh.T, order, axis=1)  # [H, G*H]
    if two_biases:
        bias = _reorder(np.stack([b_ih, b_hh]), order, axis=1)  # [2, G*H]
    else:
        bias = _reorder(b_ih + b_hh, order, axis=0)  # [G*H]
    return kernel, recurrent_kernel, bias


def _from_keras(cell, kernel, recurrent_kernel, bias, two_biases=False):
    G = _GATES[cell]
    kernel = _float_array(kernel, "kernel")
    recurrent_kernel = _float_array(recurrent_kernel, "recurrent_kernel")
    if recurrent_kernel.ndim != 2 or recurrent_kernel.shape[1] != G * recurrent_kernel.shape[0]:
        raise ValueError(f"recurrent_kernel: expected shape [H, {G}*H] ({cell}, G={G}), "
                         f"got {list(recurrent_kernel.shape)}")
    H = recurrent_kernel.shape[0]
    if kernel.ndim != 2:
        raise ValueError(f"kernel: expected shape [C, {G * H}], got {list(kernel.shape)}")
    _check_shape(kernel, "kernel", (kernel.shape[0], G * H))
    inverse = _inverse(_KERAS_ORDER[cell])
    bias_shape = (2, G * H) if two_biases else (G * H,)
    if bias is None:
        bias = np.zeros(bias_shape, kernel.dtype)
    bias = _float_array(bias, "bias")
    if bias.shape != bias_shape:
        hint = " (a [2, 3H] bias is a GRU with reset_after=True, a [3H] one reset_after=False)" if cell == "gru" else ""
        raise ValueError(f"bias: expected shape {list(bias_shape)}, got {list(bias.shape)}{hint}")
    W_ih = _reorder(kernel, inverse, axis=1).T  # [G*H, C]
    W_hh = _reorder(recurrent_kernel, inverse, axis=1).T
    if two_biases:
        b_ih, b_hh = _reorder(bias, inverse, axis=1)
    else:
        b_ih, b_hh = _reorder(bias, inverse, axis=0), np.zeros(G * H, bias.dtype)
    return tuple(np.ascontiguousarray(a) for a in (W_ih, W_hh, b_ih, b_hh))


def to_keras_rnn(W_ih, W_hh, b_ih=None, b_hh=None):
    """rnnkit SimpleRNN weights -> Keras ``(kernel [C, H], recurrent_kernel [H, H], bias [H] = b_ih + b_hh)``.

    W_ih: [H, C]; W_hh: [H, H]; b_ih, b_hh: [H] or None.
    """
    return _to_keras("rnn", W_ih, W_hh, b_ih, b_hh)


def from_keras_rnn(kernel, recurrent_kernel, bias=None):
    """Keras SimpleRNN weights -> rnnkit ``(W_ih [H, C], W_hh [H, H], b_ih [H] = bias, b_hh [H] = 0)``.

    kernel: [C, H]; recurrent_kernel: [H, H]; bias: [H] or None (use_bias=False).
    """
    return _from_keras("rnn", kernel, recurrent_kernel, bias)


def to_keras_lstm(W_ih, W_hh, b_ih=None, b_hh=None):
    """rnnkit LSTM weights -> Keras ``(kernel [C, 4H], recurrent_kernel [H, 4H], bias [4H] = b_ih + b_hh)``.

    W_ih: [4H, C]; W_hh: [4H, H]; b_ih, b_hh: [4H] or None. The gate order (i, f, g, o) is Keras' own.
    """
    return _to_keras("lstm", W_ih, W_hh, b_ih, b_hh)


def from_keras_lstm(kernel, recurrent_kernel, bias=None):
    """Keras LSTM weights -> rnnkit ``(W_ih [4H, C], W_hh [4H, H], b_ih [4H] = bias, b_hh [4H] = 0)``.

    kernel: [C, 4H]; recurrent_kernel: [H, 4H]; bias: [4H] or None (use_bias=False).
    """
    return _from_keras("lstm", kernel, recurrent_kernel, bias)


def to_keras_gru(W_ih, W_hh, b_ih=None, b_hh=None, reset_after=True):
    """rnnkit GRU weights (gates r, z, n) -> Keras ``(kernel [C, 3H], recurrent_kernel [H, 3H], bias)`` (z, r, h).

    W_ih: [3H, C]; W_hh: [3H, H]; b_ih, b_hh: [3H] or None. ``bias`` is ``[2, 3H]`` (input, recurrent) with
    ``reset_after=True``; ``[3H] = b_ih + b_hh`` with ``reset_after=False`` (for weights used by
    ``gru_forward(..., reset_after=False)``, where ``b_hn`` sits outside ``r * ...`` and so adds to ``b_in``).
    """
    return _to_keras("gru", W_ih, W_hh, b_ih, b_hh, two_biases=bool(reset_after))


def from_keras_gru(kernel, recurrent_kernel, bias=None, reset_after=True):
    """Keras GRU weights (gates z, r, h) -> rnnkit ``(W_ih [3H, C], W_hh [3H, H], b_ih [3H], b_hh [3H])`` (r, z, n).

    kernel: [C, 3H]; recurrent_kernel: [H, 3H]; bias: [2, 3H] with ``reset_after=True`` (rows: b_ih, b_hh),
    [3H] with ``reset_after=False`` (into b_ih; b_hh zero), or None. Run the result with
    ``gru_forward(..., reset_after=reset_after)``.
    """
    return _from_keras("gru", kernel, recurrent_kernel, bias, two_biases=bool(reset_after))


# ---- ONNX -------------------------------------------------------------------------------------------

def _to_onnx(cell, W_ih, W_hh, b_ih, b_hh):
    lead = () if np.ndim(W_hh) == 2 else (np.shape(W_hh)[0],)
    W_ih, W_hh, b_ih, b_hh, _ = _rnnkit_weights(cell, W_ih, W_hh, b_ih, b_hh, lead)
    if not lead:
        W_ih, W_hh, b_ih, b_hh = W_ih[None], W_hh[None], b_ih[None], b_hh[None]
    order = _ONNX_ORDER[cell]
    W = _reorder(W_ih, order, axis=1)  # [D, G*H, C]
    R = _reorder(W_hh, order, axis=1)  # [D, G*H, H]
    B = np.concatenate([_reorder(b_ih, order, axis=1), _reorder(b_hh, order, axis=1)], axis=1)  # [D, 2*G*H]
    return W, R, B


def _from_onnx(cell, W, R, B, direction):
    G = _GATES[cell]
    W, R = _float_array(W, "W"), _float_array(R, "R")
    if R.ndim != 3 or R.shape[1] != G * R.shape[2]:
        raise ValueError(f"R: expected shape [D, {G}*H, H] ({cell}, G={G}), got {list(R.shape)}")
    D, _, H = R.shape
    if W.ndim != 3:
        raise ValueError(f"W: expected shape [{D}, {G * H}, C], got {list(W.shape)}")
    _check_shape(W, "W", (D, G * H, W.shape[2]))
    B = np.zeros((D, 2 * G * H), W.dtype) if B is None else _float_array(B, "B")
    _check_shape(B, "B", (D, 2 * G * H))
    if direction not in range(D):
        raise ValueError(f"direction: expected an index in [0, {D}) for weights with D={D}, got {direction!r}")
    inverse = _inverse(_ONNX_ORDER[cell])
    W_ih = _reorder(W[direction], inverse, axis=0)  # [G*H, C]
    W_hh = _reorder(R[direction], inverse, axis=0)  # [G*H, H]
    b_ih = _reorder(B[direction, :G * H], inverse, axis=0)
    b_hh = _reorder(B[direction, G * H:], inverse, axis=0)
    return W_ih, W_hh, b_ih, b_hh


def to_onnx_rnn(W_ih, W_hh, b_ih=None, b_hh=None):
    """rnnkit SimpleRNN weights -> ONNX RNN ``(W [D, H, C], R [D, H, H], B [D, 2H])``.

    W_ih: [H, C] or [D, H, C]; W_hh: [H, H] or [D, H, H]; b_ih, b_hh: [H] or [D, H], or None.
    """
    return _to_onnx("rnn", W_ih, W_hh, b_ih, b_hh)


def from_onnx_rnn(W, R, B=None, direction=0):
    """ONNX RNN weights -> rnnkit ``(W_ih [H, C], W_hh [H, H], b_ih [H], b_hh [H])`` of one direction.

    W: [D, H, C]; R: [D, H, H]; B: [D, 2H] or None; direction: 0 (forward) or 1 (reverse, D = 2).
    """
    return _from_onnx("rnn", W, R, B, direction)


def to_onnx_lstm(W_ih, W_hh, b_ih=None, b_hh=None):
    """rnnkit LSTM weights (gates i, f, g, o) -> ONNX LSTM ``(W [D, 4H, C], R [D, 4H, H], B [D, 8H])`` (i, o, f, c).

    W_ih: [4H, C] or [D, 4H, C]; W_hh: [4H, H] or [D, 4H, H]; b_ih, b_hh: [4H] or [D, 4H], or None.
    """
    return _to_onnx("lstm", W_ih, W_hh, b_ih, b_hh)


def from_onnx_lstm(W, R, B=None, direction=0):
    """ONNX LSTM weights (gates i, o, f, c) -> rnnkit ``(W_ih [4H, C], W_hh [4H, H], b_ih [4H], b_hh [4H])``.

    W: [D, 4H, C]; R: [D, 4H, H]; B: [D, 8H] or None; direction: 0 (forward) or 1 (reverse, D = 2).
    """
    return _from_onnx("lstm", W, R, B, direction)


def to_onnx_gru(W_ih, W_hh, b_ih=None, b_hh=None):
    """rnnkit GRU weights (gates r, z, n) -> ONNX GRU ``(W [D, 3H, C], R [D, 3H, H], B [D, 6H])`` (z, r, h).

    W_ih: [3H, C] or [D, 3H, C]; W_hh: [3H, H] or [D, 3H, H]; b_ih, b_hh: [3H] or [D, 3H], or None.
    Give the ONNX node ``linear_before_reset=1`` for weights run with ``reset_after=True``, 0 otherwise.
    """
    return _to_onnx("gru", W_ih, W_hh, b_ih, b_hh)


def from_onnx_gru(W, R, B=None, direction=0):
    """ONNX GRU weights (gates z, r, h) -> rnnkit ``(W_ih [3H, C], W_hh [3H, H], b_ih [3H], b_hh [3H])``.

    W: [D, 3H, C]; R: [D, 3H, H]; B: [D, 6H] or None; direction: 0 (forward) or 1 (reverse, D = 2).
    Run the result with ``reset_after = bool(linear_before_reset)``.
    """
    return _from_onnx("gru", W, R, B, direction)


def to_onnx_peepholes(peepholes):
    """rnnkit LSTM peepholes ``[3H]`` or ``[D, 3H]`` (gates i, f, o) -> ONNX's ``P [D, 3H]`` (i, o, f)."""
    P = _float_array(peepholes, "peepholes")
    if P.ndim not in (1, 2) or P.shape[-1] % 3:
        raise ValueError(f"peepholes: expected shape [3H] or [D, 3H], got {list(P.shape)}")
    P = P[None] if P.ndim == 1 else P
    return _reorder(P, _ONNX_PEEPHOLES, axis=1)


def from_onnx_peepholes(P, direction=0):
    """ONNX LSTM peepholes ``P [D, 3H]`` (i, o, f) -> rnnkit's ``peepholes [3H]`` (i, f, o) of one direction."""
    P = _float_array(P, "P")
    if P.ndim != 2 or P.shape[1] % 3:
        raise ValueError(f"P: expected shape [D, 3H], got {list(P.shape)}")
    if direction not in range(P.shape[0]):
        raise ValueError(f"direction: expected an index in [0, {P.shape[0]}) for P with D={P.shape[0]}, "
                         f"got {direction!r}")
    return _reorder(P[direction], _inverse(_ONNX_PEEPHOLES), axis=0)
