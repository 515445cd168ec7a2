"""rnnkit.models.Sequential: whole-model gradients, PyTorch trajectories, the Keras program, masks, fit options,
truncated BPTT and bad input."""

import io
import math

import numpy as np
import pytest
from helpers import central_differences

import rnnkit
from rnnkit import Sequential, losses
from rnnkit.callbacks import Callback, EarlyStopping
from rnnkit.layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, Masking, SimpleRNN



def loss_and_grads(model, x, y):
    """The model's loss on (x, y) in inference mode and its gradient for every trainable weight."""
    y_pred, mask = model._forward(model._check_x(x), training=False)
    logs, grad = model._loss_and_metrics(model._check_y(y, x), y_pred, mask)
    model._backward(grad)
    return logs["loss"], [g.copy() for layer in model.layers for g in layer.grads]


def padded_ids(rng, lengths, T, vocab):
    ids = rng.integers(1, vocab, size=(len(lengths), T))
    ids[np.arange(T) >= np.asarray(lengths)[:, None]] = 0
    return ids


MODELS = {
    "stacked": lambda: [LSTM(4, return_sequences=True, input_shape=(5, 3), dtype="float64"),
                        GRU(3, return_sequences=True, dtype="float64"), SimpleRNN(3, dtype="float64"),
                        Dense(2, activation="tanh", dtype="float64")],
    "bidirectional": lambda: [Bidirectional(LSTM(3, return_sequences=True, dtype="float64"), input_shape=(5, 3)),
                              Bidirectional(GRU(2, dtype="float64"), merge_mode="sum"), Dense(2, dtype="float64")],
    "masked_embedding": lambda: [Embedding(7, 3, mask_zero=True, dtype="float64", input_shape=(5,)),
                                 Bidirectional(GRU(3, return_sequences=True, dtype="float64")),
                                 Dense(4, activation="softmax", dtype="float64")],
    "masking": lambda: [Masking(0.0, input_shape=(5, 3), dtype="float64"),
                        LSTM(4, return_sequences=True, go_backwards=True, dtype="float64"),
                        Dense(2, dtype="float64")],
}


@pytest.mark.parametrize("name", MODELS)
def test_model_gradients_match_finite_differences(name, rng):
    model = Sequential(MODELS[name]())
    N = 3
    if name == "masked_embedding":
        model.compile("sgd", "sparse_categorical_crossentropy")
        x, y = padded_ids(rng, [5, 3, 1], 5, 7), rng.integers(0, 4, size=(N, 5))
    else:
        model.compile("sgd", "mse")
        x = rng.standard_normal((N, 5, 3))
        if name == "masking":
            x[1, 3:] = x[2, 2:] = 0.0
        y = rng.standard_normal((N, *model._output_shape()[1:]))
    _, analytic = loss_and_grads(model, x, y)
    numeric = central_differences(lambda: loss_and_grads(model, x, y)[0], model.trainable_weights, entries=5)
    for a, n in zip(analytic, numeric):
        probed = ~np.isnan(n)
        np.testing.assert_allclose(a[probed], n[probed], rtol=1e-6, atol=1e-9)


def test_masked_batch_trains_as_unpadded_sequences(rng):
    """Many-to-one: the padded batch's loss and gradients are the mean over each sequence run alone."""
    lengths, T = [6, 4, 2], 6
    model = Sequential([Embedding(9, 3, mask_zero=True, input_shape=(T,), dtype="float64"),
                        LSTM(4, return_sequences=True, dtype="float64"), GRU(3, dtype="float64"),
                        Dense(2, dtype="float64")])
    model.compile("adam", "mse")
    ids, y = padded_ids(rng, lengths, T, 9), rng.standard_normal((3, 2))
    loss, grads = loss_and_grads(model, ids, y)
    alone = [loss_and_grads(model, ids[n:n + 1, :L], y[n:n + 1]) for n, L in enumerate(lengths)]
    np.testing.assert_allclose(loss, np.mean([a[0] for a in alone]), rtol=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, np.mean([a[1][i] for a in alone], axis=0), rtol=1e-9, atol=1e-14)


