"""Pickling: every layer, optimizer (with its state), loss, metric and compiled, trained Sequential model survives
pickle.dumps / pickle.loads with bit-identical outputs, and training resumed from the copy follows the original
to the bit; a multiprocessing pool (spawn) maps model.predict over chunks like the serial call."""

import multiprocessing
import pickle

import numpy as np
import pytest

import rnnkit
from rnnkit import Sequential, layers, losses, metrics, optimizers
from rnnkit.layers import (GRU, LSTM, Activation, Bidirectional, Dense, Dropout, Embedding, Jordan, Masking,
                           SimpleRNN)


def round_trip(obj):
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def assert_same_arrays(a, b):
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v, strict=True)


def _list(out):
    return list(out) if isinstance(out, list) else [out]


# ---- layers ---------------------------------------------------------------------------------------------
def _sequences(rng, shape=(3, 5, 2), dtype="float32"):
    return rng.standard_normal(shape).astype(dtype)


MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)

# class name -> (make the layer, make its input from rng, call keywords)
LAYERS = {
    "SimpleRNN": (lambda: SimpleRNN(4, activation="relu", return_sequences=True, go_backwards=True),
                  _sequences, {"mask": MASK}),
    "LSTM": (lambda: LSTM(4, return_state=True, dropout=0.25, recurrent_dropout=0.25, unit_forget_bias=False),
             _sequences, {"mask": MASK, "training": True}),
    "GRU": (lambda: GRU(3, reset_after=False, use_bias=False, dtype="float64"),
            lambda rng: _sequences(rng, dtype="float64"), {}),
    "Bidirectional": (lambda: Bidirectional(LSTM(3, return_sequences=True), merge_mode="mul"), _sequences,
                      {"mask": MASK}),
    "Jordan": (lambda: Jordan(4, 2, activation="relu", output_activation="sigmoid", return_sequences=True),
               _sequences, {"mask": MASK}),
    "Dense": (lambda: Dense(3, activation="softmax", kernel_initializer="he_normal"), _sequences, {}),
    "Embedding": (lambda: Embedding(6, 3, mask_zero=True),
                  lambda rng: rng.integers(0, 6, size=(3, 5)), {}),
    "Masking": (lambda: Masking(0.5), _sequences, {}),
    "Dropout": (lambda: Dropout(0.5, noise_shape=(None, 1, None)), _sequences, {"training": True}),
    "Activation": (lambda: Activation("elu"), _sequences, {}),
}


