"""RNN-RBM and RNN-DBN: C++ kernels against a NumPy reference written here from the equations, the cost's
gradient against finite differences, AIS against exact enumeration, seeded sampling, and bad input."""

import itertools
import json
import os

import numpy as np
import pytest

import rnnkit
from rnnkit import _isa, generative
from rnnkit.saving import read_safetensors

core = _isa.current


# ---------------------------------------------------------------------------------------------- reference

def sigm(a):
    return 1.0 / (1.0 + np.exp(-a))


def softplus(a):
    return np.logaddexp(0.0, a)


def ref_free_energy(v, W, bv, bh):
    """F(v) = -b_v . v - sum_j softplus(b_h,j + W_j . v); v [M, V], bv [M, V], bh [M, H]."""
    return -np.sum(bv * v, axis=1) - np.sum(softplus(v @ W.T + bh), axis=1)


def configs(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def ref_log_partition(W, bv, bh):
    """log Z per frame by enumerating every (v, h): log sum exp(b_v . v + b_h . h + h . W v)."""
    vs, hs = configs(W.shape[1]), configs(W.shape[0])
    out = []
    for f in range(len(bv)):
        neg_e = (vs @ bv[f])[:, None] + (hs @ bh[f])[None, :] + vs @ W.T @ hs.T
        out.append(np.logaddexp.reduce(neg_e.ravel()))
    return np.array(out)


def ref_states(x, W_vu, W_uu, b_u):
    """u_prev [T, N, U]: u_{t-1}, u_t = tanh(b_u + W_uu u_{t-1} + W_vu x_t), u_{-1} = 0."""
    T, N, _ = x.shape
    u = np.zeros((N, W_uu.shape[0]))
    out = []
    for t in range(T):
        out.append(u)
        u = np.tanh(b_u + u @ W_uu.T + x[t] @ W_vu.T)
    return np.stack(out)


def ref_cost(p, x, v, v_neg, lengths):
    """mean over valid frames of F(v_t) - F(v*_t), biases b_v + W_uv u_{t-1}, b_h + W_uh u_{t-1}."""
    T, N, V = v.shape
    up = ref_states(x, p["W_vu"], p["W_uu"], p["b_u"]).reshape(T * N, -1)
    bv, bh = up @ p["W_uv"].T + p["b_v"], up @ p["W_uh"].T + p["b_h"]
    d = ref_free_energy(v.reshape(T * N, V), p["W"], bv, bh) - ref_free_energy(v_neg.reshape(T * N, V), p["W"], bv, bh)
    valid = (np.arange(T)[:, None] < lengths[None, :]).reshape(-1)
    return d[valid].sum() / valid.sum()


def ref_dbn_log_prob(v, W, bv, W2, c, bh2):
    """log p(v) of each frame's DBN by enumerating (h1, h2): p(v) = sum P_top(h1, h2) p(v | h1)."""
    h1s, h2s = configs(W.shape[0]), configs(W2.shape[0])
    out = []
    for f in range(len(v)):
        log_top = (h1s @ c[f])[:, None] + (h2s @ bh2[f])[None, :] + h1s @ W2.T @ h2s.T  # [2^H, 2^H2]
        log_top = np.logaddexp.reduce(log_top, axis=1)
        log_top -= np.logaddexp.reduce(log_top)
        a = h1s @ W + bv[f]
        log_cond = np.sum(v[f] * a - softplus(a), axis=1)
        out.append(np.logaddexp.reduce(log_top + log_cond))
    return np.array(out)


# ---------------------------------------------------------------------------------------------- helpers

def binary(rng, shape, p=0.3):
    return (rng.random(shape) < p).astype(np.float64)


def params(rng, V, H, U, C=None, scale=0.5):
    C = V if C is None else C
    shapes = {"W": (H, V), "b_v": (V,), "b_h": (H,), "W_uv": (V, U), "W_uh": (H, U), "W_uu": (U, U),
              "W_vu": (U, C), "b_u": (U,)}
    return {k: rng.normal(0, scale, s) for k, s in shapes.items()}


NAMES = ("W", "b_v", "b_h", "W_uv", "W_uh", "W_uu", "W_vu", "b_u")


def cpp_cost(p, x, v, v_neg, lengths, rnn_grad=True):
    return core.rnnrbm_cost_backward(x, v, v_neg, *(p[n] for n in NAMES), None, lengths, rnn_grad)


def small_sequences(rng, V=8, n=5):
    return [binary(rng, (int(rng.integers(4, 10)), V)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- kernels vs reference

@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_free_energy_and_conditionals_match_reference(rng, threads, dtype, rtol):
    M, V, H = 130, 7, 5
    v, h = binary(rng, (M, V)), binary(rng, (M, H))
    W, bv, bh = rng.normal(0, 1, (H, V)), rng.normal(0, 1, (M, V)), rng.normal(0, 1, (M, H))
    c = lambda a: np.ascontiguousarray(a, dtype=dtype)
    F = core.rbm_free_energy(c(v), c(W), c(bv), c(bh))
    np.testing.assert_allclose(F, ref_free_energy(v, W, bv, bh), rtol=rtol, atol=rtol)
    # p(v = 1 | h) = sigm(W^T h + b_v); p(h = 1 | v) = sigm(W v + b_h) through the same kernel with W^T
    _, pv = core.rbm_sample_visible(c(h), c(W), c(bv), 3, 0)
    np.testing.assert_allclose(pv, sigm(h @ W + bv), rtol=rtol, atol=rtol)
    _, ph = core.rbm_sample_visible(c(v), c(W.T), c(bh), 3, 0)
    np.testing.assert_allclose(ph, sigm(v @ W.T + bh), rtol=rtol, atol=rtol)


def test_exact_log_partition_matches_full_enumeration(rng, threads):
    M, V, H = 6, 5, 4
    W, bv, bh = rng.normal(0, 1, (H, V)), rng.normal(0, 1, (M, V)), rng.normal(0, 1, (M, H))
    np.testing.assert_allclose(core.rbm_log_partition(W, bv, bh), ref_log_partition(W, bv, bh), rtol=1e-12)


def test_states_and_cost_match_reference(rng, threads):
    T, N, V, H, U = 6, 4, 5, 4, 3
    p = params(rng, V, H, U)
    x, v_neg = binary(rng, (T, N, V)), binary(rng, (T, N, V))
    lengths = np.array([6, 3, 1, 5], dtype=np.int64)
    _, u_prev = core.rnnrbm_states(x, p["W_vu"], p["W_uu"], p["b_u"], None)
    np.testing.assert_allclose(u_prev, ref_states(x, p["W_vu"], p["W_uu"], p["b_u"]), rtol=1e-12, atol=1e-14)
    cost = cpp_cost(p, x, x, v_neg, lengths)[0]
    np.testing.assert_allclose(cost, ref_cost(p, x, x, v_neg, lengths), rtol=1e-12)


def test_cost_gradient_matches_finite_differences(rng):
    """Every weight's gradient, including the RNN's through BPTT, with v* held fixed (float64)."""
    T, N, V, H, U = 5, 3, 4, 3, 3
    p = params(rng, V, H, U)
    x, v_neg = binary(rng, (T, N, V)), binary(rng, (T, N, V))
    lengths = np.array([5, 2, 4], dtype=np.int64)
    grads = dict(zip(NAMES, cpp_cost(p, x, x, v_neg, lengths)[1:]))
    eps = 1e-6
    for name in NAMES:
        num = np.zeros_like(p[name])
        for i in np.ndindex(p[name].shape):
            q = {k: a.copy() for k, a in p.items()}
            q[name][i] += eps
            up = ref_cost(q, x, x, v_neg, lengths)
            q[name][i] -= 2 * eps
            num[i] = (up - ref_cost(q, x, x, v_neg, lengths)) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.abs(grads["W_uu"]).max() > 1e-4  # the BPTT path is exercised


def test_cost_gradient_without_rnn_grad_zeroes_only_the_rnn(rng):
    T, N, V, H, U = 4, 2, 4, 3, 3
    p = params(rng, V, H, U)
    x, v_neg = binary(rng, (T, N, V)), binary(rng, (T, N, V))
    full = cpp_cost(p, x, x, v_neg, None)
    fixed = cpp_cost(p, x, x, v_neg, None, rnn_grad=False)
    for i, name in enumerate(NAMES, start=1):
        if name in ("W_uu", "W_vu", "b_u"):
            assert not fixed[i].any()
        else:
            np.testing.assert_array_equal(fixed[i], full[i])


def test_dbn_exact_log_prob_matches_full_enumeration(rng, threads):
    M, V, H, H2 = 5, 4, 3, 3
    v = binary(rng, (M, V), 0.5)
    W, W2 = rng.normal(0, 1, (H, V)), rng.normal(0, 1, (H2, H))
    bv, c, bh2 = rng.normal(0, 1, (M, V)), rng.normal(0, 1, (M, H)), rng.normal(0, 1, (M, H2))
    np.testing.assert_allclose(core.dbn_log_prob_exact(v, W, bv, W2, c, bh2), ref_dbn_log_prob(v, W, bv, W2, c, bh2),
                               rtol=1e-12)


def test_gibbs_chain_samples_the_rbm(rng):
    """The frequencies of a long run of k-step chains match the RBM's exact marginal p(v)."""
    V, H, M = 3, 2, 40000
    W, bv, bh = rng.normal(0, 1.5, (H, V)), rng.normal(0, 1, V), rng.normal(0, 1, H)
    v_k, _ = core.rbm_gibbs(np.zeros((M, V)), W, np.tile(bv, (M, 1)), np.tile(bh, (M, 1)), 20, 5, 0)
    vs = configs(V)
    log_p = -ref_free_energy(vs, W, np.tile(bv, (len(vs), 1)), np.tile(bh, (len(vs), 1)))
    p = np.exp(log_p - np.logaddexp.reduce(log_p))
    freq = np.array([np.mean(np.all(v_k == s, axis=1)) for s in vs])
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p.max() / M) + 1e-3)


# ---------------------------------------------------------------------------------------------- AIS and models

def test_ais_agrees_with_exact_on_small_rbms(rng):
    M, V, H = 4, 12, 8
    W, bv, bh = rng.normal(0, 0.8, (H, V)), rng.normal(0, 1, (M, V)), rng.normal(0, 1, (M, H))
    exact = core.rbm_log_partition(W, bv, bh)
    logw, logZ_A = core.rbm_ais(W, bv, bh, generative.ais_betas(1000), 200, 11)
    est = logZ_A + generative._log_mean_exp(logw)
    std = np.sqrt(generative._log_mean_exp_var(logw))
    assert np.all(np.abs(est - exact) < np.maximum(4 * std, 0.02)), (est, exact, std)


@pytest.mark.parametrize("cls", ["RNNRBM", "RNNDBN"])
def test_model_log_likelihood_ais_within_spread_of_exact(rng, cls):
    seqs = small_sequences(rng, V=10)
    model = (generative.RNNRBM(10, 6, 5, dtype="float64", init_scale=0.3, seed=1) if cls == "RNNRBM"
             else generative.RNNDBN(10, 6, 4, 5, dtype="float64", init_scale=0.3, seed=1))
    exact = model.log_likelihood(seqs, "exact")
    ais = model.log_likelihood(seqs, "ais", n_runs=400, n_betas=500, seed=3)
    assert exact.method == "exact" and ais.method == "ais" and exact.std == 0 and ais.std > 0
    assert abs(ais.per_step - exact.per_step) < max(4 * ais.std, 0.01), (ais, exact)
    assert exact.n_frames == sum(len(s) for s in seqs)
    np.testing.assert_allclose(sum(f.sum() for f in exact.per_frame), exact.total)


def test_rnnrbm_log_likelihood_is_a_normalised_density(rng):
    """Summed over every binary sequence of length 2, p(v_0, v_1) is 1 (exact path, V = 3)."""
    model = generative.RNNRBM(3, 2, 2, dtype="float64", init_scale=1.0, seed=2)
    seqs = [np.stack([a, b]) for a in configs(3) for b in configs(3)]
    lp = [model.log_likelihood(s, "exact").total for s in seqs]
    np.testing.assert_allclose(np.logaddexp.reduce(lp), 0.0, atol=1e-10)


def test_rnndbn_log_likelihood_is_a_normalised_density(rng):
    model = generative.RNNDBN(3, 2, 2, 2, dtype="float64", init_scale=1.0, seed=2)
    seqs = [np.stack([a, b]) for a in configs(3) for b in configs(3)]
    lp = [model.log_likelihood(s, "exact").total for s in seqs]
    np.testing.assert_allclose(np.logaddexp.reduce(lp), 0.0, atol=1e-10)


@pytest.mark.parametrize("cls", ["RNNRBM", "RNNDBN"])
def test_training_raises_the_log_likelihood(rng, cls):
    """A repeating pattern: after training the exact log-likelihood is far above the initial one."""
    pattern = np.eye(6)[[0, 2, 4, 1, 3, 5]]
    seqs = [np.tile(pattern, (4, 1))[i: i + 12] for i in range(6)]
    model = (generative.RNNRBM(6, 8, 8, dtype="float64", init_scale=0.1, seed=0) if cls == "RNNRBM"
             else generative.RNNDBN(6, 8, 6, 8, dtype="float64", init_scale=0.1, seed=0))
    before = model.log_likelihood(seqs, "exact").per_step
    history = model.fit(seqs, epochs=60, batch_size=3, learning_rate=0.05, k=3, optimizer="adam",
                        pretrain_rbm_epochs=5, pretrain_rnn_epochs=20)
    after = model.log_likelihood(seqs, "exact").per_step
    assert len(history["cost"]) == 60 and "pretrain_rnn" in history
    assert after > before + 1.0, (before, after)
    assert model.frame_accuracy(seqs, seed=0) > 0.3


def test_frame_accuracy_counts_tp_fp_fn(rng):
    """A model that predicts frame t as the fixed frame p: accuracy = TP / (TP + FP + FN) over all frames."""
    model = generative.RNNRBM(4, 2, 2, dtype="float64", seed=0)
    for k in model.weights:
        model.weights[k][...] = 0
    p = np.array([1.0, 1.0, 0.0, 0.0])
    model.weights["b_v"][...] = np.where(p > 0, 40.0, -40.0)
    seq = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=float)
    tp = np.sum((seq > 0) & (p > 0))
    fp = np.sum((seq == 0) & (p > 0))
    fn = np.sum((seq > 0) & (p == 0))
    assert model.frame_accuracy(seq, seed=1) == pytest.approx(tp / (tp + fp + fn))


