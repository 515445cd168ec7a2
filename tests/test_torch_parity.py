"""rnnkit.functional (C++) against PyTorch's own RNN, LSTM and GRU with the same weights.

Forward: y and the final states. Backward: the gradients torch's autograd computes for the
random-projection loss sum(R * y) + sum(Rh * h_n) (+ sum(Rc * c_n)) with respect to the input, h0, c0 and
the four weights, against rnnkit's backward called with dy = R, dh_n = Rh, dc_n = Rc.

Variable lengths go through torch.nn.utils.rnn.pack_padded_sequence(enforce_sorted=False) (torch needs
lengths >= 1). rnnkit's reverse=True is compared with the reverse direction of a bidirectional torch module
(weight_ih_l0_reverse, ..., h_n[1], y[..., H:]), which runs each sequence from its own last valid step
down to step 0 and aligns outputs with inputs, as the contract says. torch's GRU is the reset_after=True
variant; torch has no reset-before GRU.
"""

import os

import pytest

if os.environ.get("RNNKIT_REQUIRE_TORCH") == "1":
    import torch  # fail loudly: parity tests must run
else:
    torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from helpers import Cell, assert_close, backward, forward, make_problem  # noqa: E402

import rnnkit.functional as F  # noqa: E402

CELLS = [Cell("rnn_tanh", "rnn", (("nonlinearity", "tanh"),)), Cell("rnn_relu", "rnn", (("nonlinearity", "relu"),)),
         Cell("lstm", "lstm"), Cell("gru", "gru", (("reset_after", True),))]
CELL_PARAMS = [pytest.param(c, id=c.id) for c in CELLS]
# the torch module of each cell, and its keyword arguments
TORCH = {"rnn_tanh": ("RNN", (("nonlinearity", "tanh"),)), "rnn_relu": ("RNN", (("nonlinearity", "relu"),)),
         "lstm": ("LSTM", ()), "gru": ("GRU", ())}

SHAPES = {
    "small": dict(T=7, N=5, C=3, H=4),
    "large": dict(T=20, N=33, C=16, H=32),
}

# Two independent implementations, both computing in the test's dtype. float64: rounding only (~1e-13
# relative), rtol 1e-10 catches anything real. float32 (eps 1.2e-7): torch (MKL / oneDNN GEMMs, its own
# gate fusion) and rnnkit each accumulate ~1e-6 relative rounding over T steps; rtol 1e-5 covers both.
# atol is scaled by max(1, max |expected|) because values are O(1) but weight gradients sum T*N terms and
# elements near zero by cancellation have no relative accuracy (helpers.TOL, helpers.assert_close).