def test_masked_sequence_loss_excludes_padding(rng):
    """Many-to-many with Masking: the loss is the mean over real steps only (weights: the lengths)."""
    lengths, T = np.array([5, 2]), 5
    model = Sequential([Masking(input_shape=(T, 2), dtype="float64"), GRU(3, return_sequences=True, dtype="float64"),
                        Dense(1, dtype="float64")])
    model.compile("sgd", "mse")
    x = rng.standard_normal((2, T, 2)) * (np.arange(T) < lengths[:, None])[..., None]
    y = rng.standard_normal((2, T, 1))
    loss, grads = loss_and_grads(model, x, y)
    alone = [loss_and_grads(model, x[n:n + 1, :L], y[n:n + 1, :L]) for n, L in enumerate(lengths)]
    w = lengths / lengths.sum()
    np.testing.assert_allclose(loss, sum(wi * a[0] for wi, a in zip(w, alone)), rtol=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, sum(wi * a[1][i] for wi, a in zip(w, alone)), rtol=1e-9, atol=1e-14)
    y_garbage = y.copy()
    y_garbage[1, 2:] = 1e3  # targets at padded steps do not count
    assert loss_and_grads(model, x, y_garbage)[0] == pytest.approx(loss, rel=1e-12)


def test_keras_program_runs_and_learns(rng):
    rnnkit.set_seed(0)
    timesteps, input_dim = 8, 2
    X_train = rng.standard_normal((64, timesteps, input_dim)).astype(np.float32)
    y_train = X_train[:, :, :1].mean(axis=1)
    X_test = X_train[:5]
    model = Sequential()
    model.add(LSTM(50, return_sequences=True, input_shape=(timesteps, input_dim)))
    model.add(LSTM(50, return_sequences=True))
    model.add(LSTM(50))
    model.add(Dense(1))
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(X_train, y_train, epochs=8, batch_size=32, verbose=0)
    y = model.predict(X_test)
    assert y.shape == (5, 1) and y.dtype == np.float32
    loss = history.history["loss"]
    assert len(loss) == 8 and loss[-1] < 0.5 * loss[0]
    assert model is not None and model.history is history


# ---- PyTorch -------------------------------------------------------------------------------------------
class _TorchStack:
    """torch equivalent of Sequential([LSTM(5, return_sequences=True), GRU(4), Dense(2)])."""

    def __init__(self, torch, model):
        self.torch = torch
        self.lstm = torch.nn.LSTM(3, 5, batch_first=True).double()
        self.gru = torch.nn.GRU(5, 4, batch_first=True).double()
        self.dense = torch.nn.Linear(4, 2).double()
        # the LSTM layer has one bias, as Keras: PyTorch's b_ih, with b_hh held at zero
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.lstm.bias_hh_l0.data.zero_()
        self.params = [*(p for p in self.lstm.parameters() if p.requires_grad), *self.gru.parameters(),
                       self.dense.weight, self.dense.bias]
        with torch.no_grad():
            for p, w in zip(self.params, model.get_weights()):
                p.copy_(torch.from_numpy(w.T if p is self.dense.weight else w))  # Dense kernel is [C, units]

    def loss(self, x, y):
        h = self.gru(self.lstm(self.torch.from_numpy(x))[0])[0][:, -1]
        return self.torch.nn.functional.mse_loss(self.dense(h), self.torch.from_numpy(y))

    def weights(self):
        return [(p.detach().numpy().T if p is self.dense.weight else p.detach().numpy()) for p in self.params]


def _stack_model():
    model = Sequential([LSTM(5, return_sequences=True, input_shape=(6, 3), dtype="float64"),
                        GRU(4, dtype="float64"), Dense(2, dtype="float64")])
    return model


