"""The Jordan network: reference against finite differences, C++ against the reference, bad input, the layer.

Gradients are those of the random-projection loss L = sum(R * y) + sum(Rn * y_n), i.e. backward is called
with dy = R, dy_n = Rn.
"""

import numpy as np
import pytest
from helpers import THREAD_TOL, assert_close, central_differences, make_lengths, valid_mask

import rnnkit
import rnnkit.functional as F
import rnnkit.reference as ref
from rnnkit import Sequential, load_model
from rnnkit.layers import Dense, Jordan, Masking, deserialize, serialize

GRAD_NAMES = ("dx", "dy0", "dW_xh", "dW_yh", "db_h", "dW_hy", "db_y")
WEIGHT_NAMES = ("W_xh", "W_yh", "b_h", "W_hy", "b_y")
ACTIVATIONS = [pytest.param(f, g, id=f"{f}-{g}") for f, g in
               [("tanh", None), ("relu", "tanh"), ("sigmoid", "sigmoid"), ("tanh", "linear")]]
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def make_problem(rng, dtype, T, N, C, U, O, lengths="mixed", with_y0=True):
    """(forward keyword arguments, backward keyword arguments dy = R and dy_n = Rn)."""
    k = 1 / np.sqrt(U)

    def u(*shape):
        return rng.uniform(-k, k, size=shape).astype(dtype)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    inputs = dict(x=normal(T, N, C), W_xh=u(U, C), W_yh=u(U, O), b_h=u(U), W_hy=u(O, U), b_y=u(O),
                  y0=normal(N, O, scale=0.5) if with_y0 else None, lengths=make_lengths(lengths, T, N, rng))
    return inputs, dict(dy=normal(T, N, O), dy_n=normal(N, O))


def run(mod, inputs, douts, **options):
    """Forward and backward through ``mod``; returns ({"y", "y_n", "dx", ...}, cache)."""
    y, y_n, cache = mod.jordan_forward(**inputs, **options)
    grads = mod.jordan_backward(cache, **douts)
    assert len(grads) == len(GRAD_NAMES)
    return {"y": y, "y_n": y_n, **dict(zip(GRAD_NAMES, grads))}, cache


# --------------------------------------------------------------------------------------------------
# 1. The reference against central finite differences (float64)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation, output_activation", ACTIVATIONS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", ["none", "with_zero"])
@pytest.mark.parametrize("with_y0", [False, True], ids=["y0_none", "y0_given"])
def test_reference_gradients_match_finite_differences(activation, output_activation, reverse, lengths, with_y0,
                                                      rng):
    inputs, douts = make_problem(rng, np.float64, T=5, N=4, C=2, U=3, O=2, lengths=lengths, with_y0=True)
    options = dict(reverse=reverse, activation=activation, output_activation=output_activation)
    y0 = inputs["y0"]
    if not with_y0:
        inputs["y0"] = None

    def loss():
        y, y_n, _ = ref.jordan_forward(**{**inputs, "y0": inputs["y0"]}, **options)
        return float(np.sum(douts["dy"] * y) + np.sum(douts["dy_n"] * y_n))

    analytic, _ = run(ref, inputs, douts, **options)
    # with y0=None the state starts at zeros; its gradient is that of a zero y0 given explicitly
    inputs["y0"] = y0 if with_y0 else np.zeros_like(y0)
    for grad_name, name in zip(GRAD_NAMES, ("x", "y0") + WEIGHT_NAMES):
        numeric = central_differences(loss, [inputs[name]])[0]
        np.testing.assert_allclose(analytic[grad_name], numeric, rtol=1e-6, atol=1e-8, err_msg=grad_name)


