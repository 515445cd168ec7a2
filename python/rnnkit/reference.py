"""NumPy reference implementation of the rnnkit functional API (the test oracle).

Written directly from the equations of the API contract and looping over time steps in Python:
it is meant to be easy to read and check, not to be fast. Only numpy is needed.

Shape legend
    T  time steps
    N  batch size
    C  input features
    H  hidden units
    G  gates per cell: RNN 1, GRU 3 (r, z, n), LSTM 4 (i, f, g, o)

Arrays are time-major: x [T, N, C], y [T, N, H]. The weights use PyTorch's layout:
W_ih [G*H, C], W_hh [G*H, H], b_ih [G*H], b_hh [G*H], with the gate blocks stacked along the first axis.
Everything is computed in x's dtype (float32 or float64) and returned in that dtype.

Lengths and direction: step t of sequence n is valid iff t < lengths[n]. At an invalid step the state is
left unchanged and the output is 0. Forward runs t = 0, ..., T-1 and reverse runs t = T-1, ..., 0. A
sequence's invalid steps come after its valid ones going forward and before them going in reverse (where
the state is then still h0), so one masked time loop implements both directions.

Recurrent mask (Keras' recurrent dropout): recurrent_mask [N, H] or None. h_rec = h_prev * recurrent_mask is
what enters the W_hh product, the same mask at every step; the state itself is kept whole (GRU's z * h_prev
term sees h_prev unmasked). None means no mask (h_rec = h_prev).

Activations and clip (`rnnkit.functional`'s module docstring): each gate's activation is a kernel triple of
`rnnkit.activations`, applied to its pre-activation clipped to [-clip, clip] when a clip is given (the gates'
pre-activations, not the LSTM's c_t where it enters h); the gradient of a clipped pre-activation (|a| > clip)
is zero.

Each cell is a pair of step functions (one time step forward, one time step backward); the time loops
`_forward_loop` / `_backward_loop` are shared by the three cells.
"""

import functools

import numpy as np

from . import activations as _activations
from .cells import cell_options, spec as _spec

