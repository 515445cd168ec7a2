"""Generative models of high-dimensional binary sequences (polyphonic piano rolls): RNN-RBM and RNN-DBN.

    model = rnnkit.generative.RNNRBM(n_visible=88, n_hidden=150, n_recurrent=100, seed=0)
    model.fit(train, epochs=20, batch_size=16, learning_rate=1e-3, k=15)
    model.log_likelihood(test)            # exact when the RBM is small, else AIS (with its spread)
    model.frame_accuracy(test)
    roll = model.generate(200, seed=1)    # [200, 88] of 0/1

Sizes: V = n_visible (frame width), H = n_hidden (RBM hidden units; DBN first hidden layer),
H2 = n_hidden2 (DBN top layer), U = n_recurrent. A sequence is a binary array ``[T, V]``; ``sequences`` is
one such array, an ``[N, T, V]`` array, or a list of ``[T_i, V]`` arrays of different lengths. Inside,
batches are time-major ``[T, N, V]`` as everywhere in rnnkit. Weights use PyTorch's (out, in) layout.

RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012). At step t an RBM over the frame v_t,
    E(v, h) = -b_v(t) . v - b_h(t) . h - h . W v,     F(v) = -b_v(t) . v - sum_j softplus(b_h(t)_j + W_j . v),
whose biases come from the previous RNN state,
    b_v(t) = b_v + W_uv u_{t-1},   b_h(t) = b_h + W_uh u_{t-1},   u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t),
u_{-1} = 0. Training (``fit``): for every frame a CD-k chain started at v_t gives a negative sample v*_t;
the cost is the mean over valid frames of F(v_t) - F(v*_t) with v* held constant, and its gradient with
respect to W, b_v(t), b_h(t) flows into W_uv, W_uh, b_v, b_h and, through u_{t-1}, by backpropagation
through time into W_uu, W_vu, b_u. Optional pretraining: ``pretrain_rbm_epochs`` of CD-k on the frames
as one RBM (biases b_v, b_h, only W, b_v, b_h updated), then ``pretrain_rnn_epochs`` of the RNN as a
next-frame predictor with independent Bernoulli outputs sigm(b_v(t)) and cross-entropy loss (W_uv, W_uu,
W_vu, b_u updated; computed by the same kernel with W = 0 and v* = sigm(b_v(t)), whose gradient is then
exactly the cross-entropy gradient).

RNN-DBN (Goel, Vohra & Sahoo, ICANN 2014): see ``RNNDBN``.

All sampling is in C++ from counter-based streams keyed by a seed: the same seed gives the same samples
at any thread count. Each call that samples takes ``seed``; when it is None a seed is drawn from the
model's own generator (created from the constructor's ``seed``).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import numbers
import os
import stat

import numpy as np

from . import _isa, saving
from . import optimizers as _optimizers
from . import random as _random
from .version import __version__

__all__ = ["RNNRBM", "RNNDBN", "LogLikelihood", "load", "ais_betas"]

_FORMAT = "rnnkit.generative"
_FORMAT_VERSION = "1"
_STORED = contextvars.ContextVar("rnnkit_generative_stored", default=None)  # inside load: the stored weights
_EXACT_AUTO_LIMIT = 16  # "auto" enumerates 2^H hidden configurations up to this H


def _core():
    return _isa.current


# ---------------------------------------------------------------------------------------------- checks

def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def _sequences(sequences, n_visible, name="sequences"):
    """``sequences`` as a list of ``[T_i, V]`` arrays, checked: 2-D, V = n_visible, T_i >= 1, binary."""
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 2:
            seqs = [sequences]
        elif sequences.ndim == 3:
            seqs = list(sequences)
        else:
            raise ValueError(f"{name}: expected a [T, V] array, an [N, T, V] array or a list of [T_i, V] "
                             f"arrays, got an array of shape {sequences.shape}")
    else:
        try:
            seqs = list(sequences)
        except TypeError:
            raise TypeError(f"{name}: expected an array or a list of arrays, got {type(sequences).__name__}") from None
    if not seqs:
        raise ValueError(f"{name}: expected at least one sequence, got none")
    out = []
    for i, s in enumerate(seqs):
        s = np.asarray(s)
        if s.ndim != 2 or s.shape[1] != n_visible:
            raise ValueError(f"{name}[{i}]: expected shape [T, V] with V = n_visible = {n_visible}, got {s.shape}")
        if s.shape[0] < 1:
            raise ValueError(f"{name}[{i}]: expected at least one frame, got shape {s.shape}")
        if s.dtype != bool:
            if s.dtype.kind not in "biuf":
                raise TypeError(f"{name}[{i}]: expected a numeric or bool array, got dtype {s.dtype}")
            bad = (s != 0) & (s != 1)
            if bad.any():
                t, v = np.argwhere(bad)[0]
                raise ValueError(f"{name}[{i}]: expected binary frames (0 or 1), got {s[t, v]!r} at frame {t}, "
                                 f"unit {v}")
        out.append(s)
    return out


def _seed(value, rng):
    if value is None:
        return int(rng.integers(0, 2**63))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed: expected a non-negative integer or None, got {value!r}")
    return int(value)


def _optimizer(optimizer, learning_rate):
    """A fresh optimizer of the named kind with ``learning_rate``, or the given Optimizer instance."""
    if isinstance(optimizer, str):
        return type(_optimizers.get(optimizer))(learning_rate=learning_rate)
    if not isinstance(optimizer, _optimizers.Optimizer):
        raise TypeError(f"optimizer: expected a name or an rnnkit.optimizers.Optimizer, got {optimizer!r}")
    return optimizer


def _pad(seqs, dtype):
    """x [T, N, V] (zeros past each sequence's end) and lengths [N] (int64)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    x = np.zeros((int(lengths.max()), len(seqs), seqs[0].shape[1]), dtype=dtype)
    for n, s in enumerate(seqs):
        x[: len(s), n] = s
    return x, lengths


def _valid(lengths, T):
    """[T, N] bool: frame (t, n) is a real frame."""
    return np.arange(T)[:, None] < lengths[None, :]


def _log_mean_exp(a, axis=-1):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def _log_mean_exp_var(a, axis=-1):
    """Delta-method variance of log mean exp(a) over `axis` (R samples): var(w) / (R mean(w)^2)."""
    w = np.exp(a - np.max(a, axis=axis, keepdims=True))
    R = a.shape[axis]
    return np.var(w, axis=axis, ddof=1 if R > 1 else 0) / (R * np.mean(w, axis=axis) ** 2)


def ais_betas(n_betas):
    """The AIS schedule of Salakhutdinov & Murray (2008) scaled to ``n_betas`` points: 0 to 0.5, 0.5 to 0.9
    and 0.9 to 1 with 1/29, 8/29 and 20/29 of the points (their 500 / 4000 / 10000 proportions)."""
    n_betas = _positive_int("n_betas", n_betas, 3)
    n1 = max(1, round(n_betas * 500 / 14500))
    n2 = max(1, round(n_betas * 4000 / 14500))
    n3 = max(1, n_betas - n1 - n2)
    return np.concatenate([np.linspace(0, 0.5, n1, endpoint=False), np.linspace(0.5, 0.9, n2, endpoint=False),
                           np.linspace(0.9, 1.0, n3)]).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class LogLikelihood:
    """A log-likelihood in nats. ``total``: sum over all frames of log p(v_t | v_<t); ``per_step``:
    total / n_frames; ``std``: the estimate's standard deviation, of ``per_step`` (0 when exact; for AIS the
    delta-method spread of the runs' weights, summed in variance over frames); ``per_frame``: [T_i] arrays."""

    total: float
    per_step: float
    std: float
    n_frames: int
    method: str
    per_frame: list = dataclasses.field(repr=False)

    def __float__(self):
        return float(self.per_step)


# ---------------------------------------------------------------------------------------------- RNN-RBM

class RNNRBM:
    """RNN-RBM (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012); the model and its training are
    described in the module docstring.

    n_visible V, n_hidden H, n_recurrent U; dtype float32 or float64 (of the weights and every kernel
    call); seed: of the model's generator (initial weights, shuffling, default sampling seeds).
    Initial weights: W, W_uv, W_uh, W_uu, W_vu ~ N(0, init_scale^2), biases 0.
    """

    _WEIGHTS = ("W", "b_v", "b_h", "W_uv", "W_uh", "W_uu", "W_vu", "b_u")

    def __init__(self, n_visible, n_hidden, n_recurrent, *, dtype="float32", init_scale=0.01, seed=None):
        self.n_visible = _positive_int("n_visible", n_visible)
        self.n_hidden = _positive_int("n_hidden", n_hidden)
        self.n_recurrent = _positive_int("n_recurrent", n_recurrent)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}")
        self.init_scale = _positive_float("init_scale", init_scale)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else _random.generator()
        V, H, U = self.n_visible, self.n_hidden, self.n_recurrent
        shapes = {"W": (H, V), "b_v": (V,), "b_h": (H,), "W_uv": (V, U), "W_uh": (H, U), "W_uu": (U, U),
                  "W_vu": (U, V), "b_u": (U,)}
        self.weights = {}
        self._add_weights(shapes)

    def _add_weights(self, shapes):
        """Draws the initial weights of ``shapes`` (name -> shape): W* ~ N(0, init_scale^2), biases 0; inside
        ``load``, takes the stored arrays instead (checked against the shapes; nothing is drawn)."""
        stored = _STORED.get()
        for name, shape in shapes.items():
            if stored is not None:
                self.weights[name] = stored(name, shape, self.dtype)
                continue
            w = self._rng.normal(0.0, self.init_scale, shape) if name.startswith("W") else np.zeros(shape)
            self.weights[name] = w.astype(self.dtype)

    # -- config and files -------------------------------------------------------------------------
    def get_config(self):
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "n_recurrent": self.n_recurrent,
                "dtype": self.dtype.name, "init_scale": self.init_scale}

    def save(self, path):
        """Writes the model to ``path`` (exactly that path) atomically, in rnnkit's safetensors model file (see
        ``rnnkit.saving``: no pickle, a digest of everything, the old file replaced whole or not at all): the
        weights as tensors by name, and the metadata ``format`` = ``rnnkit.generative``, ``format_version``,
        ``class`` and ``config`` (JSON). Read it back with ``rnnkit.generative.load``."""
        metadata = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "rnnkit_version": __version__,
                    "class": type(self).__name__, "config": json.dumps(self.get_config())}
        saving.write_safetensors(path, self.weights, metadata)

    # -- the RNN and the per-frame biases ----------------------------------------------------------
    def _rnn(self, x):
        """u_prev [M, U] for x [T, N, V] (u_{t-1} of every frame, u_{-1} = 0)."""
        w = self.weights
        _, u_prev = _core().rnnrbm_states(x, w["W_vu"], w["W_uu"], w["b_u"], None)
        return u_prev.reshape(-1, self.n_recurrent)

    def _bias(self, u_prev, W_u, b):
        return _core().rnnrbm_bias(u_prev, W_u, b)

    def _frame_biases(self, u_prev):
        """b_v(t) [M, V], b_h(t) [M, H]."""
        w = self.weights
        return self._bias(u_prev, w["W_uv"], w["b_v"]), self._bias(u_prev, w["W_uh"], w["b_h"])

    def _batches(self, seqs, batch_size, seq_len, shuffle):
        chunks = []
        for s in seqs:
            step = len(s) if seq_len is None else seq_len
            chunks += [s[i: i + step] for i in range(0, len(s), step)]
        order = self._rng.permutation(len(chunks)) if shuffle else np.arange(len(chunks))
        for b in range(0, len(chunks), batch_size):
            yield _pad([chunks[i] for i in order[b: b + batch_size]], self.dtype)

    # -- training -------------------------------------------------------------------------------------
    def _cd_step(self, x, lengths, k, seed, names, optimizer, mode="rnnrbm"):
        """One CD-k step on a batch x [T, N, V]; updates the weights in `names`. Returns (cost, recon CE)."""
        w = self.weights
        T, N, V = x.shape
        M = T * N
        if mode == "rbm":  # frames as one RBM: a single step each, so u_{t-1} = 0 and b(t) = b
            x = x.reshape(1, M, V)
            valid = _valid(lengths, T).reshape(1, M)
            x = np.ascontiguousarray(x[:, valid[0]])
            lengths, M = None, x.shape[1]
        u_prev = self._rnn(x)
        bv, bh = self._frame_biases(u_prev)
        v = x.reshape(M, V)
        W = w["W"]
        if mode == "rnn":  # next-frame predictor: W = 0 and v* = sigm(b_v(t)) make the cost's gradient the CE's
            W = np.zeros_like(W)
            pv = 1.0 / (1.0 + np.exp(-bv))
            v_neg = pv.astype(self.dtype)
        else:
            v_neg, pv = _core().rbm_gibbs(v, W, bv, bh, k, seed, 0)
        out = _core().rnnrbm_cost_backward(x, x, v_neg.reshape(x.shape), W, w["b_v"], w["b_h"], w["W_uv"],
                                           w["W_uh"], w["W_uu"], w["W_vu"], w["b_u"], None, lengths,
                                           mode != "rbm")
        cost, grads = out[0], dict(zip(self._WEIGHTS, out[1:]))
        optimizer.apply_gradients([(grads[n], w[n]) for n in names])
        valid = np.ones(M, bool) if lengths is None else _valid(lengths, T).reshape(M)
        return cost, _cross_entropy(v[valid], pv[valid])

    def _train(self, seqs, epochs, batch_size, seq_len, optimizer, k, names, mode, verbose, label):
        history = {"cost": [], "reconstruction_cross_entropy": []}
        for epoch in range(epochs):
            costs, ces, counts = [], [], []
            for x, lengths in self._batches(seqs, batch_size, seq_len, shuffle=True):
                cost, ce = self._cd_step(x, lengths, k, int(self._rng.integers(0, 2**63)), names, optimizer, mode)
                costs.append(cost)
                ces.append(ce)
                counts.append(int(lengths.sum()))
            history["cost"].append(float(np.average(costs, weights=counts)))
            history["reconstruction_cross_entropy"].append(float(np.average(ces, weights=counts)))
            if verbose:
                print(f"{label} epoch {epoch + 1}/{epochs}: cost {history['cost'][-1]:.4f}, "
                      f"reconstruction cross-entropy {history['reconstruction_cross_entropy'][-1]:.4f}")
        return history

    def fit(self, sequences, epochs=1, batch_size=16, learning_rate=1e-3, k=15, *, seq_len=None,
            optimizer="sgd", pretrain_rbm_epochs=0, pretrain_rnn_epochs=0, verbose=0):
        """Trains by CD-k and BPTT (module docstring). Returns a history dict of per-epoch lists:
        ``cost`` (the mean free-energy difference F(v) - F(v*)) and ``reconstruction_cross_entropy``
        (the cross-entropy in nats per frame between v and the last chain step's p(v | h), what reference
        tutorials print; it is not the log-likelihood), plus ``pretrain_rbm`` / ``pretrain_rnn`` histories.

        sequences: see the module docstring; batch_size: sequences (or chunks) per update; seq_len: cut
        sequences into chunks of at most this many frames (None: whole sequences); optimizer: "sgd",
        "adam" or an ``rnnkit.optimizers.Optimizer`` (a name is built with ``learning_rate``).
        """
        seqs = _sequences(sequences, self.n_visible)
        epochs = _positive_int("epochs", epochs, 0)
        batch_size = _positive_int("batch_size", batch_size)
        k = _positive_int("k", k)
        if seq_len is not None:
            seq_len = _positive_int("seq_len", seq_len)
        learning_rate = _positive_float("learning_rate", learning_rate)

        def make():
            return _optimizer(optimizer, learning_rate)

        history = {}
        if pretrain_rbm_epochs:
            history["pretrain_rbm"] = self._train(seqs, _positive_int("pretrain_rbm_epochs", pretrain_rbm_epochs),
                                                  batch_size, seq_len, make(), k, ("W", "b_v", "b_h"), "rbm",
                                                  verbose, "pretrain RBM")
        if pretrain_rnn_epochs:
            history["pretrain_rnn"] = self._train(seqs, _positive_int("pretrain_rnn_epochs", pretrain_rnn_epochs),
                                                  batch_size, seq_len, make(), k, ("W_uv", "W_uu", "W_vu", "b_u"),
                                                  "rnn", verbose, "pretrain RNN")
        history.update(self._train(seqs, epochs, batch_size, seq_len, make(), k, self._WEIGHTS, "rnnrbm", verbose,
                                   "RNN-RBM"))
        return history

    # -- sampling --------------------------------------------------------------------------------------
    def _top(self):
        return None

    def generate(self, n_steps, seed=None, *, n_sequences=None, k=25):
        """Samples a piano roll: at each step a k-step Gibbs chain started at zeros with the step's biases,
        its last visible sample the frame. Returns [n_steps, V] (float, 0/1), or [n_sequences, n_steps, V]."""
        n_steps = _positive_int("n_steps", n_steps)
        k = _positive_int("k", k)
        N = 1 if n_sequences is None else _positive_int("n_sequences", n_sequences)
        w = self.weights
        v = _core().rnnrbm_generate(n_steps, N, w["W"], w["b_v"], w["b_h"], w["W_uv"], w["W_uh"], w["W_uu"],
                                    w["W_vu"], w["b_u"], None, k, _seed(seed, self._rng), self._top())
        v = np.transpose(v, (1, 0, 2))
        return v[0] if n_sequences is None else v

    sample = generate

    def _predict_frames(self, v, u_prev, k, seed):
        """The predicted frames [M, V]: each frame's k-step chain from zeros, its last visible sample."""
        bv, bh = self._frame_biases(u_prev)
        v_k, _ = _core().rbm_gibbs(np.zeros_like(v), self.weights["W"], bv, bh, k, seed, 0)
        return v_k

    def frame_accuracy(self, sequences, *, k=25, seed=None):
        """Frame-level accuracy (Bay, Ehmann & Downie 2009) of next-frame prediction: the predicted frame
        at step t is a sample of the model's p(v_t | v_<t) (the last visible sample of a k-step Gibbs
        chain started at zeros, as in ``generate``, with the biases from the true past), and
        accuracy = TP / (TP + FP + FN) with the counts summed over every frame of every sequence."""
        seqs = _sequences(sequences, self.n_visible)
        x, lengths = _pad(seqs, self.dtype)
        M = x.shape[0] * x.shape[1]
        v = x.reshape(M, self.n_visible)
        pred = self._predict_frames(v, self._rnn(x), _positive_int("k", k), _seed(seed, self._rng))
        valid = _valid(lengths, x.shape[0]).reshape(M)
        t, p = v[valid] > 0.5, pred[valid] > 0.5
        tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
        return float(tp / max(tp + fp + fn, 1))

    def reconstruction_cross_entropy(self, sequences, *, k=1, seed=None):
        """Mean over frames of the cross-entropy (nats) between v_t and p(v | h) after a k-step chain from
        v_t: the monitoring value of reference tutorials, not a log-likelihood."""
        seqs = _sequences(sequences, self.n_visible)
        x, lengths = _pad(seqs, self.dtype)
        M = x.shape[0] * x.shape[1]
        v = x.reshape(M, self.n_visible)
        bv, bh = self._frame_biases(self._rnn(x))
        _, pv = _core().rbm_gibbs(v, self.weights["W"], bv, bh, _positive_int("k", k), _seed(seed, self._rng), 0)
        valid = _valid(lengths, x.shape[0]).reshape(M)
        return _cross_entropy(v[valid], pv[valid])

    # -- log-likelihood ------------------------------------------------------------------------------------
    def _exact_possible(self):
        return self.n_hidden <= _EXACT_AUTO_LIMIT

    def _frame_log_prob(self, v, u_prev, method, n_runs, n_betas, seed):
        """log p(v_t | v_<t) [M] and its variance [M]: -F(v_t) - log Z_t."""
        w = self.weights
        bv, bh = self._frame_biases(u_prev)
        F = _core().rbm_free_energy(v, w["W"], bv, bh).astype(np.float64)
        if method == "exact":
            return -F - _core().rbm_log_partition(w["W"], bv, bh), np.zeros(len(F))
        logw, logZ_A = _core().rbm_ais(w["W"], bv, bh, ais_betas(n_betas), n_runs, seed)
        return -F - (logZ_A + _log_mean_exp(logw)), _log_mean_exp_var(logw)

    def log_likelihood(self, sequences, method="auto", *, n_runs=100, n_betas=1000, seed=None):
        """log p(sequences) = sum_t log p(v_t | v_<t), each term -F(v_t) - log Z_t of the step's RBM.

        method: "exact" (log Z_t by enumerating the 2^H hidden configurations), "ais" (annealed importance
        sampling, Salakhutdinov & Murray 2008: ``n_runs`` runs per frame over ``ais_betas(n_betas)`` from
        the RBM with W = 0; an estimate of Z that is unbiased, so log Z is biased low in expectation and
        the log-likelihood high), or "auto" (exact when H <= 16). Returns a ``LogLikelihood`` (nats).
        """
        if method not in ("auto", "exact", "ais"):
            raise ValueError(f"method: expected 'auto', 'exact' or 'ais', got {method!r}")
        if method == "auto":
            method = "exact" if self._exact_possible() else "ais"
        n_runs = _positive_int("n_runs", n_runs)
        seqs = _sequences(sequences, self.n_visible)
        x, lengths = _pad(seqs, self.dtype)
        T, N, V = x.shape
        lp, var = self._frame_log_prob(x.reshape(T * N, V), self._rnn(x), method, n_runs, n_betas,
                                       _seed(seed, self._rng))
        lp, var = lp.reshape(T, N), var.reshape(T, N)
        valid = _valid(lengths, T)
        n = int(valid.sum())
        total = float(lp[valid].sum())
        return LogLikelihood(total=total, per_step=total / n, std=float(np.sqrt(var[valid].sum())) / n,
                             n_frames=n, method=method, per_frame=[lp[: L, i].copy() for i, L in enumerate(lengths)])