def test_reference_matches_the_equations_step_by_step(rng):
    inputs, _ = make_problem(rng, np.float64, T=4, N=3, C=2, U=5, O=2, lengths="none")
    y, y_n, _ = ref.jordan_forward(**inputs, activation="relu", output_activation="sigmoid")
    y_prev = inputs["y0"]
    for t in range(4):
        h = np.maximum(inputs["x"][t] @ inputs["W_xh"].T + y_prev @ inputs["W_yh"].T + inputs["b_h"], 0)
        y_prev = 1 / (1 + np.exp(-(h @ inputs["W_hy"].T + inputs["b_y"])))
        np.testing.assert_allclose(y[t], y_prev, rtol=1e-14)
    np.testing.assert_allclose(y_n, y_prev, rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# 2. The C++ kernels against the reference
# --------------------------------------------------------------------------------------------------


def check_against_reference(inputs, douts, **options):
    T, N, C = inputs["x"].shape
    U, O = inputs["W_yh"].shape
    out, cache = run(F, inputs, douts, **options)
    out_ref, cache_ref = run(ref, inputs, douts, **options)
    assert out.keys() == out_ref.keys()
    for name in out:  # to rounding (helpers.TOL): the two implementations sum in different orders
        assert_close(out[name], out_ref[name], name)
    # the hidden layer the forward cached, at every valid step
    valid = valid_mask(inputs["lengths"], T, N)
    h_ref = np.stack([step[1] for step in cache_ref.steps]) if T else np.zeros((0, N, U))
    assert_close(cache.arrays["h"][valid], h_ref[valid].astype(inputs["x"].dtype), "h")
    # exact zeros where a sequence has ended: its outputs, and so the gradient reaching its inputs
    assert np.all(out["y"][~valid] == 0) and np.all(out["dx"][~valid] == 0)
    return out


@pytest.mark.parametrize("activation, output_activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", ["none", "mixed", "with_zero"])
@pytest.mark.parametrize("with_y0", [False, True], ids=["y0_none", "y0_given"])
def test_matches_reference(activation, output_activation, dtype, reverse, lengths, with_y0, threads, rng):
    inputs, douts = make_problem(rng, dtype, T=6, N=5, C=3, U=4, O=3, lengths=lengths, with_y0=with_y0)
    check_against_reference(inputs, douts, reverse=reverse, activation=activation,
                            output_activation=output_activation)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_matches_reference_large(dtype, reverse, threads, rng):
    # 2 * T*N*U*(C + 2 O) = 1.5e7 flops: above the kernels' threshold for running a second thread
    inputs, douts = make_problem(rng, dtype, T=30, N=40, C=32, U=64, O=32, lengths="with_zero")
    check_against_reference(inputs, douts, reverse=reverse, activation="tanh", output_activation="tanh")


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_agree(dtype, rng):
    inputs, douts = make_problem(rng, dtype, T=30, N=41, C=32, U=64, O=32, lengths="mixed")
    results = []
    for n in (1, 2):
        previous = rnnkit.get_num_threads()
        rnnkit.set_num_threads(n)
        try:
            results.append(run(F, inputs, douts, activation="relu")[0])
        finally:
            rnnkit.set_num_threads(previous)
    for name in results[0]:
        assert_close(results[1][name], results[0][name], name, THREAD_TOL[np.dtype(dtype)])


def test_repeated_calls_are_bitwise_identical(threads, rng):
    inputs, douts = make_problem(rng, np.float32, T=6, N=5, C=3, U=20, O=17, lengths="mixed")
    first, _ = run(F, inputs, douts, activation="sigmoid", output_activation="tanh")
    keep = []
    for i in range(16):
        keep.append(np.empty(1 + 3 * i, dtype=np.uint8))  # outputs land at other addresses
        again, _ = run(F, inputs, douts, activation="sigmoid", output_activation="tanh")
        for name in first:
            np.testing.assert_array_equal(again[name], first[name], err_msg=name)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lengths_and_reverse_semantics(reverse, rng):
    # A padded sequence gives what running its valid steps alone gives; reverse runs each sequence from its
    # own last valid step back to its first, outputs aligned with the input steps.
    inputs, douts = make_problem(rng, np.float64, T=6, N=4, C=3, U=5, O=2, lengths="with_zero")
    y, y_n, _ = F.jordan_forward(**inputs, reverse=reverse)
    for n, L in enumerate(inputs["lengths"]):
        alone = {**inputs, "x": inputs["x"][:L, n:n + 1], "y0": inputs["y0"][n:n + 1], "lengths": None}
        if reverse:
            alone["x"] = alone["x"][::-1]
        y_alone, y_n_alone, _ = F.jordan_forward(**alone)
        np.testing.assert_allclose(y[:L, n], (y_alone[::-1] if reverse else y_alone)[:, 0], rtol=1e-12)
        np.testing.assert_allclose(y_n[n], y_n_alone[0], rtol=1e-12)
        assert np.all(y[L:, n] == 0)
    # a length-0 sequence keeps y0 and hands dy_n straight back to dy0
    grads = F.jordan_backward(F.jordan_forward(**inputs, reverse=reverse)[2], **douts)
    np.testing.assert_array_equal(y_n[1], inputs["y0"][1])
    np.testing.assert_array_equal(grads[1][1], douts["dy_n"][1])


def test_none_means_zeros(rng):
    inputs, douts = make_problem(rng, np.float64, T=4, N=3, C=2, U=3, O=2, with_y0=False)
    y, y_n, cache = F.jordan_forward(**inputs)
    y_z, y_n_z, cache_z = F.jordan_forward(**{**inputs, "y0": np.zeros((3, 2))})
    np.testing.assert_array_equal(y, y_z)
    np.testing.assert_array_equal(y_n, y_n_z)
    for a, b in zip(F.jordan_backward(cache, douts["dy"]), F.jordan_backward(cache_z, douts["dy"], np.zeros((3, 2)))):
        np.testing.assert_array_equal(a, b)


def test_empty_time_or_batch(rng):
    for T, N in ((0, 3), (4, 0)):
        inputs, douts = make_problem(rng, np.float32, T=T, N=N, C=2, U=3, O=2, lengths="none")
        out, _ = run(F, inputs, douts)
        assert out["y"].shape == (T, N, 2) and out["dx"].shape == (T, N, 2)
        np.testing.assert_array_equal(out["y_n"], inputs["y0"])
        np.testing.assert_array_equal(out["dy0"], douts["dy_n"])
        assert not out["dW_xh"].any() and not out["db_y"].any()


# --------------------------------------------------------------------------------------------------
# 3. Bad input
# --------------------------------------------------------------------------------------------------


def small(dtype=np.float64):
    return make_problem(np.random.default_rng(0), dtype, T=4, N=3, C=2, U=5, O=6)


@pytest.mark.parametrize("name, shape", [("x", (4, 3)), ("W_xh", (5, 3)), ("W_xh", (5,)), ("W_yh", (4, 6)),
                                         ("b_h", (4,)), ("W_hy", (6, 4)), ("W_hy", (5, 6)), ("b_y", (5,)),
                                         ("y0", (3, 5)), ("y0", (2, 6))])
def test_forward_shape_mismatch_names_the_argument(name, shape):
    inputs, _ = small()
    inputs[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=rf"^{name}: .*{list(shape)}".replace("[", r"\[").replace("]", r"\]")):
        F.jordan_forward(**inputs)


@pytest.mark.parametrize("name, shape", [("dy", (4, 3, 5)), ("dy", (4, 3)), ("dy_n", (3, 5))])
def test_backward_shape_mismatch_names_the_argument(name, shape):
    inputs, douts = small()
    cache = F.jordan_forward(**inputs)[2]
    douts[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=rf"^{name}: "):
        F.jordan_backward(cache, **douts)


@pytest.mark.parametrize("name", ["W_xh", "W_yh", "b_h", "W_hy", "b_y", "y0"])
def test_dtype_mismatch_names_the_argument(name):
    inputs, douts = small()
    inputs[name] = inputs[name].astype(np.float32)
    with pytest.raises(TypeError, match=rf"^{name}: expected dtype float64"):
        F.jordan_forward(**inputs)
    inputs, douts = small(np.float32)
    cache = F.jordan_forward(**inputs)[2]
    with pytest.raises(TypeError, match=r"^dy: expected dtype float32"):
        F.jordan_backward(cache, douts["dy"].astype(np.float64))


@pytest.mark.parametrize("x_dtype", [np.float16, np.int64])
def test_x_dtype(x_dtype):
    inputs, _ = small()
    inputs["x"] = inputs["x"].astype(x_dtype)
    with pytest.raises(TypeError, match=r"^x: "):
        F.jordan_forward(**inputs)


@pytest.mark.parametrize("bad", [[4, 5, 1], [0, -1, 2]])
def test_lengths_out_of_range(bad):
    inputs, _ = small()
    with pytest.raises(ValueError, match=r"^lengths: expected values in \[0, T\]"):
        F.jordan_forward(**{**inputs, "lengths": np.array(bad)})
    with pytest.raises(ValueError, match=r"^lengths: "):
        F.jordan_forward(**{**inputs, "lengths": np.array([1, 2])})
    with pytest.raises(TypeError, match=r"^lengths: "):
        F.jordan_forward(**{**inputs, "lengths": np.array([1.0, 2.0, 3.0])})


def test_unknown_activation():
    inputs, _ = small()
    with pytest.raises(ValueError, match=r"^activation: .*'softmax'"):
        F.jordan_forward(**inputs, activation="softmax")
    with pytest.raises(ValueError, match=r"^output_activation: .*'relu'"):
        F.jordan_forward(**inputs, output_activation="relu")
    with pytest.raises(ValueError, match=r"^activation must be .*'linear'"):
        ref.jordan_forward(**inputs, activation="linear")
    # the kernels check too
    inputs["lengths"] = None
    with pytest.raises(ValueError, match=r"^output_activation: "):
        rnnkit._isa.current.jordan_forward(*(inputs[k] for k in ("x",) + WEIGHT_NAMES), None, None, False,
                                           "tanh", "softplus")


def test_cache_of_another_kind():
    inputs, douts = small()
    rnn_cache = F.rnn_forward(inputs["x"], np.zeros((5, 2)), np.zeros((5, 5)), np.zeros(5), np.zeros(5))[2]
    with pytest.raises(TypeError, match=r"^cache: .*rnn_forward"):
        F.jordan_backward(rnn_cache, douts["dy"])
    jordan_cache = F.jordan_forward(**inputs)[2]
    with pytest.raises(TypeError, match=r"^cache: .*jordan_forward"):
        F.rnn_backward(jordan_cache, np.zeros((4, 3, 5)))
    with pytest.raises(TypeError, match=r"^cache: "):
        F.jordan_backward(ref.jordan_forward(**inputs)[2], douts["dy"])
    with pytest.raises(TypeError, match=r"jordan_backward: `cache`"):
        ref.jordan_backward(jordan_cache, douts["dy"])
    assert "U=5, O=6" in repr(jordan_cache)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="^units: "):
        Jordan(0, 2)
    with pytest.raises(ValueError, match="^output_units: "):
        Jordan(3, 1.5)
    with pytest.raises(ValueError, match="^activation: "):
        Jordan(3, 2, activation="softmax")
    with pytest.raises(ValueError, match="^output_activation: "):
        Jordan(3, 2, output_activation="relu")
    layer = Jordan(3, 2, dtype="float64")
    with pytest.raises(ValueError, match="^initial_state: "):
        layer(np.zeros((2, 4, 1)), initial_state=np.zeros((2, 3)))


