"""Ten Keras 3 programs, written as a Keras user writes them, run with only their import lines naming rnnkit.

Eight are the shapes of well-known Keras RNN programs (functional Input -> LSTM -> Dense; seq2seq addition with
RepeatVector and TimeDistributed; character-level text generation; a bidirectional classifier on pad_sequences
output; weather-style forecasting with EarlyStopping and ModelCheckpoint(save_weights_only=True); an LSTM
autoencoder with an encoder sub-model; stateful step-by-step prediction; an encoder-decoder whose encoder states
become the decoder's initial_state), two come from the project's design documents (a subclassed model whose
call(inputs, states) returns outputs and states; a deep RNN of a user-written recurrent layer looped over time in a
subclassed model's call). Data and epochs are small: each program must run end to end and learn something a
baseline does not (each test says what).
"""

import numpy as np

import rnnkit as keras
from rnnkit import layers
from rnnkit.utils import pad_sequences

from helpers import load_example


def test_functional_input_lstm_dense():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 10, 3)).astype("float32")
    y = x[:, :, 0].mean(axis=1, keepdims=True)

    inputs = keras.Input(shape=(10, 3))
    x_ = layers.LSTM(16)(inputs)
    outputs = layers.Dense(1)(x_)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=15, validation_split=0.2, verbose=0)
    assert history.history["val_loss"][-1] < 0.5 * float(y.var())  # beats predicting the mean


def test_seq2seq_addition_with_repeat_vector_and_time_distributed():
    keras.utils.set_random_seed(0)
    chars = "0123456789+ "
    DIGITS, MAXLEN = 2, 5
    index = {c: i for i, c in enumerate(chars)}

    def encode(text, rows):
        x = np.zeros((rows, len(chars)), "float32")
        for i, c in enumerate(text):
            x[i, index[c]] = 1
        return x

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 10 ** DIGITS, 3000), rng.integers(0, 10 ** DIGITS, 3000)
    questions = [f"{p}+{q}".ljust(MAXLEN) for p, q in zip(a, b)]
    answers = [str(p + q).ljust(DIGITS + 1) for p, q in zip(a, b)]
    x = np.stack([encode(q, MAXLEN) for q in questions])
    y = np.stack([encode(t, DIGITS + 1) for t in answers])

    model = keras.Sequential()
    model.add(layers.Input((MAXLEN, len(chars))))
    model.add(layers.LSTM(64))
    model.add(layers.RepeatVector(DIGITS + 1))
    model.add(layers.LSTM(64, return_sequences=True))
    model.add(layers.TimeDistributed(layers.Dense(len(chars), activation="softmax")))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=10, validation_split=0.1, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.4  # a character guessed at random is right 1 time in 12


def test_character_level_text_generation():
    keras.utils.set_random_seed(0)
    text = "the quick brown fox jumps over the lazy dog. " * 40
    chars = sorted(set(text))
    char_indices = {c: i for i, c in enumerate(chars)}
    maxlen, step = 10, 1
    sentences = [text[i:i + maxlen] for i in range(0, len(text) - maxlen, step)]
    next_chars = [text[i + maxlen] for i in range(0, len(text) - maxlen, step)]
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype="bool")
    y = np.zeros((len(sentences), len(chars)), dtype="bool")
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1

    model = keras.Sequential([keras.Input(shape=(maxlen, len(chars))), layers.LSTM(64),
                              layers.Dense(len(chars), activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=0.01))
    history = model.fit(x, y, batch_size=64, epochs=10, verbose=0)
    assert history.history["loss"][-1] < 0.5 * np.log(len(chars))  # a uniform guess scores log(len(chars))

    def sample(preds, temperature=1.0):
        preds = np.log(np.asarray(preds).astype("float64") + 1e-12) / temperature
        preds = np.exp(preds) / np.sum(np.exp(preds))
        return np.argmax(np.random.default_rng(0).multinomial(1, preds, 1))

    generated, sentence = "", text[:maxlen]
    for _ in range(40):
        x_pred = np.zeros((1, maxlen, len(chars)))
        for t, char in enumerate(sentence):
            x_pred[0, t, char_indices[char]] = 1.0
        preds = model.predict(x_pred, verbose=0)[0]
        next_char = chars[sample(preds, 0.2)]
        sentence = sentence[1:] + next_char
        generated += next_char
    words = set(text.split())
    assert sum(w in words for w in generated.split()) >= 3, generated  # it writes the text's words


def test_bidirectional_classifier_on_pad_sequences():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    max_features, maxlen = 50, 20
    seqs = [list(rng.integers(1, max_features, rng.integers(3, 30))) for _ in range(600)]
    labels = np.array([int(s.count(7) + s.count(8) > 0) for s in seqs])  # does the text hold word 7 or 8?
    x = pad_sequences(seqs, maxlen=maxlen)  # padding="pre", truncating="pre"
    x_train, y_train, x_val, y_val = x[:500], labels[:500], x[500:], labels[500:]

    inputs = keras.Input(shape=(None,), dtype="int32")
    h = layers.Embedding(max_features, 16)(inputs)
    h = layers.Bidirectional(layers.LSTM(16, return_sequences=True))(h)
    h = layers.Bidirectional(layers.LSTM(16))(h)
    outputs = layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=12, validation_data=(x_val, y_val), verbose=0)
    majority = max(y_val.mean(), 1 - y_val.mean())
    assert model.evaluate(x_val, y_val, verbose=0)[1] > majority + 0.05