def _cross_entropy(v, p):
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return float(-np.mean(np.sum(v * np.log(p) + (1 - v) * np.log1p(-p), axis=1))) if len(v) else 0.0


# ---------------------------------------------------------------------------------------------- RNN-DBN

class RNNDBN(RNNRBM):
    """RNN-DBN (Goel, Vohra & Sahoo, ICANN 2014): an RNN-RBM whose per-step RBM is replaced by a DBN with
    two hidden layers h1 [H] and h2 [H2], every bias of which comes from the RNN:

        p(v_t, h1, h2 | past) = P_top(h1, h2) p(v_t | h1),
        p(v | h1) = prod_i sigm(W^T h1 + b_v(t))_i,            b_v(t) = b_v + W_uv u_{t-1}
        P_top(h1, h2) ∝ exp(c(t) . h1 + b_h2(t) . h2 + h2 . W2 h1),
            c(t) = c + W_uc u_{t-1},   b_h2(t) = b_h2 + W_uh2 u_{t-1},
        u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t)  (as the RNN-RBM).

    Training, greedy as the paper describes it (its RNN-RBM training for the first layer, then the next
    layer on the first one's hidden units), implemented here as:
      1. ``fit`` trains the RNN-RBM (v, h1) exactly as ``RNNRBM.fit`` (W, b_v, b_h, W_uv, W_uh and the RNN;
         with its optional pretraining), b_h(t) = b_h + W_uh u_{t-1} the first layer's recognition bias;
      2. then ``top_epochs`` epochs train the top RBM (h1, h2) by CD-k on binary h1 samples drawn from
         q(h1 | v_t) = sigm(W v_t + b_h(t)) (fresh samples for every batch), its biases c(t), b_h2(t)
         from the same RNN states u_{t-1}, which are held fixed (no BPTT: W2, c, b_h2, W_uc, W_uh2 are
         updated; the RNN and the first layer are not).
    Generation: per step a k-step Gibbs chain from zeros in the top RBM, then v_t ~ p(v | h1).
    ``reconstruction_cross_entropy`` is that of the first layer's RBM (v, h1).
    Log-likelihood: "exact" enumerates h1 (p(v) = sum_h1 P_top(h1) p(v | h1), h2 summed analytically);
    "ais" estimates log Z_top by AIS (or exactly when H2 <= 16) and sum_h1 P*_top(h1) p(v | h1) by
    importance sampling with q(h1 | v) as proposal (``n_runs`` samples), which is consistent but, as a log
    of an unbiased estimate, biased low in expectation (Salakhutdinov & Murray 2008 use the same q).
    """

    _TOP = ("W2", "c", "b_h2", "W_uc", "W_uh2")

    def __init__(self, n_visible, n_hidden, n_hidden2, n_recurrent, *, dtype="float32", init_scale=0.01, seed=None):
        super().__init__(n_visible, n_hidden, n_recurrent, dtype=dtype, init_scale=init_scale, seed=seed)
        self.n_hidden2 = _positive_int("n_hidden2", n_hidden2)
        H, H2, U = self.n_hidden, self.n_hidden2, self.n_recurrent
        self._add_weights({"W2": (H2, H), "c": (H,), "b_h2": (H2,), "W_uc": (H, U), "W_uh2": (H2, U)})

    def get_config(self):
        return {**super().get_config(), "n_hidden2": self.n_hidden2}

    def _top(self):
        return tuple(self.weights[n] for n in self._TOP)

    def _top_biases(self, u_prev):
        """c(t) [M, H], b_h2(t) [M, H2]."""
        w = self.weights
        return self._bias(u_prev, w["W_uc"], w["c"]), self._bias(u_prev, w["W_uh2"], w["b_h2"])

    def _sample_h1(self, v, u_prev, seed):
        """h1 ~ q(h1 | v) = sigm(W v + b_h(t)), [M, H]."""
        _, bh = self._frame_biases(u_prev)
        h1, _ = _core().rbm_sample_visible(v, np.ascontiguousarray(self.weights["W"].T), bh, seed, 0)
        return h1

    def fit(self, sequences, epochs=1, batch_size=16, learning_rate=1e-3, k=15, *, top_epochs=None, seq_len=None,
            optimizer="sgd", pretrain_rbm_epochs=0, pretrain_rnn_epochs=0, verbose=0):
        """Stage 1 (``epochs``, with the pretraining options) as ``RNNRBM.fit``, then stage 2 (``top_epochs``,
        default ``epochs``) on the top RBM; see the class docstring. Returns the history, stage 2's lists
        under ``top``."""
        history = super().fit(sequences, epochs, batch_size, learning_rate, k, seq_len=seq_len, optimizer=optimizer,
                              pretrain_rbm_epochs=pretrain_rbm_epochs, pretrain_rnn_epochs=pretrain_rnn_epochs,
                              verbose=verbose)
        top_epochs = epochs if top_epochs is None else _positive_int("top_epochs", top_epochs, 0)
        seqs = _sequences(sequences, self.n_visible)
        opt = _optimizer(optimizer, learning_rate)
        w = self.weights
        top = {"cost": [], "reconstruction_cross_entropy": []}
        for epoch in range(top_epochs):
            costs, ces, counts = [], [], []
            for x, lengths in self._batches(seqs, batch_size, seq_len, shuffle=True):
                T, N, V = x.shape
                u_prev = self._rnn(x)
                h1 = self._sample_h1(x.reshape(T * N, V), u_prev, int(self._rng.integers(0, 2**63)))
                c, bh2 = self._top_biases(u_prev)
                h1_neg, ph1 = _core().rbm_gibbs(h1, w["W2"], c, bh2, k, int(self._rng.integers(0, 2**63)), 0)
                out = _core().rnnrbm_cost_backward(x, h1.reshape(T, N, -1), h1_neg.reshape(T, N, -1), w["W2"], w["c"],
                                                   w["b_h2"], w["W_uc"], w["W_uh2"], w["W_uu"], w["W_vu"], w["b_u"],
                                                   None, lengths, False)
                opt.apply_gradients(list(zip(out[1:6], (w[n] for n in self._TOP))))
                valid = _valid(lengths, T).reshape(-1)
                costs.append(out[0])
                ces.append(_cross_entropy(h1[valid], ph1[valid]))
                counts.append(int(valid.sum()))
            top["cost"].append(float(np.average(costs, weights=counts)))
            top["reconstruction_cross_entropy"].append(float(np.average(ces, weights=counts)))
            if verbose:
                print(f"top RBM epoch {epoch + 1}/{top_epochs}: cost {top['cost'][-1]:.4f}, "
                      f"reconstruction cross-entropy {top['reconstruction_cross_entropy'][-1]:.4f}")
        history["top"] = top
        return history

    def _predict_frames(self, v, u_prev, k, seed):
        """Each frame's k-step chain from zeros in the top RBM, then v ~ p(v | h1): the sample."""
        w = self.weights
        bv, _ = self._frame_biases(u_prev)
        c, bh2 = self._top_biases(u_prev)
        h1, _ = _core().rbm_gibbs(np.zeros((len(v), self.n_hidden), self.dtype), w["W2"], c, bh2, k, seed, 0)
        v_pred, _ = _core().rbm_sample_visible(h1, w["W"], bv, seed ^ 0x5DEECE66D, 0)
        return v_pred

    def _frame_log_prob(self, v, u_prev, method, n_runs, n_betas, seed):
        w = self.weights
        bv, bh = self._frame_biases(u_prev)
        c, bh2 = self._top_biases(u_prev)
        if method == "exact":
            return _core().dbn_log_prob_exact(v, w["W"], bv, w["W2"], c, bh2), np.zeros(len(v))
        logw = _core().dbn_importance(v, w["W"], bv, bh, w["W2"], c, bh2, n_runs, seed)
        var = _log_mean_exp_var(logw)
        if self.n_hidden2 <= _EXACT_AUTO_LIMIT:
            log_Z_top = _core().rbm_log_partition(w["W2"], c, bh2)
        else:
            logw_z, logZ_A = _core().rbm_ais(w["W2"], c, bh2, ais_betas(n_betas), n_runs, seed ^ 0x2545F491)
            log_Z_top = logZ_A + _log_mean_exp(logw_z)
            var = var + _log_mean_exp_var(logw_z)
        return _log_mean_exp(logw) - log_Z_top, var