# --------------------------------------------------------------------------------------------------
# 4. The layer, alone and in a Sequential model
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(return_sequences=True), dict(),
                                     dict(return_sequences=True, go_backwards=True), dict(go_backwards=True),
                                     dict(return_sequences=True, use_bias=False)],
                         ids=["seq", "last", "seq_backwards", "last_backwards", "no_bias"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_layer_gradients_through_a_model(options, masked, rng):
    # Masking (zeros = padding) -> Jordan -> Dense, mse: every trainable weight's gradient, and the model's own
    # backward pass reaching it, against central differences of the model's loss.
    N, T, C = 3, 5, 2
    x = rng.standard_normal((N, T, C))
    if masked:
        x[1, 3:] = 0.0
        x[2, 1:] = 0.0
    jordan = Jordan(4, 3, output_activation="tanh", bias_initializer="random_normal", dtype="float64", **options)
    model = Sequential([Masking(0.0, input_shape=(T, C), dtype="float64"), jordan, Dense(2, dtype="float64")])
    model.compile(optimizer="sgd", loss="mse")
    y = rng.standard_normal(model._output_shape(input_shape=x.shape))

    def loss():
        y_pred, mask = model._forward(x, training=False)
        return model._loss_and_metrics(y, y_pred, mask)[0]["loss"]

    y_pred, mask = model._forward(x, training=True)
    model._backward(model._loss_and_metrics(y, y_pred, mask)[1])
    analytic = [g for layer in model.layers for g in layer.grads]
    weights = model.trainable_weights
    assert len(jordan.grads) == len(jordan.weights) == (5 if jordan.use_bias else 3)
    for a, n, w in zip(analytic, central_differences(loss, weights), weights):
        assert a.shape == w.shape
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-8)


