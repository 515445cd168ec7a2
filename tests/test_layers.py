"""rnnkit.layers: gradients against finite differences (float64), Keras semantics, masks, init, PyTorch."""

import numpy as np
import pytest
from helpers import central_differences

import rnnkit
from rnnkit.layers import (GRU, LSTM, Activation, Bidirectional, Dense, Dropout, Embedding, Masking, SimpleRNN,
                           deserialize, mask_to_lengths, serialize)




F64 = dict(rtol=1e-6, atol=1e-8)  # central differences with eps=1e-6 in float64


def _as_list(a):
    return list(a) if isinstance(a, list) else [a]


def assert_grads_close(analytic, numeric):
    assert len(analytic) == len(numeric)
    for a, n in zip(analytic, numeric):
        assert a.shape == n.shape
        probed = ~np.isnan(n)
        np.testing.assert_allclose(a[probed], n[probed], **F64)


def check_layer_gradients(layer, x, rng, **call_kwargs):
    """The layer's backward against central differences of sum(R * outputs), for x and every weight."""
    outs = _as_list(layer(x, **call_kwargs))
    R = [rng.standard_normal(o.shape) for o in outs]
    dx = layer.backward(R if len(R) > 1 else R[0])
    analytic = [dx, *layer.grads]

    def loss():
        return sum(float(np.sum(r * o)) for r, o in zip(R, _as_list(layer(x, **call_kwargs))))

    assert_grads_close(analytic, central_differences(loss, [x, *layer.trainable_weights], entries=6))
    return analytic


RECURRENT = [
    pytest.param(lambda **k: SimpleRNN(3, dtype="float64", **k), id="rnn_tanh"),
    pytest.param(lambda **k: SimpleRNN(3, activation="relu", dtype="float64", **k), id="rnn_relu"),
    pytest.param(lambda **k: LSTM(3, dtype="float64", **k), id="lstm"),
    pytest.param(lambda **k: GRU(3, dtype="float64", **k), id="gru"),
    pytest.param(lambda **k: GRU(3, reset_after=False, dtype="float64", **k), id="gru_reset_before"),
]
MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)