def test_model_loss_and_gradients_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    model = _stack_model()
    model.compile("sgd", "mse")
    ref = _TorchStack(torch, model)
    x, y = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 2))
    loss, grads = loss_and_grads(model, x, y)
    t_loss = ref.loss(x, y)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for g, p in zip(grads, ref.params):
        np.testing.assert_allclose(g, (p.grad.T if p is ref.dense.weight else p.grad).numpy(), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_five_training_steps_follow_pytorch(optimizer, rng):
    torch = pytest.importorskip("torch")
    model = _stack_model()
    if optimizer == "sgd":
        mine, theirs = rnnkit.optimizers.SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    else:  # Keras adds epsilon to sqrt(v) before bias correction, PyTorch after: a tiny eps makes them agree
        mine = rnnkit.optimizers.Adam(0.01, epsilon=1e-12)
        theirs = lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-12)  # noqa: E731
    model.compile(mine, "mse")
    ref = _TorchStack(torch, model)
    t_opt = theirs(ref.params)
    x, y = rng.standard_normal((8, 6, 3)), rng.standard_normal((8, 2))
    for _ in range(5):
        loss = model.train_on_batch(x, y)
        t_opt.zero_grad()
        t_loss = ref.loss(x, y)
        t_loss.backward()
        t_opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-5)
        for w, t in zip(model.get_weights(), ref.weights()):
            np.testing.assert_allclose(w, t, rtol=1e-5, atol=1e-7)


# ---- fit, evaluate, predict ------------------------------------------------------------------------------
def _small_model(**lstm):
    return Sequential([LSTM(4, input_shape=(None, 2), **lstm), Dropout(0.2), Dense(1)])


def test_fit_options_history_and_callbacks(rng):
    x, y = rng.standard_normal((40, 5, 2)).astype(np.float32), rng.standard_normal((40, 1)).astype(np.float32)
    model = _small_model()
    model.compile("adam", "mse", metrics=["mae"])
    seen = []

    class Recorder(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, callbacks=[Recorder()], verbose=0)
    assert sorted(history.history) == ["loss", "mae", "val_loss", "val_mae"] and history.epoch == [0, 1, 2]
    assert seen == [(e, ["loss", "mae", "val_loss", "val_mae"]) for e in range(3)]
    history = model.fit(x, y, epochs=50, validation_data=(x[:8], y[:8]), verbose=0,
                        callbacks=[EarlyStopping(monitor="loss", patience=0, min_delta=10.0)])
    assert len(history.epoch) == 2  # patience=0: stops at the first epoch that does not improve by 10
    loss, mae = model.evaluate(x, y, batch_size=7)
    assert model.evaluate(x, y, return_dict=True) == pytest.approx({"loss": loss, "mae": mae}, rel=1e-5)
    np.testing.assert_allclose(model.predict(x, batch_size=3), model.predict(x, batch_size=40), rtol=1e-5, atol=1e-7)
    assert isinstance(model.train_on_batch(x[:4], y[:4]), list)


@pytest.mark.parametrize("wrap", [False, True], ids=["lstm", "bidirectional"])
def test_predict_and_evaluate_keep_no_cache(wrap, rng):
    # predict / evaluate run the recurrent kernels without a cache (nothing is kept for a backward pass),
    # with the same outputs as a forward call that keeps one
    x = rng.standard_normal((6, 7, 2)).astype(np.float32)
    lstm = LSTM(5, return_sequences=True)
    model = Sequential([Bidirectional(lstm) if wrap else lstm, Dense(1)])
    model.build((None, 7, 2))
    model.compile("sgd", "mse")
    kept = model(x)
    recurrent = model.layers[0].forward_layer if wrap else model.layers[0]
    assert recurrent._context is not None
    np.testing.assert_allclose(model.predict(x), kept, rtol=1e-5, atol=1e-6)
    assert recurrent._context is None
    model.evaluate(x, np.zeros((6, 7, 1), np.float32))
    assert recurrent._context is None
    with pytest.raises(RuntimeError, match="backward"):
        recurrent.backward(np.zeros((6, 7, 5), np.float32))
    model.train_on_batch(x, np.zeros((6, 7, 1), np.float32))  # training keeps its cache again
    assert recurrent._context is not None