__all__ = [
    "Cache",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


class Cache:
    """What a forward pass saves for its backward pass.

    Attributes:
        cell: "rnn", "lstm" or "gru", the forward that made it (backward checks it).
        options: the cell's options, {"nonlinearity": "tanh"|"relu"} or {"reset_after": bool}; {} for LSTM.
        reverse: the direction of the forward pass.
        x: [T, N, C] input, in the computation dtype.
        weights: (W_ih [G*H, C], W_hh [G*H, H], b_ih [G*H], b_hh [G*H]), in the computation dtype.
        valid: [T, N] bool, valid[t, n] = t < lengths[n].
        recurrent_mask: [N, H] in the computation dtype, or None (no mask).
        steps: list of T tuples, steps[t] = what the cell's step function saved at time step t.
    """

    def __init__(self, cell, options, reverse, x, weights, valid, recurrent_mask, steps):
        self.cell = cell
        self.options = options
        self.reverse = reverse
        self.x = x
        self.weights = weights
        self.valid = valid
        self.recurrent_mask = recurrent_mask
        self.steps = steps

    def __repr__(self):
        T, N, C = self.x.shape
        return f"<reference.Cache cell={self.cell!r} options={self.options!r} reverse={self.reverse} T={T} N={N} C={C}>"


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


class _Gate:
    """One activation of a cell with the clip of its pre-activation."""

    def __init__(self, triple, clip):
        self.triple, self.clip = triple, clip

    def __call__(self, a):
        """act(clip(a)); a: any shape."""
        return _activations.forward(self.triple, a if self.clip is None else np.clip(a, -self.clip, self.clip))

    def backward(self, a, y, d):
        """d * act'(a) at y = self(a); zero where the pre-activation a was clipped."""
        d = d * _activations.derivative(self.triple, y)
        return d if self.clip is None else np.where(np.abs(a) > self.clip, 0, d)


def _cell_gates(cell, options):
    """The cell's gates (one _Gate per activation role, in the kernels' order) from its options."""
    spec = _spec(cell)
    triples = options.get("activations") or tuple(_activations.KERAS[d] for _, d, _ in spec.activations)
    # the clip limits the gates' pre-activations, not the LSTM's c_t where it enters h (as ONNX Runtime does)
    return [_Gate(t, options.get("clip") if gates else None) for t, (_, _, gates) in zip(triples, spec.activations)]


def _prepare(x, weights, G, lengths, states, recurrent_mask, H=None):
    """Light validation; cast everything to x's dtype; replace None states by zeros.

    x: [T, N, C]; weights: (W_ih [G*H, C], W_hh [G*H, P], b_ih [G*H], b_hh [G*H]), P = the state h's size (H,
    unless an LSTM projects h: then H is given); lengths: [N] ints in [0, T] or None; states: tuple of arrays
    or None, h [N, P] then c [N, H]; recurrent_mask: [N, P] or None.
    Returns (x, weights, valid [T, N] bool, states, recurrent_mask) with fresh state arrays.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be [T, N, C], got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    dtype = x.dtype
    T, N, C = x.shape
    W_ih, W_hh, b_ih, b_hh = (np.asarray(a, dtype=dtype) for a in weights)
    P = W_hh.shape[-1]
    H = P if H is None else H
    expected = {"W_ih": (G * H, C), "W_hh": (G * H, P), "b_ih": (G * H,), "b_hh": (G * H,)}
    for name, a in zip(expected, (W_ih, W_hh, b_ih, b_hh)):
        if a.shape != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {a.shape}")

    if lengths is None:
        lengths = np.full(N, T)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or (N and (lengths.min() < 0 or lengths.max() > T)):
            raise ValueError(f"lengths must be [N] = [{N}] values in [0, {T}], got {lengths!r}")
    # valid[t, n]: step t of sequence n is valid iff t < lengths[n]
    valid = np.arange(T)[:, None] < lengths[None, :]

    fresh_states = []
    for k, s in enumerate(states):
        size = P if k == 0 else H
        s = np.zeros((N, size), dtype=dtype) if s is None else np.array(s, dtype=dtype)  # copy
        if s.shape != (N, size):
            raise ValueError(f"initial states must be [N, H] = [{N}, {size}], got {s.shape}")
        fresh_states.append(s)
    if recurrent_mask is not None:
        recurrent_mask = np.asarray(recurrent_mask, dtype=dtype)
        if recurrent_mask.shape != (N, P):
            raise ValueError(f"recurrent_mask must be [N, H] = [{N}, {P}], got {recurrent_mask.shape}")
    return x, (W_ih, W_hh, b_ih, b_hh), valid, tuple(fresh_states), recurrent_mask


def _prepare_grads(cache, dy, dstates):
    """dy: [T, N, H]; dstates: tuple of [N, H] arrays or None (= zero). Cast to the cache's dtype."""
    T, N, _ = cache.x.shape
    H = cache.weights[1].shape[1]  # the size of the state h (and of y): P for a projecting LSTM
    sizes = (H, cache.weights[0].shape[0] // 4)  # an LSTM's c has the cell's own H
    dtype = cache.x.dtype
    dy = np.asarray(dy, dtype=dtype)
    if dy.shape != (T, N, H):
        raise ValueError(f"dy must be [T, N, H] = [{T}, {N}, {H}], got {dy.shape}")
    fresh = []
    for d, size in zip(dstates, sizes):
        d = np.zeros((N, size), dtype=dtype) if d is None else np.array(d, dtype=dtype)  # copy
        if d.shape != (N, size):
            raise ValueError(f"dh_n / dc_n must be [N, H] = [{N}, {size}], got {d.shape}")
        fresh.append(d)
    return dy, tuple(fresh)


def _check_cache(cache, cell):
    """Raise TypeError unless cache is a Cache made by <cell>_forward."""
    if isinstance(cache, Cache) and cache.cell == cell:
        return
    got = f"a cache of {cache.cell}_forward" if isinstance(cache, Cache) else f"an object of type {type(cache).__name__}"
    raise TypeError(f"{cell}_backward: `cache` must be the cache returned by reference.{cell}_forward, got {got}")


def _masked(a, mask):
    """a * mask, or a itself when mask is None. a, mask: [N, H].

    Forward: h_rec = _masked(h_prev, mask). Backward: since h_rec = h_prev * mask, dh_prev = _masked(dh_rec, mask).
    """
    return a if mask is None else a * mask


def _time_order(T, reverse):
    """The time steps in processing order."""
    return list(range(T - 1, -1, -1)) if reverse else list(range(T))


def _forward_loop(step, x, states, valid, reverse):
    """Run one cell over time.

    step(x_t, states) -> (new_states, saved): one time step of the cell for the whole batch, where
    states = (h_prev,) or (h_prev, c_prev), each [N, H], and new_states[0] is h_t.
    x: [T, N, C]; valid: [T, N] bool.
    Returns y [T, N, H], the final states and the list of per-step saved tuples (indexed by t).
    """
    T = x.shape[0]
    N, H = states[0].shape
    y = np.zeros((T, N, H), dtype=x.dtype)
    saved = [None] * T
    for t in _time_order(T, reverse):
        m = valid[t][:, None]  # [N, 1]
        # a padded step's input never enters the computation, whatever it holds
        new_states, saved[t] = step(np.where(m, x[t], 0), states)
        # y_t = h_t at a valid step, 0 at an invalid one
        y[t] = np.where(m, new_states[0], 0)
        # at an invalid step the state is left unchanged
        states = tuple(np.where(m, new, old) for new, old in zip(new_states, states))
    return y, states, saved


def _backward_loop(step_backward, cache, dy, dstates):
    """Backpropagation through time, the mirror of _forward_loop.

    step_backward(x_t, saved_t, dnew_states) -> (dx_t, dprev_states, (dW_ih, dW_hh, db_ih, db_hh)).
    dy: [T, N, H]; dstates: gradients w.r.t. the final states, each [N, H].
    Returns dx [T, N, C], the gradients w.r.t. the initial states and the summed weight gradients.
    """
    x, valid = cache.x, cache.valid
    dx = np.zeros_like(x)
    dweights = [np.zeros_like(w) for w in cache.weights]
    for t in reversed(_time_order(x.shape[0], cache.reverse)):
        m = valid[t][:, None]  # [N, 1]
        # y_t = h_t only at valid steps: dy at invalid steps is ignored
        dstates = (dstates[0] + np.where(m, dy[t], 0),) + dstates[1:]
        # only a valid step ran the cell ...
        dnew = tuple(np.where(m, d, 0) for d in dstates)
        # ... on its own input (a padded step's input is read as zeros, as in the forward)
        dx[t], dprev, dw = step_backward(np.where(m, x[t], 0), cache.steps[t], dnew)
        for total, g in zip(dweights, dw):
            total += g
        # ... an invalid step passed the state through unchanged
        dstates = tuple(np.where(m, 0, d) + dp for d, dp in zip(dstates, dprev))
    return dx, dstates, tuple(dweights)


def _gates_backward(weights, mask, x_t, h_rec, da_ih, da_hh):
    """Backward of the two affine maps a_ih = W_ih x_t + b_ih and a_hh = W_hh h_rec + b_hh, h_rec = h_prev * mask.

    mask: [N, H] or None; x_t: [N, C]; h_rec: [N, H]; da_ih, da_hh: [N, G*H] gradients w.r.t. a_ih and a_hh.
    Returns (dx_t [N, C], dh_prev [N, H] (the part through a_hh), (dW_ih, dW_hh, db_ih, db_hh)).
    """
    W_ih, W_hh = weights[:2]
    dx_t = da_ih @ W_ih
    dh_prev = _masked(da_hh @ W_hh, mask)
    return dx_t, dh_prev, (da_ih.T @ x_t, da_hh.T @ h_rec, da_ih.sum(axis=0), da_hh.sum(axis=0))


# --------------------------------------------------------------------------------------------------
# RNN
# --------------------------------------------------------------------------------------------------


def _rnn_step(weights, gates, mask, x_t, states):
    """One RNN step. mask: [N, H] or None; x_t: [N, C]; states: (h_prev [N, H],). Returns ((h_t,), saved)."""
    W_ih, W_hh, b_ih, b_hh = weights
    (f,) = gates
    (h_prev,) = states
    h_rec = _masked(h_prev, mask)
    # a = W_ih x_t + b_ih + W_hh h_rec + b_hh
    a = x_t @ W_ih.T + b_ih + h_rec @ W_hh.T + b_hh
    # h_t = f(a), f = tanh by default
    h_t = f(a)
    return (h_t,), (h_rec, a, h_t)


def _rnn_step_backward(weights, gates, mask, x_t, saved, dstates):
    """Backward of _rnn_step. x_t: [N, C]; dstates: (dh_t [N, H],)."""
    h_rec, a, h_t = saved
    (f,) = gates
    (dh_t,) = dstates
    # da = dh_t * f'(a), f'(a) read from h_t = f(a) (tanh: 1 - h_t^2)
    da = f.backward(a, h_t, dh_t)
    dx_t, dh_prev, dw = _gates_backward(weights, mask, x_t, h_rec, da, da)
    return dx_t, (dh_prev,), dw


def rnn_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, lengths=None, reverse=False, nonlinearity="tanh", *,
                activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_rec + b_hh), f = tanh or relu (nonlinearity) or
    activations=[f], h_rec = h_prev * mask.

    x: [T, N, C]; W_ih: [H, C]; W_hh: [H, H]; b_ih: [H]; b_hh: [H]; h0: [N, H] or None (= zeros);
    lengths: [N] ints in [0, T] or None (= all T); clip: float or None; recurrent_mask: [N, H] or None.
    Returns y: [T, N, H], h_n: [N, H] and a Cache for rnn_backward.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    options = cell_options("rnn", [nonlinearity] if activations is None else activations, clip)
    x, weights, valid, states, mask = _prepare(x, (W_ih, W_hh, b_ih, b_hh), 1, lengths, (h0,), recurrent_mask)
    step = functools.partial(_rnn_step, weights, _cell_gates("rnn", options), mask)
    y, (h_n,), steps = _forward_loop(step, x, states, valid, bool(reverse))
    cache = Cache("rnn", options, bool(reverse), x, weights, valid, mask, steps)
    return y, h_n, cache if return_cache else None


def rnn_backward(cache, dy, dh_n=None):
    """Gradients of an rnn_forward pass.

    cache: the Cache from rnn_forward; dy: [T, N, H]; dh_n: [N, H] or None (= zeros).
    Returns dx: [T, N, C], dh0: [N, H], dW_ih: [H, C], dW_hh: [H, H], db_ih: [H], db_hh: [H].
    """
    _check_cache(cache, "rnn")
    dy, dstates = _prepare_grads(cache, dy, (dh_n,))
    step_backward = functools.partial(
        _rnn_step_backward, cache.weights, _cell_gates("rnn", cache.options), cache.recurrent_mask
    )
    dx, (dh0,), (dW_ih, dW_hh, db_ih, db_hh) = _backward_loop(step_backward, cache, dy, dstates)
    return dx, dh0, dW_ih, dW_hh, db_ih, db_hh


# --------------------------------------------------------------------------------------------------
# LSTM (gate order i, f, g, o)
# --------------------------------------------------------------------------------------------------


def _lstm_step(weights, extra, gates, mask, x_t, states):
    """One LSTM step. mask: [N, P] or None; x_t: [N, C]; states: (h_prev [N, P], c_prev [N, H]).
    weights: (W_ih, W_hh, b_ih, b_hh, ...); extra: {"peepholes": [3H] (i, f, o), "W_hr": [P, H]}, those it has.
    Returns ((h_t, c_t), saved)."""
    W_ih, W_hh, b_ih, b_hh = weights[:4]
    F, G, Hc = gates
    h_prev, c_prev = states
    h_rec = _masked(h_prev, mask)
    # [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_rec + b_hh  (4 blocks of H)
    a = x_t @ W_ih.T + b_ih + h_rec @ W_hh.T + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    if "peepholes" in extra:
        # peepholes: a_i += p_i * c_prev, a_f += p_f * c_prev
        p_i, p_f, p_o = np.split(extra["peepholes"], 3)
        a_i, a_f = a_i + p_i * c_prev, a_f + p_f * c_prev
    # i = f(a_i), f = f(a_f), g = g(a_g)  (sigmoid, sigmoid, tanh by default)
    i, f, g = F(a_i), F(a_f), G(a_g)
    # c_t = f * c_prev + i * g
    c_t = f * c_prev + i * g
    if "peepholes" in extra:
        a_o = a_o + p_o * c_t  # o sees c_t
    o = F(a_o)
    # h_t = o * h(c_t), or with a projection h_t = W_hr (o * h(c_t))
    h_c = Hc(c_t)
    m_t = o * h_c
    h_t = m_t @ extra["W_hr"].T if "W_hr" in extra else m_t
    return (h_t, c_t), (h_rec, c_prev, (a_i, a_f, a_g, a_o), i, f, g, o, c_t, h_c, m_t)


def _lstm_step_backward(weights, extra, gates, mask, x_t, saved, dstates):
    """Backward of _lstm_step. x_t: [N, C]; dstates: (dh_t [N, P], dc_t [N, H]). The gradients of the extra
    weights follow the four of _gates_backward, in the order of ``extra``."""
    h_rec, c_prev, (a_i, a_f, a_g, a_o), i, f, g, o, c_t, h_c, m_t = saved
    F, G, Hc = gates
    dh_t, dc_t = dstates
    dextra = {}
    if "W_hr" in extra:
        # h_t = m_t W_hr^T  =>  dW_hr = dh_t^T m_t, dm_t = dh_t W_hr
        dextra["W_hr"] = dh_t.T @ m_t
        dh_t = dh_t @ extra["W_hr"]
    # h_t = o * h(c_t)  =>  do = dh_t * h(c_t),  dc_t += dh_t * o * h'(c_t)
    da_o = F.backward(a_o, o, dh_t * h_c)
    dc = dc_t + Hc.backward(c_t, h_c, dh_t * o)
    peepholes = "peepholes" in extra
    if peepholes:
        p_i, p_f, p_o = np.split(extra["peepholes"], 3)
        dc = dc + da_o * p_o  # a_o = ... + p_o * c_t
    # c_t = f * c_prev + i * g
    da_i = F.backward(a_i, i, dc * g)
    da_f = F.backward(a_f, f, dc * c_prev)
    da_g = G.backward(a_g, g, dc * i)
    dc_prev = dc * f
    if peepholes:
        dc_prev = dc_prev + da_i * p_i + da_f * p_f
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    dx_t, dh_prev, dw = _gates_backward(weights, mask, x_t, h_rec, da, da)
    if peepholes:
        dextra["peepholes"] = np.concatenate([(da_i * c_prev).sum(0), (da_f * c_prev).sum(0), (da_o * c_t).sum(0)])
    return dx_t, (dh_prev, dc_prev), dw + tuple(dextra[name] for name in extra)


def lstm_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, c0=None, lengths=None, reverse=False, *, peepholes=None,
                 W_hr=None, activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """LSTM, gate order i, f, g, o: c_t = f * c_prev + i * g, h_t = o * h(c_t).

    The gates are f(W_ih x_t + b_ih + W_hh h_rec + b_hh) (g: g(...)), h_rec = h_prev * recurrent_mask, with
    activations [f, g, h] = [sigmoid, tanh, tanh] unless given; peepholes P [3H] = (p_i, p_f, p_o) add
    p_i * c_prev, p_f * c_prev and p_o * c_t to the pre-activations of i, f and o. W_hr [P, H] projects the output
    (PyTorch's proj_size): h_t = W_hr (o * h(c_t)), so that h and y have P values and c has H.
    x: [T, N, C]; W_ih: [4H, C]; W_hh: [4H, P]; b_ih: [4H]; b_hh: [4H];
    h0: [N, P], c0: [N, H] or None (= zeros); lengths: [N] ints in [0, T] or None (= all T);
    clip: float or None; recurrent_mask: [N, P] or None (= no mask). (P = H without W_hr.)
    Returns y: [T, N, P], h_n: [N, P], c_n: [N, H] and a Cache for lstm_backward.
    """
    options = cell_options("lstm", activations, clip)
    x, weights, valid, states, mask = _prepare(x, (W_ih, W_hh, b_ih, b_hh), 4, lengths, (h0, c0), recurrent_mask,
                                               H=None if W_hr is None else np.shape(W_hr)[-1])
    H, P = weights[0].shape[0] // 4, weights[1].shape[1]
    extra = {}
    if peepholes is not None:
        options["peepholes"] = True
        extra["peepholes"] = np.asarray(peepholes, dtype=x.dtype)
        if extra["peepholes"].shape != (3 * H,):
            raise ValueError(f"peepholes must have shape (3H,) = ({3 * H},), got {extra['peepholes'].shape}")
    if W_hr is not None:
        extra["W_hr"] = np.asarray(W_hr, dtype=x.dtype)
        if extra["W_hr"].shape != (P, H):
            raise ValueError(f"W_hr must have shape (P, H) = ({P}, {H}), got {extra['W_hr'].shape}")
    step = functools.partial(_lstm_step, weights, extra, _cell_gates("lstm", options), mask)
    y, (h_n, c_n), steps = _forward_loop(step, x, states, valid, bool(reverse))
    cache = Cache("lstm", options, bool(reverse), x, weights + tuple(extra.values()), valid, mask, steps)
    cache.extra = tuple(extra)  # the names of the weights after the four
    return y, h_n, c_n, cache if return_cache else None


def lstm_backward(cache, dy, dh_n=None, dc_n=None):
    """Gradients of an lstm_forward pass.

    cache: the Cache from lstm_forward; dy: [T, N, H]; dh_n, dc_n: [N, H] or None (= zeros).
    Returns dx: [T, N, C], dh0: [N, P], dc0: [N, H], dW_ih: [4H, C], dW_hh: [4H, P], db_ih: [4H], db_hh: [4H],
    then dpeepholes: [3H] and dW_hr: [P, H] when the forward had them.
    """
    _check_cache(cache, "lstm")
    dy, dstates = _prepare_grads(cache, dy, (dh_n, dc_n))
    extra = dict(zip(cache.extra, cache.weights[4:]))
    step_backward = functools.partial(_lstm_step_backward, cache.weights, extra, _cell_gates("lstm", cache.options),
                                      cache.recurrent_mask)
    dx, (dh0, dc0), dweights = _backward_loop(step_backward, cache, dy, dstates)
    return (dx, dh0, dc0, *dweights)


# --------------------------------------------------------------------------------------------------
# GRU (gate order r, z, n)
# --------------------------------------------------------------------------------------------------


def _gru_step(weights, reset_after, gates, mask, x_t, states):
    """One GRU step. mask: [N, H] or None; x_t: [N, C]; states: (h_prev [N, H],). Returns ((h_t,), saved)."""
    W_ih, W_hh, b_ih, b_hh = weights
    F, G = gates
    (h_prev,) = states
    h_rec = _masked(h_prev, mask)
    W_hr, W_hz, W_hn = np.split(W_hh, 3, axis=0)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    # input parts of the three gates: W_ir x + b_ir, W_iz x + b_iz, W_in x + b_in
    ai_r, ai_z, ai_n = np.split(x_t @ W_ih.T + b_ih, 3, axis=1)
    # r = f(W_ir x + b_ir + W_hr h_rec + b_hr)  (f = sigmoid by default)
    a_r = ai_r + h_rec @ W_hr.T + b_hr
    r = F(a_r)
    # z = f(W_iz x + b_iz + W_hz h_rec + b_hz)
    a_z = ai_z + h_rec @ W_hz.T + b_hz
    z = F(a_z)
    if reset_after:
        # n = g(W_in x + b_in + r * (W_hn h_rec + b_hn))  (g = tanh by default)
        ah_n = h_rec @ W_hn.T + b_hn
        a_n = ai_n + r * ah_n
    else:
        # n = g(W_in x + b_in + W_hn (r * h_rec) + b_hn)
        ah_n = (r * h_rec) @ W_hn.T + b_hn
        a_n = ai_n + ah_n
    n = G(a_n)
    # h_t = (1 - z) * n + z * h_prev  (h_prev unmasked)
    h_t = (1 - z) * n + z * h_prev
    return (h_t,), (h_prev, h_rec, r, z, n, ah_n, (a_r, a_z, a_n))


def _gru_step_backward(weights, reset_after, gates, mask, x_t, saved, dstates):
    """Backward of _gru_step. x_t: [N, C]; dstates: (dh_t [N, H],)."""
    W_ih, W_hh = weights[:2]
    F, G = gates
    h_prev, h_rec, r, z, n, ah_n, (a_r, a_z, a_n) = saved
    (dh_t,) = dstates
    # h_t = (1 - z) * n + z * h_prev  (the direct path to h_prev is unmasked)
    dn = dh_t * (1 - z)
    dz = dh_t * (h_prev - n)
    dh_prev = dh_t * z
    # n = g(a_n), z = f(a_z)  (tanh: 1 - n^2; sigmoid: z (1 - z))
    da_n = G.backward(a_n, n, dn)
    da_z = F.backward(a_z, z, dz)
    if reset_after:
        # a_n = W_in x + b_in + r * ah_n,  ah_n = W_hn h_rec + b_hn
        dr = da_n * ah_n
        dah_n = da_n * r
        # r = f(a_r)
        da_r = F.backward(a_r, r, dr)
        da_ih = np.concatenate([da_r, da_z, da_n], axis=1)
        da_hh = np.concatenate([da_r, da_z, dah_n], axis=1)
        dx_t, dh_lin, dw = _gates_backward(weights, mask, x_t, h_rec, da_ih, da_hh)
        return dx_t, (dh_prev + dh_lin,), dw
    # a_n = W_in x + b_in + W_hn (r * h_rec) + b_hn
    W_hrz, W_hn = W_hh[: 2 * r.shape[1]], W_hh[2 * r.shape[1] :]
    drh = da_n @ W_hn  # gradient w.r.t. r * h_rec
    dr = drh * h_rec
    # r = f(a_r)
    da_r = F.backward(a_r, r, dr)
    # input side: the three blocks are W_ir x + b_ir, W_iz x + b_iz, W_in x + b_in
    da_ih = np.concatenate([da_r, da_z, da_n], axis=1)
    dx_t = da_ih @ W_ih
    # hidden side: the r and z blocks see h_rec, the n block sees r * h_rec; h_rec = h_prev * mask
    da_rz = np.concatenate([da_r, da_z], axis=1)
    dh_prev = dh_prev + _masked(drh * r + da_rz @ W_hrz, mask)
    dW_ih = da_ih.T @ x_t
    dW_hh = np.concatenate([da_rz.T @ h_rec, da_n.T @ (r * h_rec)], axis=0)
    db_ih = da_ih.sum(axis=0)
    db_hh = np.concatenate([da_rz.sum(axis=0), da_n.sum(axis=0)])
    return dx_t, (dh_prev,), (dW_ih, dW_hh, db_ih, db_hh)


def gru_forward(x, W_ih, W_hh, b_ih, b_hh, h0=None, lengths=None, reverse=False, reset_after=True, *,
                activations=None, clip=None, recurrent_mask=None, return_cache=True):
    """GRU, gate order r, z, n: h_t = (1 - z) * n + z * h_prev.

    r, z = sigmoid(W_i[rz] x + b_i[rz] + W_h[rz] h_rec + b_h[rz]), h_rec = h_prev * recurrent_mask.
    reset_after=True (PyTorch): n = tanh(W_in x + b_in + r * (W_hn h_rec + b_hn)).
    reset_after=False (classic): n = tanh(W_in x + b_in + W_hn (r * h_rec) + b_hn).
    x: [T, N, C]; W_ih: [3H, C]; W_hh: [3H, H]; b_ih: [3H]; b_hh: [3H]; h0: [N, H] or None (= zeros);
    lengths: [N] ints in [0, T] or None (= all T); activations: [f, g] or None (sigmoid, tanh); clip: float or
    None; recurrent_mask: [N, H] or None (= no mask).
    Returns y: [T, N, H], h_n: [N, H] and a Cache for gru_backward.
    """
    options = cell_options("gru", activations, clip, reset_after=reset_after)
    x, weights, valid, states, mask = _prepare(x, (W_ih, W_hh, b_ih, b_hh), 3, lengths, (h0,), recurrent_mask)
    step = functools.partial(_gru_step, weights, bool(reset_after), _cell_gates("gru", options), mask)
    y, (h_n,), steps = _forward_loop(step, x, states, valid, bool(reverse))
    cache = Cache("gru", options, bool(reverse), x, weights, valid, mask, steps)
    return y, h_n, cache if return_cache else None


def gru_backward(cache, dy, dh_n=None):
    """Gradients of a gru_forward pass.

    cache: the Cache from gru_forward; dy: [T, N, H]; dh_n: [N, H] or None (= zeros).
    Returns dx: [T, N, C], dh0: [N, H], dW_ih: [3H, C], dW_hh: [3H, H], db_ih: [3H], db_hh: [3H].
    """
    _check_cache(cache, "gru")
    dy, dstates = _prepare_grads(cache, dy, (dh_n,))
    step_backward = functools.partial(
        _gru_step_backward, cache.weights, cache.options["reset_after"], _cell_gates("gru", cache.options),
        cache.recurrent_mask
    )
    dx, (dh0,), (dW_ih, dW_hh, db_ih, db_hh) = _backward_loop(step_backward, cache, dy, dstates)
    return dx, dh0, dW_ih, dW_hh, db_ih, db_hh


# --------------------------------------------------------------------------------------------------
# Jordan network: the recurrence runs through the output
# --------------------------------------------------------------------------------------------------
#
# U = hidden units, O = output units. The state is y_prev [N, O]; it plays the part H plays for the other
# cells in the shared time loops (y_t is both the step's output and the next step's state).

def _jordan_activation(name):
    """(act(a), act'(a) written in terms of the output y = act(a)) of a Jordan network's activation name."""
    triple = _activations.KERAS[name]
    return (lambda a: _activations.forward(triple, a)), (lambda y: _activations.derivative(triple, y))


def _jordan_step(weights, f, g, x_t, states):
    """One Jordan step. x_t: [N, C]; states: (y_prev [N, O],). Returns ((y_t,), saved)."""
    W_xh, W_yh, b_h, W_hy, b_y = weights
    (y_prev,) = states
    # h_t = f(W_xh x_t + W_yh y_prev + b_h)
    h_t = f(x_t @ W_xh.T + y_prev @ W_yh.T + b_h)
    # y_t = g(W_hy h_t + b_y)
    y_t = g(h_t @ W_hy.T + b_y)
    return (y_t,), (y_prev, h_t, y_t)


def _jordan_step_backward(weights, df, dg, x_t, saved, dstates):
    """Backward of _jordan_step. x_t: [N, C]; dstates: (dy_t [N, O],), the gradient reaching y_t."""
    W_xh, W_yh, _, W_hy, _ = weights
    y_prev, h_t, y_t = saved
    (dy_t,) = dstates
    # y_t = g(z), z = W_hy h_t + b_y
    dz = dy_t * dg(y_t)
    # h_t = f(a), a = W_xh x_t + W_yh y_prev + b_h
    da = (dz @ W_hy) * df(h_t)
    dw = (da.T @ x_t, da.T @ y_prev, da.sum(axis=0), dz.T @ h_t, dz.sum(axis=0))
    return da @ W_xh, (da @ W_yh,), dw


def jordan_forward(x, W_xh, W_yh, b_h, W_hy, b_y, y0=None, lengths=None, reverse=False, activation="tanh",
                   output_activation=None):
    """Jordan network: h_t = f(W_xh x_t + W_yh y_prev + b_h), y_t = g(W_hy h_t + b_y), y_prev = y0 at the start.

    f = activation ("tanh", "relu", "sigmoid"); g = output_activation (None or "linear", "tanh", "sigmoid").
    x: [T, N, C]; W_xh: [U, C]; W_yh: [U, O]; b_h: [U]; W_hy: [O, U]; b_y: [O]; y0: [N, O] or None (= zeros);
    lengths: [N] ints in [0, T] or None (= all T). Returns y: [T, N, O], y_n: [N, O] and a Cache for
    jordan_backward; cache.steps[t] = (y_prev, h_t, y_t).
    """
    output_activation = "linear" if output_activation is None else output_activation
    if activation not in ("tanh", "relu", "sigmoid"):
        raise ValueError(f"activation must be 'tanh', 'relu' or 'sigmoid', got {activation!r}")
    if output_activation not in ("linear", "tanh", "sigmoid"):
        raise ValueError(f"output_activation must be None, 'linear', 'tanh' or 'sigmoid', got {output_activation!r}")
    x = np.asarray(x)
    if x.ndim != 3 or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"x must be a float32 or float64 array [T, N, C], got {x.dtype} {x.shape}")
    T, N, C = x.shape
    weights = tuple(np.asarray(a, dtype=x.dtype) for a in (W_xh, W_yh, b_h, W_hy, b_y))
    U, O = weights[1].shape
    expected = {"W_xh": (U, C), "W_yh": (U, O), "b_h": (U,), "W_hy": (O, U), "b_y": (O,)}
    for name, a in zip(expected, weights):
        if a.shape != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {a.shape}")
    lengths = np.full(N, T) if lengths is None else np.asarray(lengths)
    if lengths.shape != (N,) or (N and (lengths.min() < 0 or lengths.max() > T)):
        raise ValueError(f"lengths must be [N] = [{N}] values in [0, {T}], got {lengths!r}")
    # valid[t, n]: step t of sequence n is valid iff t < lengths[n]
    valid = np.arange(T)[:, None] < lengths[None, :]
    y0 = np.zeros((N, O), x.dtype) if y0 is None else np.array(y0, dtype=x.dtype)
    if y0.shape != (N, O):
        raise ValueError(f"y0 must be [N, O] = [{N}, {O}], got {y0.shape}")
    f, g = _jordan_activation(activation)[0], _jordan_activation(output_activation)[0]
    step = functools.partial(_jordan_step, weights, f, g)
    y, (y_n,), steps = _forward_loop(step, x, (y0,), valid, bool(reverse))
    options = {"activation": activation, "output_activation": output_activation}
    return y, y_n, Cache("jordan", options, bool(reverse), x, weights, valid, None, steps)


def jordan_backward(cache, dy, dy_n=None):
    """Gradients of a jordan_forward pass.

    cache: the Cache from jordan_forward; dy: [T, N, O]; dy_n: [N, O] or None (= zeros).
    Returns dx: [T, N, C], dy0: [N, O], dW_xh: [U, C], dW_yh: [U, O], db_h: [U], dW_hy: [O, U], db_y: [O].
    """
    _check_cache(cache, "jordan")
    # (_prepare_grads reads the state size from weights[1] = W_yh [U, O]: O)
    dy, dstates = _prepare_grads(cache, dy, (dy_n,))
    df = _jordan_activation(cache.options["activation"])[1]
    dg = _jordan_activation(cache.options["output_activation"])[1]
    step_backward = functools.partial(_jordan_step_backward, cache.weights, df, dg)
    dx, (dy0,), dweights = _backward_loop(step_backward, cache, dy, dstates)
    return (dx, dy0, *dweights)


__all__ += ["jordan_forward", "jordan_backward"]