# ---------------------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("cls", ["RNNRBM", "RNNDBN"])
def test_generation_reproducible_from_a_seed_and_thread_count(rng, cls):
    make = ((lambda: generative.RNNRBM(12, 9, 7, init_scale=0.5, seed=4)) if cls == "RNNRBM"
            else (lambda: generative.RNNDBN(12, 9, 5, 7, init_scale=0.5, seed=4)))
    model = make()
    previous = rnnkit.get_num_threads()
    try:
        out = {}
        for nt in (1, 2):
            rnnkit.set_num_threads(nt)
            out[nt] = model.generate(30, seed=7, n_sequences=20)
        again = model.generate(30, seed=7, n_sequences=20)
        other = model.generate(30, seed=8, n_sequences=20)
    finally:
        rnnkit.set_num_threads(previous)
    assert out[1].shape == (20, 30, 12) and set(np.unique(out[1])) <= {0.0, 1.0}
    np.testing.assert_array_equal(out[1], out[2])
    np.testing.assert_array_equal(out[1], again)
    assert not np.array_equal(out[1], other)
    assert model.sample(5, seed=1).shape == (5, 12)


def test_training_and_ais_identical_at_one_and_two_threads(rng):
    seqs = small_sequences(rng, V=10, n=40)
    previous = rnnkit.get_num_threads()
    results = []
    try:
        for nt in (1, 2):
            rnnkit.set_num_threads(nt)
            model = generative.RNNRBM(10, 12, 6, seed=3)
            model.fit(seqs, epochs=2, batch_size=20, learning_rate=0.01, k=3)
            ais = model.log_likelihood(seqs, "ais", n_runs=8, n_betas=50, seed=1)
            results.append((model.weights, ais.total, model.frame_accuracy(seqs, seed=2)))
    finally:
        rnnkit.set_num_threads(previous)
    for name in results[0][0]:
        np.testing.assert_array_equal(results[0][0][name], results[1][0][name], err_msg=name)
    assert results[0][1:] == results[1][1:]