# layers the tape differentiates: class name -> (make the layer, make its input from rng)
TAPE_LAYERS = {
    "RNN": (lambda: layers.RNN([layers.LSTMCell(3), layers.GRUCell(2)], return_sequences=True), _sequences),
    "SimpleRNNCell": (lambda: layers.SimpleRNNCell(3), lambda rng: [_sequences(rng, (3, 2)),
                                                                    [_sequences(rng, (3, 3))]]),
    "LSTMCell": (lambda: layers.LSTMCell(3), lambda rng: [_sequences(rng, (3, 2)),
                                                          [_sequences(rng, (3, 3)), _sequences(rng, (3, 3))]]),
    "GRUCell": (lambda: layers.GRUCell(3, reset_after=False), lambda rng: [_sequences(rng, (3, 2)),
                                                                           [_sequences(rng, (3, 3))]]),
    "StackedRNNCells": (lambda: layers.StackedRNNCells([layers.SimpleRNNCell(2), layers.GRUCell(3)]),
                        lambda rng: [_sequences(rng, (3, 2)), [_sequences(rng, (3, 2)), _sequences(rng, (3, 3))]]),
    "TimeDistributed": (lambda: layers.TimeDistributed(Dense(3, activation="tanh")), _sequences),
    "Concatenate": (lambda: layers.Concatenate(axis=1), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Add": (lambda: layers.Add(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Subtract": (lambda: layers.Subtract(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Multiply": (lambda: layers.Multiply(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Average": (lambda: layers.Average(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Maximum": (lambda: layers.Maximum(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Minimum": (lambda: layers.Minimum(), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Dot": (lambda: layers.Dot(axes=(2, 2)), lambda rng: [[_sequences(rng), _sequences(rng)]]),
    "Flatten": (lambda: layers.Flatten(), _sequences),
    "Reshape": (lambda: layers.Reshape((2, 5)), _sequences),
    "Permute": (lambda: layers.Permute((2, 1)), _sequences),
    "RepeatVector": (lambda: layers.RepeatVector(3), lambda rng: _sequences(rng, (3, 4))),
    "Identity": (lambda: layers.Identity(), _sequences),
    "Lambda": (lambda: layers.Lambda(rnnkit.ops.tanh), _sequences),
    "OpLayer": (lambda: layers.OpLayer(rnnkit.ops.sum, (rnnkit.Input(shape=(5, 2)),), {"axis": 1}),
                lambda rng: [[_sequences(rng)]]),
}


def test_every_exported_layer_class_has_a_pickle_case():
    exported = {name for name in layers.__all__
                if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), layers.Layer)}
    assert exported - {"Layer", "Recurrent"} == set(LAYERS) | set(TAPE_LAYERS)


def _tape_call(layer, data):
    """(outputs, gradients of sum(R * outputs) for every weight of the layer) of one recorded call."""
    from rnnkit.engine.functional import flatten, pack_like
    from rnnkit.engine.tape import Tensor, gradients, recording

    args = data if isinstance(data, list) else [data]
    with recording():
        tensors = pack_like(args, [Tensor(a) for a in flatten(args)])
        out = flatten(layer(*tensors))
    values = [o.value for o in out]
    R = [np.random.default_rng(7).standard_normal(v.shape).astype(v.dtype) for v in values]
    found, _ = gradients(out, R)
    return values, [found[id(w)][1] for w in layer.weights if id(w) in found]


@pytest.mark.parametrize("name", sorted(TAPE_LAYERS))
def test_tape_layer_round_trip_is_bit_identical(name, rng):
    make, data = TAPE_LAYERS[name]
    layer, x = make(), data(rng)
    out_a, grads_a = _tape_call(layer, x)
    copy = round_trip(layer)
    assert type(copy) is type(layer) and copy.name == layer.name
    assert_same_arrays(copy.weights, layer.weights)
    out_b, grads_b = _tape_call(copy, x)
    assert_same_arrays(out_b, out_a)
    assert_same_arrays(grads_b, grads_a)
    assert len(grads_a) == len(layer.trainable_weights)


def test_functional_model_round_trip(rng):
    inp = rnnkit.Input(shape=(None, 2))
    h = layers.Bidirectional(LSTM(3, return_sequences=True))(inp)
    model = rnnkit.Model(inp, Dense(1)(layers.RNN(layers.GRUCell(2))(h) + h[:, -1, :2]))
    model.compile("adam", "mse")
    x, y = _sequences(rng, (6, 5, 2)), _sequences(rng, (6, 1))
    model.fit(x, y, epochs=1, verbose=0)
    copy = round_trip(model)
    assert_same_arrays([copy.predict(x)], [model.predict(x)])
    model.fit(x, y, epochs=1, shuffle=False, verbose=0)
    copy.fit(x, y, epochs=1, shuffle=False, verbose=0)
    assert_same_arrays(copy.get_weights(), model.get_weights())


def _forward_backward(layer, x, rng_seed, call):
    """Output(s), input gradient and weight gradients of one training-style call, dropout drawn after
    set_seed(rng_seed)."""
    rnnkit.set_seed(rng_seed)
    out = _list(layer(x, **call))
    R = [np.random.default_rng(7).standard_normal(o.shape).astype(o.dtype) for o in out]
    dx = layer.backward(R if len(R) > 1 else R[0])
    return out, ([] if dx is None else [dx]) + list(layer.grads)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("when", ["built", "after_backward"])
def test_layer_round_trip_is_bit_identical(name, when, rng):
    make, data, call = LAYERS[name]
    layer = make()
    x = data(rng)
    layer(x, **call)
    if when == "after_backward":
        _forward_backward(layer, x, 3, call)
    copy = round_trip(layer)
    assert type(copy) is type(layer) and copy.name == layer.name and copy.built
    assert copy.get_config() == layer.get_config()
    assert copy.weight_names == layer.weight_names
    assert_same_arrays(copy.weights, layer.weights)
    assert all(not np.shares_memory(a, b) for a, b in zip(copy.weights, layer.weights))
    assert copy.grads == []  # the records of the last call are not pickled
    out_a, grads_a = _forward_backward(layer, x, 5, call)
    out_b, grads_b = _forward_backward(copy, x, 5, call)
    assert_same_arrays(out_b, out_a)
    assert_same_arrays(grads_b, grads_a)


def test_bidirectional_copy_shares_its_arrays_with_its_inner_layers(rng):
    layer = Bidirectional(GRU(3))
    layer(_sequences(rng))
    copy = round_trip(layer)
    f, b = copy.forward_layer, copy.backward_layer
    assert all(w is v for w, v in zip(copy.weights, f.weights + b.weights))
    copy.set_weights([np.zeros_like(w) for w in copy.weights])
    assert not any(np.any(w) for w in f.weights + b.weights)


def test_pickled_layer_keeps_no_forward_record(rng):
    layer = LSTM(8, return_sequences=True)
    layer(_sequences(rng, (4, 5, 3)))
    short = len(pickle.dumps(layer))
    layer(_sequences(rng, (4, 50, 3)))
    assert layer._context is not None
    assert len(pickle.dumps(layer)) == short  # the size does not grow with the last call's sequences
    copy = round_trip(layer)
    assert copy._context is None
    with pytest.raises(RuntimeError, match="backward"):
        copy.backward(np.zeros((4, 50, 8), np.float32))


def test_stateful_layer_carries_its_state_through_pickle(rng):
    layer = GRU(3, stateful=True)
    x = _sequences(rng)
    layer(x)
    copy = round_trip(layer)
    assert_same_arrays(copy.states, layer.states)
    assert_same_arrays([copy(x)], [layer(x)])


def test_unbuilt_layer_builds_like_the_original(rng):
    rnnkit.set_seed(2)
    original = LSTM(3, kernel_initializer="uniform_pytorch")
    copy = round_trip(original)
    assert not copy.built
    x = _sequences(rng)
    rnnkit.set_seed(4)
    a = original(x)
    rnnkit.set_seed(4)
    b = copy(x)
    assert_same_arrays([b], [a])


# ---- optimizers, losses, metrics -------------------------------------------------------------------------
OPTIMIZERS = [
    optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    optimizers.Adam(amsgrad=True, clipnorm=1.0),
    optimizers.AdamW(optimizers.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)),
    optimizers.RMSprop(momentum=0.5, centered=True, global_clipnorm=2.0),
    optimizers.Adagrad(optimizers.PiecewiseConstantDecay([1, 3], [0.1, 0.05, 0.01]), clipvalue=0.5),
    optimizers.SGD(optimizers.CosineDecay(0.1, decay_steps=5)),
    optimizers.SGD(optimizers.InverseTimeDecay(0.1, decay_steps=2, decay_rate=1.0, staircase=True)),
]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_optimizer_round_trip_keeps_state_and_next_steps(optimizer, rng):
    w = [rng.standard_normal((3, 2)), rng.standard_normal(4).astype(np.float32)]
    grads = [[rng.standard_normal(v.shape).astype(v.dtype) for v in w] for _ in range(5)]
    opt = round_trip(optimizer)  # a fresh copy each time: the parametrised objects are shared
    for g in grads[:2]:
        opt.apply_gradients(zip(g, w))
    copy, w_copy = round_trip(opt), [v.copy() for v in w]
    assert copy.get_config() == opt.get_config() and copy.learning_rate == opt.learning_rate
    state, state_copy = opt.get_state(), copy.get_state()
    assert sorted(state) == sorted(state_copy)
    assert_same_arrays([state_copy[k] for k in sorted(state)], [state[k] for k in sorted(state)])
    for g in grads[2:]:
        opt.apply_gradients(zip(g, w))
        copy.apply_gradients(zip(g, w_copy))
    assert copy.iterations == opt.iterations == 5
    assert_same_arrays(w_copy, w)


LOSSES = [losses.MeanSquaredError(), losses.MeanAbsoluteError(), losses.Huber(0.5),
          losses.BinaryCrossentropy(from_logits=True), losses.CategoricalCrossentropy(),
          losses.SparseCategoricalCrossentropy(from_logits=True)]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: type(loss).__name__)
def test_loss_round_trip(loss, rng):
    y_pred = rng.uniform(0.05, 0.95, (4, 3, 2))
    y_true = rng.integers(0, 2, (4, 3)) if loss.sparse else rng.uniform(0, 1, (4, 3, 2))
    copy = round_trip(loss)
    assert type(copy) is type(loss) and copy.get_config() == loss.get_config()
    value, grad = loss.value_and_grad(y_true, y_pred)
    value_copy, grad_copy = copy.value_and_grad(y_true, y_pred)
    assert value_copy == value
    assert_same_arrays([grad_copy], [grad])


@pytest.mark.parametrize("name, loss", [
    ("accuracy", "binary_crossentropy"), ("accuracy", losses.BinaryCrossentropy(from_logits=True)),
    ("accuracy", "sparse_categorical_crossentropy"), ("acc", "categorical_crossentropy"), ("accuracy", None),
    ("binary_accuracy", None), ("categorical_accuracy", None), ("sparse_categorical_accuracy", None),
    ("mae", None), ("mean_absolute_error", None), ("mse", None), ("mean_squared_error", None),
])
def test_metric_round_trip(name, loss, rng):
    metric = metrics.get(name, loss=loss)
    copy = round_trip(metric)
    assert copy.name == metric.name
    sparse = "sparse" in name or (isinstance(loss, str) and "sparse" in loss)
    y_pred = rng.uniform(0, 1, (6, 1 if "binary" in f"{loss} {name}".lower() else 3))
    y_true = (rng.integers(0, y_pred.shape[-1], 6) if sparse
              else (rng.uniform(0, 1, y_pred.shape) > 0.5).astype(float))
    mask = np.array([1, 1, 0, 1, 0, 1], dtype=bool)
    assert copy(y_true, y_pred, mask) == metric(y_true, y_pred, mask)


# ---- models ---------------------------------------------------------------------------------------------
def _ids(rng, N, T, vocab):
    ids = rng.integers(1, vocab, size=(N, T))
    ids[np.arange(T) >= rng.integers(1, T + 1, size=N)[:, None]] = 0  # right-padded with 0
    return ids


# name -> (layers, compile arguments, make (x, y) from rng)
MODELS = {
    "lstm_dropout_adam": (
        lambda: [LSTM(5, input_shape=(None, 3), dropout=0.2, recurrent_dropout=0.2), Dropout(0.3),
                 Dense(2, activation="tanh")],
        dict(optimizer="adam", loss="mse", metrics=["mae"]),
        lambda rng: (rng.standard_normal((24, 6, 3)).astype(np.float32),
                     rng.standard_normal((24, 2)).astype(np.float32))),
    "embedding_bidirectional_gru": (
        lambda: [Embedding(9, 4, mask_zero=True, input_shape=(7,)),
                 Bidirectional(GRU(3, return_sequences=True), merge_mode="ave"), Dense(3, activation="softmax")],
        dict(optimizer=optimizers.RMSprop(0.01, momentum=0.5, centered=True), loss="sparse_categorical_crossentropy",
             metrics=["accuracy"]),
        lambda rng: (_ids(rng, 20, 7, 9), rng.integers(0, 3, size=(20, 7)))),
    "masking_rnn_jordan_binary": (
        lambda: [Masking(0.0, input_shape=(6, 2), dtype="float64"),
                 SimpleRNN(4, return_sequences=True, go_backwards=True, dtype="float64"),
                 Jordan(3, 1, output_activation="sigmoid", dtype="float64")],
        dict(optimizer=optimizers.AdamW(optimizers.ExponentialDecay(0.02, 3, 0.7), clipnorm=1.0),
             loss="binary_crossentropy", metrics=["accuracy", "mse"]),
        lambda rng: (np.where(np.arange(6)[None, :, None] < rng.integers(1, 7, (18, 1, 1)),
                              rng.standard_normal((18, 6, 2)), 0.0),
                     rng.integers(0, 2, (18, 1)).astype(np.float64))),
    "stacked_lstm_sgd_sequences": (
        lambda: [Bidirectional(LSTM(4, return_sequences=True), input_shape=(5, 2)),
                 LSTM(3, return_sequences=True), Activation("tanh"), Dense(1)],
        dict(optimizer=optimizers.SGD(0.05, momentum=0.9), loss=losses.Huber(0.5), metrics=["mae"]),
        lambda rng: (rng.standard_normal((16, 5, 2)), rng.standard_normal((16, 5, 1)))),
}


def _trained(name, rng):
    make, compile_args, data = MODELS[name]
    rnnkit.set_seed(1)
    model = Sequential(make())
    model.compile(**compile_args)
    x, y = data(rng)
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)
    return model, x, y


@pytest.mark.parametrize("name", MODELS)
def test_trained_model_round_trip_predicts_bit_identically(name, rng):
    model, x, y = _trained(name, rng)
    copy = round_trip(model)
    assert copy.get_config() == model.get_config()
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    assert_same_arrays(copy.get_weights(), model.get_weights())
    assert copy.optimizer.get_config() == model.optimizer.get_config()
    assert copy.history.history == model.history.history
    assert_same_arrays([copy.predict(x, batch_size=7)], [model.predict(x, batch_size=7)])
    assert copy.evaluate(x, y, return_dict=True) == model.evaluate(x, y, return_dict=True)


@pytest.mark.parametrize("name", MODELS)
def test_training_resumed_from_a_pickle_follows_the_original(name, rng):
    model, x, y = _trained(name, rng)
    copy = round_trip(model)
    state = model.optimizer.get_state()
    state_copy = copy.optimizer.get_state()
    assert_same_arrays([state_copy[k] for k in sorted(state)], [state[k] for k in sorted(state)])
    histories = []
    for m in (model, copy):
        rnnkit.set_seed(9)  # the same shuffles and dropout masks
        histories.append(m.fit(x, y, epochs=2, batch_size=4, verbose=0).history)
    assert histories[1] == histories[0]
    assert copy.optimizer.iterations == model.optimizer.iterations
    assert_same_arrays(copy.get_weights(), model.get_weights())
    assert_same_arrays([copy.predict(x)], [model.predict(x)])


def test_unbuilt_and_uncompiled_models_round_trip(rng):
    model = Sequential([GRU(3), Dense(1)], name="later")
    copy = round_trip(model)
    assert copy.name == "later" and not copy.built and not copy.compiled
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    rnnkit.set_seed(3)
    a = model.predict(x)
    rnnkit.set_seed(3)
    b = copy.predict(x)
    assert_same_arrays([b], [a])


def test_stateful_model_round_trip_keeps_the_carried_state(rng):
    model = Sequential([LSTM(3, stateful=True, input_shape=(4, 2)), Dense(1)])
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    model.predict(x)
    copy = round_trip(model)
    assert_same_arrays(copy.layers[0].states, model.layers[0].states)
    assert_same_arrays([copy.predict(x)], [model.predict(x)])


def test_pool_of_spawned_processes_predicts_like_the_serial_call(rng):
    model, x, _ = _trained("embedding_bidirectional_gru", rng)
    chunks = np.array_split(x, 4)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(model.predict, chunks)  # the bound method pickles the model into each task
    assert_same_arrays(parts, [model.predict(chunk) for chunk in chunks])
    # the whole batch at once: the same values up to float32 rounding (the products are blocked by batch size)
    np.testing.assert_allclose(np.concatenate(parts), model.predict(x), rtol=1e-5, atol=1e-6)