def test_fit_progress_output(rng, capsys):
    model = _small_model()
    model.compile("sgd", "mse")
    model.fit(rng.standard_normal((8, 3, 2)), rng.standard_normal((8, 1)), epochs=2, batch_size=4, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss:" in out


def test_set_seed_makes_training_repeatable(rng):
    x, y = rng.standard_normal((20, 4, 2)), rng.standard_normal((20, 1))
    runs = []
    for _ in range(2):
        rnnkit.set_seed(11)
        model = _small_model(dropout=0.3, recurrent_dropout=0.3)
        model.compile("adam", "mse")
        model.fit(x, y, epochs=2, batch_size=6, shuffle=True, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_truncated_bptt_carries_state_and_cuts_gradient(rng):
    x, y = rng.standard_normal((4, 9, 2)), rng.standard_normal((4, 9, 1))

    def make():
        rnnkit.set_seed(2)
        m = Sequential([LSTM(3, return_sequences=True, stateful=True, input_shape=(None, 2), dtype="float64"),
                        Dense(1, dtype="float64")])
        m.compile(rnnkit.optimizers.SGD(0.1), "mse")
        return m

    model = make()
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, tbptt_steps=4, verbose=0)
    manual = make()
    for start in (0, 4, 8):  # windows of 4, 4, 1 steps: state carried, each one optimizer step
        manual.train_on_batch(x[:, start:start + 4], y[:, start:start + 4])
    for a, b in zip(model.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)
    reset = make()
    for start in (0, 4, 8):
        reset.reset_states()
        reset.train_on_batch(x[:, start:start + 4], y[:, start:start + 4])
    assert not np.allclose(reset.get_weights()[0], model.get_weights()[0])  # the carried state mattered
    with pytest.raises(ValueError, match="tbptt_steps: .* stateful=True"):
        stateless = _small_model()
        stateless.compile("sgd", "mse")
        stateless.fit(x, y[:, 0], tbptt_steps=3, verbose=0)


def test_structure_summary_and_weights(rng):
    model = Sequential([Bidirectional(LSTM(3, return_sequences=True), input_shape=(4, 2)), GRU(2), Dense(1)])
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 4, 6)" in text and f"Total params: {model.count_params():,}" in text
    assert model.count_params() == 2 * (4 * 3 * (2 + 3) + 4 * 3) + (3 * 2 * (6 + 2) + 12) + 3  # as Keras counts
    weights = [w + 1 for w in model.get_weights()]
    model.set_weights(weights)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weights: the model has"):
        model.set_weights(weights[:-1])


# ---- bad input -----------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(rng):
    model = Sequential([LSTM(3, input_shape=(5, 2)), Dense(1)])
    x, y = rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 1))
    with pytest.raises(RuntimeError, match="fit: compile the model first"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="optimizer: unknown optimizer 'adamm'"):
        model.compile("adamm", "mse")
    with pytest.raises(ValueError, match="loss: unknown loss 'msee'"):
        model.compile("adam", "msee")
    with pytest.raises(ValueError, match="loss: compile"):
        model.compile("adam")
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"x: the model takes inputs of shape \(None, 5, 2\)"):
        model.fit(rng.standard_normal((4, 5, 3)), y)
    with pytest.raises(ValueError, match="x: the model takes inputs"):
        model.predict(rng.standard_normal((4, 2)))
    with pytest.raises(TypeError, match="x: expected a real-valued numeric array"):
        model.predict(np.full((4, 5, 2), "a"))
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"x: contains NaN or inf \(first at index \[1, 2, 0\]\)"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="y: contains NaN or inf"):
        model.fit(x, np.full((4, 1), np.inf))
    with pytest.raises(ValueError, match=r"y: expected targets of shape \(4, 1\)"):
        model.fit(x, rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="y: expected 4 samples"):
        model.fit(x, y[:3])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5)
    with pytest.raises(ValueError, match="not right-padded"):
        masked = Sequential([Masking(input_shape=(3, 1)), LSTM(2)])
        masked.predict(np.array([[[1.0], [0.0], [1.0]]]))
    with pytest.raises(ValueError, match="summary: the model is not built"):
        Sequential([LSTM(2)]).summary()
    with pytest.raises(ValueError, match="x: the model has no layers"):
        Sequential().predict(x)
    with pytest.raises(ValueError, match="return_state"):
        Sequential([LSTM(2, return_state=True)])
    with pytest.raises(ValueError, match="already has a layer named"):
        Sequential([Dense(2, name="d"), Dense(2, name="d")])
    with pytest.raises(TypeError, match="layer: expected an rnnkit.layers.Layer"):
        Sequential().add("lstm")