@pytest.mark.parametrize("make", RECURRENT)
@pytest.mark.parametrize("options", [
    dict(return_sequences=True), dict(), dict(return_sequences=True, go_backwards=True),
    dict(go_backwards=True), dict(return_sequences=True, return_state=True), dict(use_bias=False),
], ids=["seq", "last", "seq_backwards", "last_backwards", "seq_state", "no_bias"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_recurrent_gradients_match_finite_differences(make, options, masked, rng):
    layer = make(bias_initializer="random_normal", **options)
    x = rng.standard_normal((3, 4, 2))
    check_layer_gradients(layer, x, rng, mask=MASK if masked else None)


@pytest.mark.parametrize("make", RECURRENT)
def test_initial_state_gradient(make, rng):
    layer = make(return_sequences=True)
    x = rng.standard_normal((2, 3, 2))
    states = [rng.standard_normal((2, 3)) for _ in range(layer.n_states)]
    outs = layer(x, initial_state=states)
    R = rng.standard_normal(outs.shape)
    layer.backward(R)
    assert_grads_close(layer.state_grads,
                       central_differences(lambda: float(np.sum(R * layer(x, initial_state=states))), states,
                                           entries=6))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("cell", [LSTM, GRU])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_gradients(merge_mode, cell, return_sequences, rng):
    layer = Bidirectional(cell(3, return_sequences=return_sequences, dtype="float64"), merge_mode=merge_mode)
    check_layer_gradients(layer, rng.standard_normal((3, 4, 2)), rng, mask=MASK)


def test_bidirectional_is_forward_plus_reversed_run(rng):
    x = rng.standard_normal((3, 4, 2))
    bi = Bidirectional(GRU(3, return_sequences=True, dtype="float64"), merge_mode=None)
    y_f, y_b = bi(x, mask=MASK)
    fw = bi.forward_layer
    W = [w.copy() for w in bi.backward_layer.weights]
    expected_b = rnnkit.functional.gru_forward(x.transpose(1, 0, 2), *W, lengths=MASK.sum(1), reverse=True)[0]
    np.testing.assert_array_equal(y_f, fw(x, mask=MASK))
    np.testing.assert_allclose(y_b, expected_b.transpose(1, 0, 2), rtol=1e-12)
    assert bi.count_params() == 2 * fw.count_params()


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax", "softplus", "elu"])
def test_dense_gradients_on_sequences(activation, rng):
    layer = Dense(4, activation=activation, bias_initializer="random_normal", dtype="float64")
    y = layer(rng.standard_normal((2, 3, 5)))
    assert y.shape == (2, 3, 4)
    check_layer_gradients(layer, rng.standard_normal((2, 3, 5)), rng)


def test_activation_masking_dropout_gradients(rng):
    x = rng.standard_normal((2, 3, 4))
    check_layer_gradients(Activation("tanh", dtype="float64"), x, rng)
    x[0, 2] = 0.0
    masking = Masking(0.0, dtype="float64")
    keep = np.array([[True, True, False], [True, True, True]])
    np.testing.assert_array_equal(masking.compute_mask(x), keep)
    np.testing.assert_array_equal(masking(x), x * keep[..., None])
    R = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(masking.backward(R), R * keep[..., None])


def test_embedding_gradient_and_mask(rng):
    layer = Embedding(5, 3, mask_zero=True, dtype="float64")
    ids = np.array([[1, 4, 4, 0], [2, 0, 0, 0]])
    out = layer(ids)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)
    R = rng.standard_normal(out.shape)
    assert layer.backward(R) is None
    assert_grads_close(layer.grads, central_differences(lambda: float(np.sum(R * layer(ids))),
                                                        layer.trainable_weights, entries=15))
    with pytest.raises(ValueError, match=r"x: ids must lie in \[0, input_dim=5\)"):
        layer(np.array([[5]]))
    with pytest.raises(TypeError, match="x: Embedding"):
        layer(np.array([["a"]]))


def test_dropout_is_inverted_and_only_in_training(rng):
    rnnkit.set_seed(3)
    layer = Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0} and abs((y == 0).mean() - 0.5) < 0.02
    np.testing.assert_array_equal(layer.backward(x), y)
    shared = Dropout(0.5, noise_shape=(None, 1, None))(np.ones((4, 6, 8)), training=True)
    assert (shared == shared[:, :1]).all()


@pytest.mark.parametrize("cell", [SimpleRNN, LSTM, GRU])
def test_recurrent_input_dropout_uses_one_mask_per_sequence(cell, rng):
    rnnkit.set_seed(0)
    layer = cell(4, dropout=0.5, return_sequences=True, dtype="float64")
    x = rng.standard_normal((5, 6, 8))
    y = layer(x, training=True)
    dx = layer.backward(np.ones_like(y))
    dropped = dx == 0
    assert dropped.any() and (dropped == dropped[:, :1]).all()  # the same features dropped at every step
    np.testing.assert_array_equal(layer(x), layer(x))  # inference: deterministic, no dropout
    rnnkit.set_seed(0)
    again = cell(4, dropout=0.5, return_sequences=True, dtype="float64")
    np.testing.assert_allclose(again(x, training=True), y, rtol=1e-12)  # set_seed repeats init and masks


def _supports_recurrent_mask():
    import inspect

    return "recurrent_mask" in inspect.signature(rnnkit.functional.lstm_forward).parameters