def test_layer_input_and_initial_state_gradients(rng):
    layer = Jordan(3, 2, activation="sigmoid", return_sequences=True, dtype="float64")
    x, y0 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2))
    R = rng.standard_normal((2, 4, 2))
    layer(x, initial_state=y0)
    dx = layer.backward(R)
    numeric = central_differences(lambda: float(np.sum(R * layer(x, initial_state=[y0]))), [x, y0])
    np.testing.assert_allclose(dx, numeric[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.state_grads[0], numeric[1], rtol=1e-6, atol=1e-8)


def test_layer_is_the_functional_kernel_batch_major(rng):
    layer = Jordan(4, 2, return_sequences=True, go_backwards=True)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    mask = np.arange(5) < np.array([5, 2, 3])[:, None]
    out = layer(x, mask=mask)
    W_xh, W_yh, W_hy, b_h, b_y = layer.weights
    y, y_n, _ = F.jordan_forward(x.transpose(1, 0, 2), W_xh, W_yh, b_h, W_hy, b_y, lengths=mask.sum(1), reverse=True)
    # go_backwards: outputs in processing order (Keras), i.e. each sequence's valid steps reversed
    for n, L in enumerate(mask.sum(1)):
        np.testing.assert_array_equal(out[n, :L], y[:L, n][::-1])
        assert not out[n, L:].any()
    layer.return_sequences = False
    np.testing.assert_array_equal(layer(x, mask=mask), y_n)
    assert layer.compute_output_shape((None, 5, 2)) == (None, 2)


class _NoFeedback(rnnkit.callbacks.Callback):
    """Holds W_yh at zero: the same network without its output feedback."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def on_train_begin(self, logs=None):
        self.layer.weights[1][...] = 0.0

    def on_batch_end(self, batch, logs=None):
        self.layer.weights[1][...] = 0.0


def test_jordan_learns_to_generate_a_sequence():
    # Only the first input step holds a cue (one of 4); the target is a rotating point whose starting phase the
    # cue picks. After step 0 the network sees nothing but its own previous output, so the sequence can only
    # be generated through the output feedback: with W_yh held at zero the same network cannot learn it.
    T, K = 12, 4
    cues = np.repeat(np.arange(K), 8)
    x = np.zeros((cues.size, T, K), np.float32)
    x[np.arange(cues.size), 0, cues] = 1.0
    phase = 2 * np.pi * cues[:, None] / K + 0.5 * np.arange(T)[None, :]
    y = 0.8 * np.stack([np.cos(phase), np.sin(phase)], axis=-1).astype(np.float32)
    losses = {}
    for feedback in (True, False):
        rnnkit.set_seed(0)
        jordan = Jordan(16, 2, return_sequences=True, input_shape=(T, K))
        model = Sequential([jordan])
        model.compile(optimizer=rnnkit.optimizers.Adam(learning_rate=0.02), loss="mse")
        before = model.evaluate(x, y)
        model.fit(x, y, batch_size=8, epochs=150, verbose=0, callbacks=[] if feedback else [_NoFeedback(jordan)])
        losses[feedback] = (before, model.evaluate(x, y))
    (before, after), (_, without_feedback) = losses[True], losses[False]
    assert after < 0.02 * before, losses
    assert without_feedback > 0.5 * before and after < 0.05 * without_feedback, losses


def test_save_load_round_trip_is_bit_identical(tmp_path, rng):
    T, C = 6, 3
    x = rng.standard_normal((10, T, C)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    model = Sequential([Jordan(5, 3, activation="relu", output_activation="sigmoid", go_backwards=True,
                               bias_initializer="random_normal", input_shape=(T, C)), Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=5, epochs=2, verbose=0)
    path = tmp_path / "jordan.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert [type(layer) for layer in loaded.layers] == [Jordan, Dense]
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # training resumes identically
    model.fit(x, y, batch_size=5, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=5, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_round_trip(rng):
    layer = Jordan(4, 2, activation="sigmoid", output_activation="tanh", return_sequences=True, use_bias=False,
                   dtype="float64", kernel_initializer="he_uniform")
    data = serialize(layer)
    copy = deserialize(data)
    assert type(copy) is Jordan and serialize(copy) == data
    assert data["config"]["output_activation"] == "tanh" and data["config"]["output_units"] == 2
    x = rng.standard_normal((2, 3, 5))
    layer(x)
    copy(x)
    copy.set_weights(layer.get_weights())
    np.testing.assert_array_equal(copy(x), layer(x))
    assert layer.weight_names == ["W_xh", "W_yh", "W_hy"]
    assert Jordan(3, 2).get_config()["output_activation"] == "linear"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("reverse", [False, True])
def test_non_finite_padding_leaves_outputs_and_gradients_unchanged(bad, reverse, rng):
    """Padded steps (t >= lengths[n]) never enter the computation: NaN or inf there changes no output and no
    gradient (dW_xh sums over every row of x, dW_hy over every row of the hidden layer)."""
    inputs, douts = make_problem(rng, np.float64, 7, 5, 3, 4, 2, lengths="with_zero")
    clean, _ = run(F, inputs, douts, reverse=reverse)
    dirty_x = inputs["x"].copy()
    for n, length in enumerate(inputs["lengths"]):
        dirty_x[length:, n] = bad
    dirty, _ = run(F, {**inputs, "x": dirty_x}, douts, reverse=reverse)
    for name, value in clean.items():
        np.testing.assert_array_equal(dirty[name], value, err_msg=name)