def test_unbuilt_model_builds_from_data(rng):
    model = Sequential([GRU(2), Dense(1)])
    out = model.predict(rng.standard_normal((3, 4, 5)))
    assert out.shape == (3, 1) and model.build_input_shape == (None, 4, 5)
    buf = io.StringIO()
    model.summary(print_fn=lambda s: buf.write(s + "\n"))
    assert "gru" in buf.getvalue()


def test_a_shape_the_layers_do_not_take_leaves_the_model_unbuilt(rng):
    model = Sequential([LSTM(3), Dense(1)])
    with pytest.raises(ValueError, match=r"x: layer 'lstm\w*' expects inputs \[N, T, C\]"):
        model.predict(rng.standard_normal((4, 5)))
    assert not model.built and not model.layers[0].built and not model.layers[0].weights
    assert model.predict(rng.standard_normal((4, 5, 2))).shape == (4, 1)  # builds for the right shape after all
    dense = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(ValueError, match=r"x: layer 'gru\w*' expects inputs \[N, T, C\], got shape \(None, 3\)"):
        dense.add(GRU(2))
    assert len(dense.layers) == 1
    with pytest.raises(ValueError, match="expects inputs"):
        Sequential([Bidirectional(LSTM(2), input_shape=(4,))])


# ---- empty batches ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, x, expected", [
    (lambda: [LSTM(4, return_sequences=True, input_shape=(None, 3)), Dense(2)], np.zeros((0, 6, 3)), (0, 6, 2)),
    (lambda: [GRU(4, return_sequences=True)], np.zeros((0, 5, 3)), (0, 5, 4)),
    (lambda: [Embedding(5, 3, mask_zero=True, input_shape=(None,)), Bidirectional(SimpleRNN(2, return_sequences=True))],
     np.zeros((0, 7), np.int64), (0, 7, 4)),
    (lambda: [LSTM(4, input_shape=(None, 3)), Dense(2)], np.zeros((0, 6, 3)), (0, 2)),
], ids=["sequence_output", "unbuilt", "embedding", "last_step"])
def test_predict_on_an_empty_batch_returns_an_empty_array_of_the_output_shape(make, x, expected):
    model = Sequential(make())
    out = model.predict(x)
    assert out.shape == expected and out.dtype == np.float32


def test_evaluate_and_fit_on_an_empty_batch_raise(rng):
    model = Sequential([LSTM(2, return_sequences=True, input_shape=(None, 3))])
    model.compile("sgd", "mse")
    x, y = np.zeros((0, 4, 3)), np.zeros((0, 4, 2))
    with pytest.raises(ValueError, match=r"x: evaluate needs at least one sample, got an empty batch of shape "
                                         r"\(0, 4, 3\)"):
        model.evaluate(x, y)
    with pytest.raises(ValueError, match="x: fit needs at least one sample"):
        model.fit(x, y)
    xs, ys = rng.standard_normal((3, 4, 3)), rng.standard_normal((3, 4, 2))
    with pytest.raises(ValueError, match="validation_data\\[0\\]: fit needs at least one sample"):
        model.fit(xs, ys, validation_data=(x, y))


def test_fit_arguments_of_the_wrong_kind_are_named(rng):
    model = _small_model()
    model.compile("sgd", "mse")
    x, y = rng.standard_normal((6, 3, 2)), rng.standard_normal((6, 1))
    for split in ("0.5", [0.5]):
        with pytest.raises(TypeError, match="validation_split: expected a fraction in \\[0, 1\\)"):
            model.fit(x, y, validation_split=split, verbose=0)
    for split in (float("nan"), 1.0, -0.25, True):
        with pytest.raises(ValueError, match="validation_split: expected a fraction in \\[0, 1\\)"):
            model.fit(x, y, validation_split=split, verbose=0)
    for initial_epoch in (-1, 0.5, None):
        with pytest.raises(ValueError, match="initial_epoch: expected an integer >= 0"):
            model.fit(x, y, initial_epoch=initial_epoch, verbose=0)
    history = model.fit(x, y, epochs=3, initial_epoch=1, validation_split=np.float32(0.5), verbose=0)
    assert history.epoch == [1, 2] and "val_loss" in history.history