@pytest.mark.skipif(not _supports_recurrent_mask(), reason="the kernels' recurrent_mask has not landed yet")
@pytest.mark.parametrize("make", RECURRENT)
def test_recurrent_dropout_gradients_and_mask(make, rng):
    layer = make(recurrent_dropout=0.4, return_sequences=True)
    x = rng.standard_normal((3, 4, 2))
    layer(x)  # build first: initialisation draws from the generator too
    rnnkit.set_seed(5)
    out = layer(x, training=True)
    R = rng.standard_normal(out.shape)
    layer.backward(R)
    analytic = list(layer.grads)

    def loss():
        rnnkit.set_seed(5)  # the same mask every evaluation
        return float(np.sum(R * layer(x, training=True)))

    assert_grads_close(analytic, central_differences(loss, layer.trainable_weights, entries=12))
    assert not np.allclose(out, layer(x))  # training differs from inference


@pytest.mark.parametrize("cell", [SimpleRNN, LSTM, GRU])
def test_go_backwards_is_keras_reversed_processing(cell, rng):
    """Keras: process the sequence reversed and return the outputs in that (reversed) order."""
    x = rng.standard_normal((3, 4, 2))
    back = cell(3, return_sequences=True, go_backwards=True, dtype="float64")
    back(x)
    fwd = cell(3, return_sequences=True, dtype="float64")
    fwd(x)
    fwd.set_weights(back.get_weights())
    np.testing.assert_allclose(back(x), fwd(x[:, ::-1]), rtol=1e-12)
    # masked: the whole padded sequence reversed (Keras 3): zeros for the padding first, then the outputs of
    # the sequence's own steps from its last to its first
    lengths = MASK.sum(1)
    T = x.shape[1]
    for n, L in enumerate(lengths):
        np.testing.assert_array_equal(back(x, mask=MASK)[n, :T - L], 0.0)
        np.testing.assert_allclose(back(x, mask=MASK)[n, T - L:], fwd(x[n:n + 1, :L][:, ::-1])[0], rtol=1e-12)


@pytest.mark.parametrize("cell", [SimpleRNN, LSTM, GRU])
def test_padded_steps_repeat_the_last_valid_output(cell, rng):
    """Keras 3: at a padded step a one-way sequence output repeats the sequence's last valid output (zeros for an
    empty sequence); the gradient reaching a padded step goes to the step it repeats."""
    x = rng.standard_normal((3, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    layer = cell(3, return_sequences=True, dtype="float64")
    y = layer(x, mask=mask)
    np.testing.assert_array_equal(y[0, 2:], np.broadcast_to(y[0, 1], (2, 3)))
    np.testing.assert_array_equal(y[2], 0.0)
    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)
    R_moved = R.copy()
    R_moved[0, 1] += R[0, 2:].sum(axis=0)
    R_moved[0, 2:] = 0
    R_moved[2] = 0
    layer(x, mask=mask)
    np.testing.assert_allclose(layer.backward(R_moved), dx, rtol=1e-12)


@pytest.mark.parametrize("make", RECURRENT)
def test_masked_batch_equals_unpadded_sequences(make, rng):
    layer = make(return_sequences=False)
    x = rng.standard_normal((3, 4, 2))
    x_padded = np.where(MASK[..., None], x, 123.0)  # padding values must not matter
    out = layer(x_padded, mask=MASK)
    R = rng.standard_normal(out.shape)
    dx = layer.backward(R)
    grads = layer.grads
    total = [np.zeros_like(g) for g in grads]
    for n, L in enumerate(MASK.sum(1)):
        y_n = layer(x[n:n + 1, :L])
        np.testing.assert_allclose(out[n], y_n[0], rtol=1e-12)
        dx_n = layer.backward(R[n:n + 1])
        np.testing.assert_allclose(dx[n, :L], dx_n[0], rtol=1e-10, atol=1e-14)
        assert not dx[n, L:].any()
        total = [t + g for t, g in zip(total, layer.grads)]
    for g, t in zip(grads, total):
        np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-14)


def test_non_prefix_mask_is_rejected():
    with pytest.raises(ValueError, match="mask: sequence 1 is not right-padded"):
        mask_to_lengths(np.array([[1, 1, 0], [0, 1, 1]], dtype=bool))
    with pytest.raises(ValueError, match="right-padded"):
        LSTM(2)(np.ones((2, 3, 1)), mask=np.array([[1, 0, 1], [1, 1, 1]], dtype=bool))
    np.testing.assert_array_equal(mask_to_lengths(np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)), [2, 0])