# ---------------------------------------------------------------------------------------------- files and input

@pytest.mark.parametrize("cls", ["RNNRBM", "RNNDBN"])
def test_save_load_round_trip(tmp_path, rng, cls):
    model = (generative.RNNRBM(6, 4, 3, seed=0) if cls == "RNNRBM" else generative.RNNDBN(6, 4, 3, 3, seed=0))
    path = tmp_path / "model"  # written to exactly this path: nothing appended
    model.save(path)
    assert os.listdir(tmp_path) == ["model"]
    loaded = generative.load(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    for k, w in model.weights.items():
        assert loaded.weights[k].dtype == w.dtype
        np.testing.assert_array_equal(loaded.weights[k], w)
    np.testing.assert_array_equal(loaded.generate(8, seed=3), model.generate(8, seed=3))
    tensors, metadata = read_safetensors(path)  # rnnkit's safetensors model file, with its digest
    assert metadata["format"] == "rnnkit.generative" and metadata["class"] == cls and "sha256" in metadata
    assert sorted(tensors) == sorted(model.weights)
    with pytest.raises(ValueError, match="model: a safetensors file, but not an rnnkit model .*generative.load"):
        rnnkit.load_model(path)
    model.save(path)  # a re-save replaces the file, leaving nothing else in the directory
    assert os.listdir(tmp_path) == ["model"]


def test_load_rejects_the_npz_files_of_earlier_versions(tmp_path):
    model = generative.RNNRBM(6, 4, 3, seed=0)
    old = tmp_path / "old.npz"
    meta = json.dumps({"format": "rnnkit.generative", "class": "RNNRBM", "config": model.get_config()})
    np.savez(old, __meta__=np.array(meta), **{f"w/{k}": v for k, v in model.weights.items()})
    with pytest.raises(ValueError, match=r"old\.npz: an \.npz file of an earlier rnnkit"):
        generative.load(old)
    with pytest.raises(ValueError, match=r"other\.safetensors: a safetensors file, but not an RNNRBM or RNNDBN file"
                                         r" .*rnnkit\.load_model"):
        rnnkit.Sequential([rnnkit.layers.Dense(2, input_shape=(3,))]).save(tmp_path / "other.safetensors")
        generative.load(tmp_path / "other.safetensors")


def test_bad_input_is_rejected_with_the_argument_named(rng):
    model = generative.RNNRBM(5, 3, 2, seed=0)
    seq = binary(rng, (6, 5))
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected binary frames"):
        model.fit([seq, seq * 0.5], epochs=1)
    with pytest.raises(ValueError, match=r"sequences\[0\]: expected shape \[T, V\] with V = n_visible = 5"):
        model.log_likelihood(binary(rng, (6, 4)))
    with pytest.raises(ValueError, match=r"sequences\[0\]: expected binary"):
        model.frame_accuracy(seq + 2)
    with pytest.raises(ValueError, match="method"):
        model.log_likelihood(seq, method="bogus")
    with pytest.raises(ValueError, match="n_hidden"):
        generative.RNNRBM(5, 0, 2)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        model.fit(seq, k=0)
    with pytest.raises(ValueError, match="seed"):
        model.generate(3, seed=-1)
    with pytest.raises(ValueError, match=r"b_h: expected shape \[M, H\]"):
        core.rbm_free_energy(seq, np.zeros((3, 5)), np.zeros((6, 5)), np.zeros((6, 4)))
    with pytest.raises(ValueError, match="W: exact enumeration"):
        core.rbm_log_partition(np.zeros((31, 2)), np.zeros((1, 2)), np.zeros((1, 31)))
    with pytest.raises(TypeError, match="W_uu"):
        core.rnnrbm_states(np.zeros((2, 1, 3)), np.zeros((2, 3)), np.zeros((2, 2), np.float32), np.zeros(2), None)