def torch_run(cell, x, W_ih, W_hh, b_ih, b_hh, h0, lengths, reverse, dy, dh_n, c0=None, dc_n=None):
    """The same computation with torch; reverse=True uses the reverse half of a bidirectional module whose
    forward half gets unrelated weights and state and does not enter the loss."""
    T, N, C = x.shape
    H = W_hh.shape[1]
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[x.dtype]
    torch_cls, torch_kwargs = TORCH[cell.id]
    module = getattr(torch.nn, torch_cls)(
        C, H, num_layers=1, bias=True, batch_first=False, bidirectional=reverse, dtype=dtype, **dict(torch_kwargs))
    suffix = "_reverse" if reverse else ""
    with torch.no_grad():
        for name, value in (("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
            getattr(module, f"{name}_l0{suffix}").copy_(torch.from_numpy(value))
    params = {name: getattr(module, f"{name}_l0{suffix}")
              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    xt = torch.tensor(x, requires_grad=True)
    d = 1 if reverse else 0  # which direction of the module is ours

    def initial(state):
        if state is None:
            return None
        s = np.zeros((2 if reverse else 1, N, H), dtype=x.dtype)
        if reverse:
            s[0] = 0.25  # the (unused) forward direction's state: anything
        s[d] = state
        return torch.tensor(s, requires_grad=True)

    h0t, c0t = initial(h0), (initial(c0) if cell.has_c else None)
    if cell.has_c:
        hx = None if h0t is None and c0t is None else (h0t, c0t)
        assert (h0t is None) == (c0t is None)
    else:
        hx = h0t

    if lengths is None:
        yt, state = module(xt, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths, dtype=torch.int64),
                                                         enforce_sorted=False)
        packed_out, state = module(packed, hx)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, total_length=T)
    h_nt, c_nt = state if cell.has_c else (state, None)
    yt = yt[..., d * H:(d + 1) * H]
    h_nt = h_nt[d]
    c_nt = c_nt[d] if cell.has_c else None

    loss = (torch.from_numpy(dy) * yt).sum() + (torch.from_numpy(dh_n) * h_nt).sum()
    if cell.has_c:
        loss = loss + (torch.from_numpy(dc_n) * c_nt).sum()
    loss.backward()

    out = dict(y=yt.detach().numpy(), h_n=h_nt.detach().numpy())
    grads = dict(dx=xt.grad.numpy())
    grads["dh0"] = h0t.grad[d].numpy() if h0t is not None else None
    if cell.has_c:
        out["c_n"] = c_nt.detach().numpy()
        grads["dc0"] = c0t.grad[d].numpy() if c0t is not None else None
    grads.update(dW_ih=params["weight_ih"].grad.numpy(), dW_hh=params["weight_hh"].grad.numpy(),
                 db_ih=params["bias_ih"].grad.numpy(), db_hh=params["bias_hh"].grad.numpy())
    return out, grads


def torch_lengths(T, N, rng):
    """A length-1, a full-length and an in-between sequence, in no particular order (torch needs lengths >= 1)."""
    lengths = rng.integers(1, T + 1, size=N).astype(np.int64)
    lengths[N // 2], lengths[1], lengths[-1] = 1, T, max(2, T // 2)
    return lengths


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0_none", "h0_given"])
@pytest.mark.parametrize("lengths", ["none", torch_lengths], ids=["lengths_none", "lengths_mixed"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse_vs_bidirectional"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_matches_torch(cell, shape, reverse, lengths, with_h0, dtype, rng):
    inputs, douts = make_problem(rng, cell, dtype, **SHAPES[shape], lengths=lengths, with_h0=with_h0)
    N, H = SHAPES[shape]["N"], SHAPES[shape]["H"]

    out, cache = forward(F, cell, **inputs, reverse=reverse)
    grads = backward(F, cell, cache, **douts)
    out_t, grads_t = torch_run(cell, **inputs, reverse=reverse, **douts)

    for name in out_t:
        assert out[name].dtype == np.dtype(dtype), name
        assert_close(out[name], out_t[name], name)
    for name in grads_t:
        if grads_t[name] is None:  # h0 / c0 was None: torch has no gradient for it
            assert grads[name].shape == (N, H)
            continue
        assert grads[name].dtype == np.dtype(dtype), name
        assert_close(grads[name], grads_t[name], name)


# torch says once that its oneDNN path has no projections (it then takes its own, which is the oracle here)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")
@pytest.mark.parametrize("lengths_kind", ["none", "mixed"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_lstm_projection_matches_torch(rng, dtype, bidirectional, lengths_kind):
    """``lstm_forward(..., W_hr=)`` against ``torch.nn.LSTM(proj_size=P)``: outputs, final states and autograd's
    gradients of every input and weight (``weight_hr`` included), each direction with its own weights."""
    T, N, C, H, P = 7, 5, 4, 6, 3
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    module = torch.nn.LSTM(C, H, proj_size=P, bidirectional=bidirectional, dtype=tdt)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, N, C)).astype(dtype)
    h0 = rng.standard_normal((D, N, P)).astype(dtype)
    c0 = rng.standard_normal((D, N, H)).astype(dtype)
    lengths = None if lengths_kind == "none" else np.array([7, 1, 4, 7, 2])
    R = rng.standard_normal((T, N, D * P)).astype(dtype)
    Rh = rng.standard_normal((D, N, P)).astype(dtype)
    Rc = rng.standard_normal((D, N, H)).astype(dtype)

    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    if lengths is None:
        yt, (hn, cn) = module(xt, (h0t, c0t))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), enforce_sorted=False)
        out, (hn, cn) = module(packed, (h0t, c0t))
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    loss = (yt * torch.tensor(R)).sum() + (hn * torch.tensor(Rh)).sum() + (cn * torch.tensor(Rc)).sum()
    loss.backward()
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)

    dx = np.zeros_like(x)
    for d in range(D):
        sfx = "_reverse" if d else ""
        w = {name: getattr(module, f"{name}_l0{sfx}").detach().numpy()
             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
        y, h_n, c_n, cache = F.lstm_forward(x, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], h0[d], c0[d],
                                            lengths=lengths, reverse=bool(d), W_hr=w["weight_hr"])
        np.testing.assert_allclose(y, yt.detach().numpy()[..., d * P:(d + 1) * P], **tol)
        np.testing.assert_allclose(h_n, hn.detach().numpy()[d], **tol)
        np.testing.assert_allclose(c_n, cn.detach().numpy()[d], **tol)
        grads = F.lstm_backward(cache, R[..., d * P:(d + 1) * P], Rh[d], Rc[d])
        assert len(grads) == 8
        g_x, g_h0, g_c0, g_ih, g_hh, g_bih, g_bhh, g_hr = grads
        dx += g_x
        np.testing.assert_allclose(g_h0, h0t.grad.numpy()[d], **tol)
        np.testing.assert_allclose(g_c0, c0t.grad.numpy()[d], **tol)
        for name, g in (("weight_ih", g_ih), ("weight_hh", g_hh), ("bias_ih", g_bih), ("bias_hh", g_bhh),
                        ("weight_hr", g_hr)):
            np.testing.assert_allclose(g, getattr(module, f"{name}_l0{sfx}").grad.numpy(), err_msg=name, **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