# ---------------------------------------------------------------------------------------------- files

def load(path):
    """The RNNRBM or RNNDBN saved at ``path`` by ``save``. The file is checked as rnnkit's model file is (digest,
    bounds: see ``rnnkit.saving``), its ``config`` must declare exactly the stored weights (names, shapes and
    dtype) and the stored arrays become the weights: nothing is drawn. ValueError naming the file for anything
    wrong with it. The ``.npz`` files that earlier versions wrote are not read (a ValueError says so; NumPy's
    ``np.load(path, allow_pickle=False)`` still reads their weights, ``w/<name>``)."""
    try:
        tensors, metadata = saving.read_rnnkit_file(path, _FORMAT, _FORMAT_VERSION, "an RNNRBM or RNNDBN file")
    except ValueError:
        if _is_zip(path):
            raise ValueError(f"{os.fspath(path)}: an .npz file of an earlier rnnkit, not a model file of this one "
                             "(safetensors); np.load(path, allow_pickle=False) reads its weights") from None
        raise
    path = os.fspath(path)
    classes = {"RNNRBM": RNNRBM, "RNNDBN": RNNDBN}
    cls = classes.get(metadata.get("class"))
    if cls is None:
        raise ValueError(f"{path}: not a valid model file (the metadata's class {metadata.get('class')!r:.100} is "
                         "not RNNRBM or RNNDBN)")
    config = saving.metadata_json(path, metadata, "config")
    keys = {"n_visible", "n_hidden", "n_recurrent", "dtype", "init_scale"} | ({"n_hidden2"} if cls is RNNDBN else set())
    if not isinstance(config, dict) or set(config) != keys:
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path}: not a valid model file (the {cls.__name__} config must have the keys "
                         f"{sorted(keys)}, got {got!r:.200})")
    names = cls._WEIGHTS + (RNNDBN._TOP if cls is RNNDBN else ())
    if set(tensors) != set(names):
        odd = sorted(set(tensors) ^ set(names))[0]
        raise ValueError(f"{path}: not a valid model file (a {cls.__name__} has the weights {list(names)}; "
                         f"the file {'lacks' if odd in names else 'has another tensor,'} {odd!r:.100})")

    def stored(name, shape, dtype):
        array = tensors[name]
        if array.shape != tuple(shape) or array.dtype != dtype:
            raise ValueError(f"weight {name!r} should be {dtype}{list(shape)}, the file has "
                             f"{array.dtype}{list(array.shape)}")
        return array

    token = _STORED.set(stored)
    try:
        model = cls(**config, seed=0)
    except Exception as e:  # the config is the file's data: whatever it breaks, the file is at fault
        raise ValueError(f"{path}: the {cls.__name__} in the file cannot be rebuilt: {e}"[:2000]) from None
    finally:
        _STORED.reset(token)
    if not saving.config_matches(config, model.get_config()):
        raise ValueError(f"{path}: not a valid model file (its config {config!r:.300} is not the one a "
                         f"{cls.__name__} rebuilds from it: a value of the wrong type)")
    return model


def _is_zip(path):
    """True when ``path`` is a regular file that starts as a zip archive does (an .npz file)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False