def test_weather_forecasting_with_early_stopping_and_weight_checkpoints(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    t = np.arange(3000)
    series = np.stack([np.sin(2 * np.pi * t / 48), np.cos(2 * np.pi * t / 200)], -1)
    series = (series + 0.05 * rng.standard_normal(series.shape)).astype("float32")
    past, future = 24, 6
    starts = np.arange(0, len(series) - past - future)
    x = np.stack([series[s:s + past] for s in starts])
    y = series[starts + past + future - 1, :1]
    x_train, y_train, x_val, y_val = x[:2000], y[:2000], x[2000:], y[2000:]

    inputs = keras.layers.Input(shape=(x.shape[1], x.shape[2]))
    lstm_out = keras.layers.LSTM(16)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003), loss="mse")
    path_checkpoint = str(tmp_path / "model_checkpoint.weights.h5")
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=2)
    modelckpt_callback = keras.callbacks.ModelCheckpoint(monitor="val_loss", filepath=path_checkpoint, verbose=0,
                                                         save_weights_only=True, save_best_only=True)
    history = model.fit(x_train, y_train, epochs=20, validation_data=(x_val, y_val),
                        callbacks=[es_callback, modelckpt_callback], verbose=0)
    best = min(history.history["val_loss"])
    model.load_weights(path_checkpoint)
    assert abs(model.evaluate(x_val, y_val, verbose=0) - best) < 1e-5
    persistence = float(np.mean((x_val[:, -1, :1] - y_val) ** 2))
    assert best < persistence


def test_lstm_autoencoder_with_an_encoder_sub_model():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    timesteps, input_dim, latent_dim = 8, 2, 8
    phase = rng.uniform(0, 2 * np.pi, (400, 1, 1))
    x = np.sin(np.arange(timesteps)[None, :, None] / 2.0 + phase + np.array([0.0, 1.0])).astype("float32")

    inputs = keras.Input(shape=(timesteps, input_dim))
    encoded = layers.LSTM(latent_dim)(inputs)
    decoded = layers.RepeatVector(timesteps)(encoded)
    decoded = layers.LSTM(input_dim, return_sequences=True)(decoded)
    sequence_autoencoder = keras.Model(inputs, decoded)
    encoder = keras.Model(inputs, encoded)
    sequence_autoencoder.compile(optimizer="adam", loss="mse")
    history = sequence_autoencoder.fit(x, x, epochs=40, batch_size=32, verbose=0)
    baseline = float(np.mean((x - x.mean(axis=0)) ** 2))  # every sequence decoded as the mean sequence
    assert history.history["loss"][-1] < 0.5 * baseline
    codes = encoder.predict(x, verbose=0)
    assert codes.shape == (400, latent_dim)
    np.testing.assert_array_equal(codes, encoder.predict(x, verbose=0))  # the trained encoder's weights


def test_stateful_step_by_step_prediction():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 30, 1)).astype("float32")
    y = np.cumsum(x, axis=1)  # a running sum: needs the state carried between calls

    model = keras.Sequential([keras.Input(batch_shape=(1, None, 1)), layers.LSTM(16, stateful=True),
                              layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    whole = keras.Sequential([keras.Input(shape=(None, 1)), layers.LSTM(16, return_sequences=True), layers.Dense(1)])
    whole.set_weights(model.get_weights())
    model.reset_states()
    steps = np.concatenate([model.predict(x[:, t:t + 1], verbose=0) for t in range(30)])
    np.testing.assert_allclose(steps[:, 0], whole.predict(x, verbose=0)[0, :, 0], rtol=1e-5, atol=1e-6)
    model.reset_states()
    assert not np.allclose(model.predict(x[:, :1], verbose=0), steps[-1])


def test_encoder_decoder_with_encoder_states_as_initial_state():
    keras.utils.set_random_seed(0)
    example = load_example("encoder_decoder")  # the program is examples/encoder_decoder.py
    result = example.run(samples=1500, epochs=6, latent_dim=32, length=4)
    assert result["digit_accuracy"] > 0.3  # chance: 0.1


def test_subclassed_model_whose_call_returns_outputs_and_states():
    keras.utils.set_random_seed(0)
    text = "hello world, hello rnnkit. " * 30
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    seq = 20
    starts = np.arange(0, len(ids) - seq - 1, 3)
    x = np.stack([ids[s:s + seq] for s in starts])
    y = np.stack([ids[s + 1:s + seq + 1] for s in starts])

    class RNN(keras.Model):
        def __init__(self, vocab_size, embedding_dim, rnn_units):
            super().__init__()
            self.embedding = layers.Embedding(vocab_size, embedding_dim)
            self.lstm = layers.LSTM(rnn_units, return_sequences=True, return_state=True)
            self.dense = layers.Dense(vocab_size)

        def call(self, inputs, states=None, return_state=False, training=False):
            x = self.embedding(inputs, training=training)
            x, h, c = self.lstm(x, initial_state=states, training=training)
            x = self.dense(x, training=training)
            if return_state:
                return x, [h, c]
            return x

    model = RNN(len(vocab), 8, 32)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.5 * np.log(len(vocab))  # a uniform guess scores log(len(vocab))

    states, token, out = None, np.array([[vocab.index("h")]]), "h"
    for _ in range(10):  # one character at a time, the states carried by the caller
        logits, states = model(token, states=states, return_state=True)
        token = np.array([[int(np.argmax(logits[0, -1]))]])
        out += vocab[token[0, 0]]
    assert "ello" in out


def test_deep_rnn_of_a_user_written_recurrent_layer():
    results = load_example("custom_cell_deep_rnn").run(samples=1000, epochs=8, units=(16, 16, 16))  # the program
    mse, _ = results["ReluRNN (Python loop, tape)"]
    assert mse < 0.5 * results["persistence baseline"][0]