# ---- a loss or gradient that is not finite stops fit -----------------------------------------------------
class _PoisonedMSE(losses.MeanSquaredError):
    """mse whose value (target 7) or gradient (target 8) is NaN, or whose gradient is finite but so large that its
    square overflows float32 (target 9), for a batch holding a sample with that target."""

    def value_and_grad(self, y_true, y_pred, sample_mask=None):
        value, grad = super().value_and_grad(y_true, y_pred, sample_mask)
        if np.any(np.asarray(y_true) == 7.0):
            value = float("nan")
        if np.any(np.asarray(y_true) == 8.0):
            grad = np.full_like(grad, np.nan)
        if np.any(np.asarray(y_true) == 9.0):
            grad = np.full_like(grad, 1e30)
        return value, grad


class _WeightRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.after = []

    def on_batch_end(self, batch, logs=None):
        self.after.append(self.model.get_weights())


@pytest.mark.parametrize("poison, message", [
    (7.0, "Batch 2: Invalid loss, terminating training"),
    (8.0, "Batch 2: Invalid gradient (NaN or inf) with a finite loss, terminating training"),
    (9.0, "Batch 2: Invalid update (it would make a weight or the optimizer state NaN or inf), terminating training"),
], ids=["loss", "gradient", "update"])
@pytest.mark.parametrize("user_callback", [False, True], ids=["default", "with_TerminateOnNaN"])
def test_fit_stops_on_a_nan_loss_and_keeps_the_weights_before_it(poison, message, user_callback, rng, capsys):
    x, y = rng.standard_normal((12, 3, 2)), rng.standard_normal((12, 1))
    y[9, 0] = poison  # in the third batch of four
    model = _small_model()
    model.compile("adam", _PoisonedMSE())
    recorder = _WeightRecorder()
    callbacks = [recorder] + ([rnnkit.callbacks.TerminateOnNaN()] if user_callback else [])
    history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=callbacks,
                        validation_data=(x[:4], y[:4]))
    assert capsys.readouterr().out.splitlines() == [message]  # printed once, whatever verbose is
    assert model.stop_training and history.epoch == [0] and len(recorder.after) == 3
    assert model.optimizer.iterations == 2  # the third batch's step was not applied
    for before, after in zip(recorder.after[1], model.get_weights()):
        np.testing.assert_array_equal(after, before)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    loss = history.history["loss"][0]
    assert math.isnan(loss) if poison == 7.0 else math.isfinite(loss)
    assert math.isfinite(history.history["val_loss"][0])


def test_an_optimizer_step_that_would_overflow_is_undone_with_keep_finite(rng):
    w = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]
    opt = rnnkit.optimizers.Adam()
    assert opt.apply_gradients([(np.ones_like(v), v) for v in w], keep_finite=True)
    before, state = [v.copy() for v in w], opt.get_state()
    assert not opt.apply_gradients([(np.full_like(v, 1e30), v) for v in w], keep_finite=True)  # g**2: inf
    assert opt.iterations == 1
    for v, old in zip(w, before):
        np.testing.assert_array_equal(v, old)
    for key, value in opt.get_state().items():
        np.testing.assert_array_equal(value, state[key])
    with np.errstate(over="ignore"):
        assert opt.apply_gradients([(np.full_like(v, 1e30), v) for v in w])  # without it the step is taken
    assert not np.isfinite(opt.get_state()["0/velocity"]).all() and opt.iterations == 2


def test_train_on_batch_still_applies_every_step(rng):
    model = _small_model()
    model.compile("sgd", _PoisonedMSE())
    x, y = rng.standard_normal((2, 3, 2)), np.full((2, 1), 7.0)
    assert math.isnan(model.train_on_batch(x, y)) and model.optimizer.iterations == 1