def test_keras_initialisation():
    rnnkit.set_seed(0)
    C, H = 7, 5
    lstm = LSTM(H, dtype="float64")
    lstm(np.zeros((1, 2, C)))
    W_ih, W_hh, bias = lstm.weights  # one bias, as in Keras
    assert lstm.weight_names == ["W_ih", "W_hh", "bias"] and lstm.count_params() == 4 * H * (C + H + 1)
    assert W_ih.shape == (4 * H, C) and W_hh.shape == (4 * H, H) and bias.shape == (4 * H,)
    assert np.abs(W_ih).max() <= np.sqrt(6 / (C + 4 * H))  # glorot_uniform on the Keras kernel [C, 4H]
    np.testing.assert_allclose(W_hh.T @ W_hh, np.eye(H), atol=1e-12)  # orthogonal [H, 4H]: orthonormal rows
    np.testing.assert_array_equal(bias, np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])  # unit_forget_bias
    gru = GRU(H, bias_initializer="ones")
    gru(np.zeros((1, 2, C), np.float32))
    assert gru.weight_names == ["W_ih", "W_hh", "b_ih", "b_hh"]  # reset_after: Keras has a recurrent bias too
    np.testing.assert_array_equal(gru.weights[3], 1.0)
    assert GRU(H, reset_after=False)(np.zeros((1, 2, C), np.float32)) is not None
    torch_like = SimpleRNN(H, kernel_initializer="uniform_pytorch", recurrent_initializer="uniform_pytorch",
                           bias_initializer="uniform_pytorch")
    torch_like(np.zeros((1, 2, C), np.float32))
    for w in torch_like.weights:
        assert np.abs(w).max() <= 1 / np.sqrt(H) and w.std() > 0.1
    assert torch_like.weights[0].dtype == np.float32


def test_stateful_carries_state_until_reset(rng):
    x = rng.standard_normal((2, 6, 3))
    whole = LSTM(4, return_sequences=True, dtype="float64")
    expected = whole(x)
    stateful = LSTM(4, return_sequences=True, stateful=True, dtype="float64")
    stateful(x[:, :1])
    stateful.set_weights(whole.get_weights())
    stateful.reset_states()
    parts = np.concatenate([stateful(x[:, :3]), stateful(x[:, 3:])], axis=1)
    np.testing.assert_allclose(parts, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="reset_states"):
        stateful(x[:1])
    stateful.reset_states()
    np.testing.assert_allclose(stateful(x[:, :3]), expected[:, :3], rtol=1e-12)


def test_config_round_trip(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for layer in [LSTM(3, return_sequences=True, go_backwards=True, unit_forget_bias=False, input_shape=(3, 4)),
                  GRU(2, reset_after=False, dropout=0.1), SimpleRNN(2, activation="relu", use_bias=False),
                  Bidirectional(LSTM(2), merge_mode="ave"), Dense(3, activation="softmax"), Masking(1.5),
                  Dropout(0.2), Activation("relu")]:
        data = serialize(layer)
        copy = deserialize(data)
        assert type(copy) is type(layer) and serialize(copy) == data
        if layer.weights or not layer.built:
            layer(x)
            copy(x)
            copy.set_weights(layer.get_weights())
            np.testing.assert_array_equal(copy(x), layer(x))
    with pytest.raises(ValueError, match="unknown layer class 'Lambda'"):
        deserialize({"class_name": "Lambda", "config": {}})


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    with pytest.raises(ValueError, match="dropout"):
        GRU(2, dropout=1.0)
    with pytest.raises(ValueError, match="activation: expected one of"):
        SimpleRNN(2, activation="bogus")
    with pytest.raises(ValueError, match="recurrent_activation: expected one of"):
        LSTM(2, recurrent_activation="softmax")
    with pytest.raises(TypeError, match="SimpleRNN: unexpected keyword argument 'recurrent_activation'"):
        SimpleRNN(2, recurrent_activation="tanh")
    with pytest.raises(ValueError, match="kernel_initializer: unknown initializer"):
        LSTM(2, kernel_initializer="nope")
    with pytest.raises(ValueError, match="merge_mode"):
        Bidirectional(LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="dtype"):
        Dense(2, dtype="int32")
    layer = LSTM(2)
    layer(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"x: layer 'lstm\w*' was built for inputs of shape \(None, 2, 3\)"):
        layer(np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"initial_state: expected arrays of shape \[N, H\]"):
        layer(np.zeros((1, 2, 3), np.float32), initial_state=[np.zeros((1, 3)), np.zeros((1, 3))])


# ---- PyTorch ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layers_match_pytorch(cell, bidirectional, rng):
    torch = pytest.importorskip("torch")
    N, T, C, H = 3, 5, 4, 6
    x = rng.standard_normal((N, T, C))
    mine = {"RNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}[cell](H, return_sequences=True, dtype="float64")
    if bidirectional:
        mine = Bidirectional(mine)
    y = mine(x)
    ref = getattr(torch.nn, cell)(C, H, batch_first=True, bidirectional=bidirectional).double()
    two = cell == "GRU"  # reset_after: b_ih and b_hh as PyTorch; the others' one bias is PyTorch's b_ih, b_hh = 0
    torch_params = [p for i, p in enumerate(ref.parameters()) if two or i % 4 != 3]
    with torch.no_grad():
        for p, w in zip(torch_params, mine.weights):  # same order: W_ih, W_hh, b_ih[, b_hh] (then reverse)
            p.copy_(torch.from_numpy(w))
        for i, p in enumerate(ref.parameters()):
            if not two and i % 4 == 3:
                p.zero_()
    xt = torch.from_numpy(x).requires_grad_()
    yt = ref(xt)[0]
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    R = rng.standard_normal(y.shape)
    dx = mine.backward(R)
    (yt * torch.from_numpy(R)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert len(mine.grads) == len(torch_params)
    for g, p in zip(mine.grads, torch_params):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: LSTM(3, activaton="relu"), "LSTM: unexpected keyword argument 'activaton'; did you mean 'activation'"),
    (lambda: GRU(3, recurent_activation="sigmoid"), "GRU: unexpected keyword argument 'recurent_activation'; did "
                                                    "you mean 'recurrent_activation'"),
    (lambda: SimpleRNN(3, input_shap=(4, 2)), "SimpleRNN: unexpected keyword argument 'input_shap'; did you mean "
                                              "'input_shape'\\?"),
    (lambda: Bidirectional(LSTM(2), mergemode="sum"), "Bidirectional: unexpected keyword argument 'mergemode'; "
                                                      "did you mean 'merge_mode'\\?"),
    (lambda: Dense(2, units_=3), "Dense: unexpected keyword argument 'units_'"),
    (lambda: Embedding(4, 2, mask_zeros=True), "Embedding: unexpected keyword argument 'mask_zeros'"),
    (lambda: Dropout(0.1, seed=3), "Dropout: unexpected keyword argument 'seed'"),
], ids=["lstm", "gru", "simple_rnn", "bidirectional", "dense", "embedding", "dropout"])
def test_unknown_keyword_names_the_layer_class_called(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_layer_calls_reject_complex_and_text_and_check_the_mask_shape(rng):
    x = rng.standard_normal((2, 4, 3))
    for layer in (LSTM(2), Dense(2), Activation("tanh"), Dropout(0.5), Masking()):
        with pytest.raises(TypeError, match="x: expected a real-valued numeric array, got dtype complex128"):
            layer(x + 1j)
        with pytest.raises(TypeError, match="x: expected a real-valued numeric array"):
            layer(x.astype(str))
    with pytest.raises(TypeError, match="initial_state: expected a real-valued numeric array"):
        GRU(2)(x, initial_state=[np.zeros((2, 2), complex)])
    for mask in (np.ones((2, 5), bool), np.ones((2, 3), bool), np.ones((3, 4), bool)):
        with pytest.raises(ValueError, match=r"mask: expected shape \[N, T\] = \[2, 4\]"):
            SimpleRNN(2)(x, mask=mask)
    with pytest.raises(ValueError, match=r"mask: expected shape \[2, 4\]"):
        Masking()(x, mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"x: layer 'lstm\w*' expects inputs \[N, T, C\], got shape \(2, 3\)"):
        LSTM(2)(x[:, 0])


def test_values_beyond_float32_are_rejected_without_a_numpy_warning():
    model = rnnkit.Sequential([LSTM(2, input_shape=(None, 1))])
    x = np.ones((1, 3, 1))
    x[0, 1, 0] = 1e39
    with pytest.raises(ValueError, match=r"x: the value 1e\+39 at index \[0, 1, 0\] is beyond the range of float32"):
        model.predict(x)
    assert rnnkit.Sequential([LSTM(2, input_shape=(None, 1), dtype="float64")]).predict(x).shape == (1, 2)
    embedding = rnnkit.Sequential([Embedding(5, 2, input_shape=(None,))])
    with pytest.raises(ValueError, match=r"x: ids must lie in \[0, input_dim=5\)"):
        embedding.predict(np.array([[1.0, 1e20]]))


@pytest.mark.parametrize("cell", [SimpleRNN, LSTM, GRU])
def test_call_takes_the_initial_state_second_as_keras(cell, rng):
    """layer(sequences, initial_state, mask=None, training=None): a state passed positionally is the initial
    state (Keras' signature), not a mask."""
    x = rng.standard_normal((3, 4, 2))
    layer = cell(5, return_sequences=True, dtype="float64")
    states = [rng.standard_normal((3, 5)) for _ in range(2 if cell is LSTM else 1)]
    by_keyword = layer(x, initial_state=states)
    np.testing.assert_array_equal(layer(x, states), by_keyword)
    assert not np.array_equal(layer(x), by_keyword)
    np.testing.assert_array_equal(layer(x, None, MASK), layer(x, mask=MASK))


@pytest.mark.parametrize("make", [
    lambda: LSTM(4, use_peepholes=True, return_sequences=True, dtype="float64"),
    lambda: LSTM(4, use_peepholes=True, activation="softsign", recurrent_activation="hard_sigmoid", dtype="float64"),
    lambda: GRU(4, activation="elu", recurrent_activation="softplus", reset_after=False, dtype="float64"),
    lambda: SimpleRNN(4, activation="selu", return_sequences=True, go_backwards=True, dtype="float64"),
    lambda: Bidirectional(LSTM(3, use_peepholes=True, return_sequences=True, dtype="float64")),
    lambda: LSTM(5, proj_size=2, return_sequences=True, return_state=True, dtype="float64"),
    lambda: Bidirectional(LSTM(5, proj_size=3, use_peepholes=True, recurrent_activation="hard_sigmoid",
                               go_backwards=True, dtype="float64")),
    lambda: GRU(4, clip=0.7, return_sequences=True, dtype="float64"),
    lambda: LSTM(4, clip=0.5, use_peepholes=True, activation="relu", dtype="float64"),
], ids=["lstm_peepholes", "lstm_peepholes_softsign_hard_sigmoid", "gru_elu_softplus", "rnn_selu", "bidirectional",
        "lstm_proj_states", "bidirectional_proj_peepholes", "gru_clip", "lstm_clip_peepholes_relu"])
def test_layer_variants_gradients_and_saving(rng, make, tmp_path):
    """Activations and peepholes in the layers: every weight's gradient (the peepholes' included) against central
    differences, through a mask; the model saves and loads to the same outputs."""
    from helpers import check_model_gradients
    from rnnkit.engine.functional import flatten

    layer = make()
    inp = rnnkit.Input((5, 3), dtype="float64")
    model = rnnkit.Model(inp, layer(Masking(0.0, dtype="float64")(inp)))
    for w in model.trainable_weights:  # peepholes start at zero: give every weight a value
        w[...] = rng.uniform(-0.6, 0.6, w.shape)
    x = rng.standard_normal((4, 5, 3))
    x[1, 3:] = 0.0  # a padded sequence
    check_model_gradients(model, x, rng, entries=6)
    path = tmp_path / "m.keras"
    model.save(path)
    for a, b in zip(flatten(rnnkit.models.load_model(path).predict(x, verbose=0)), flatten(model.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell, name", [(SimpleRNN, "rnn"), (LSTM, "lstm"), (GRU, "gru")])
def test_layer_clip_is_the_kernels_clip(rng, cell, name):
    """clip=c in a layer runs the kernels with ONNX's clip (every gate's pre-activation in [-c, c]): the layer's
    output is the kernel's with clip, not the one without; the config keeps it, and only when set."""
    layer = cell(4, clip=0.3, return_sequences=True, dtype="float64")
    x = 3.0 * rng.standard_normal((2, 5, 3))
    y = layer(x)
    W_ih, W_hh, b_ih, b_hh = layer._kernel_weights()
    forward = getattr(rnnkit.functional, f"{name}_forward")
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    np.testing.assert_allclose(y, forward(xt, W_ih, W_hh, b_ih, b_hh, clip=0.3)[0].transpose(1, 0, 2), rtol=1e-12)
    assert not np.allclose(y, forward(xt, W_ih, W_hh, b_ih, b_hh)[0].transpose(1, 0, 2))
    assert layer.get_config()["clip"] == 0.3 and "clip" not in cell(4).get_config()
    assert type(layer).from_config(layer.get_config()).clip == 0.3
    with pytest.raises(ValueError, match="clip: expected a positive finite number or None"):
        cell(4, clip=0)


def test_lstm_proj_size_shapes_and_weights():
    layer = LSTM(8, proj_size=3, return_state=True)
    y, h, c = layer(np.zeros((2, 5, 4), np.float32))
    assert (y.shape, h.shape, c.shape) == ((2, 3), (2, 3), (2, 8))
    assert layer.weight_names == ["W_ih", "W_hh", "bias", "W_hr"]
    assert [w.shape for w in layer.weights] == [(32, 4), (32, 3), (32,), (3, 8)]
    assert layer.compute_output_shape((None, 5, 4)) == [(None, 3), (None, 3), (None, 8)]
    with pytest.raises(ValueError, match=r"initial_state: expected arrays of shape \[N, H\] = \[2, 3\]"):
        layer(np.zeros((2, 5, 4), np.float32), initial_state=[np.zeros((2, 8), np.float32)] * 2)
    with pytest.raises(ValueError, match="proj_size: expected a positive integer or None"):
        LSTM(4, proj_size=0)


def test_lstm_cell_with_proj_size_in_rnn_and_stacked(rng):
    """RNN(LSTMCell(H, proj_size=P)) is LSTM(H, proj_size=P) with the cell's weights; stacked, the next cell sees
    P features; states [P, H]."""
    cell = rnnkit.layers.LSTMCell(8, proj_size=3)
    assert (cell.state_size, cell.output_size) == ([3, 8], 3)
    rnn = rnnkit.layers.RNN(cell, return_sequences=True, return_state=True)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y, h, c = rnn(x)
    layer = LSTM(8, proj_size=3, return_sequences=True, return_state=True)
    layer.ensure_built((None, 5, 4))
    layer.set_weights(cell.get_weights())
    for a, b in zip((y, h, c), layer(x)):
        np.testing.assert_array_equal(a, b)
    stacked = rnnkit.layers.RNN([rnnkit.layers.LSTMCell(8, proj_size=3), rnnkit.layers.GRUCell(5)], return_state=True)
    assert [o.shape for o in stacked(x)] == [(2, 5), (2, 3), (2, 8), (2, 5)]
