"""rnnkit.saving: the safetensors model file — exact round trips, exact resumption, damaged and foreign files."""

import json
import os

import numpy as np
import pytest

import rnnkit
from rnnkit import Sequential, load_model
from rnnkit.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN
from rnnkit.saving import read_safetensors, write_safetensors



def _trained(rng, dtype="float32"):
    rnnkit.set_seed(4)
    model = Sequential([Embedding(10, 4, mask_zero=True, input_shape=(6,), dtype=dtype, name="embedding"),
                        Bidirectional(LSTM(5, return_sequences=True, dtype=dtype), merge_mode="ave", name="bi"),
                        GRU(3, return_sequences=True, reset_after=False, dtype=dtype),
                        SimpleRNN(3, activation="relu", go_backwards=True, dtype=dtype),
                        Dense(3, activation="softmax", dtype=dtype, name="dense")])
    model.compile(rnnkit.optimizers.Adam(0.01, clipnorm=1.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = rng.integers(1, 10, size=(12, 6))
    x[::2, 4:] = 0
    y = rng.integers(0, 3, size=12)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    return model, x, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_identical(dtype, rng, tmp_path):
    model, x, y = _trained(rng, dtype)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert not load_model(path, compile=False).compiled


def test_resumed_training_is_exact(rng, tmp_path):
    model, x, y = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    resumed = load_model(path)
    for m in (model, resumed):
        m.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert resumed.optimizer.iterations == model.optimizer.iterations == 12
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_file_is_plain_safetensors(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    assert meta["format"] == "rnnkit.model" and json.loads(meta["architecture"])["class_name"] == "Sequential"
    assert "bi/forward/W_ih" in header and "optimizer/iterations" in header
    end = max(info["data_offsets"][1] for info in header.values())
    assert 8 + n + end == len(blob)
    W = header["embedding/embeddings"]
    assert W["dtype"] == "F32" and W["shape"] == [10, 4]
    assert b"pickle" not in blob and b"\x80\x04" not in blob[:8 + n]


def test_damaged_and_foreign_files_raise(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    cases = {
        "truncated": blob[:-5],
        "truncated_header": blob[:8 + n // 2],
        "tiny": blob[:5],
        "empty": b"",
        "bit_flip_in_data": blob[:-3] + bytes([blob[-3] ^ 1]) + blob[-2:],
        "bad_header_json": blob[:8] + b"[" + blob[9:],
        "random": bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
        "trailing_bytes": blob + b"\0" * 4,
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(ValueError, match=rf"{bad.name}: not a valid model file"):
            load_model(bad)
    foreign = tmp_path / "foreign.safetensors"
    write_safetensors(foreign, {"w": np.zeros(3, np.float32)}, {"format": "pt"})
    assert read_safetensors(foreign)[0]["w"].shape == (3,)
    with pytest.raises(ValueError, match="foreign.safetensors: a safetensors file, but not an rnnkit model"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")


def test_architecture_cannot_name_arbitrary_classes(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors, meta = read_safetensors(path)
    arch = json.loads(meta["architecture"])
    arch["config"]["layers"][0]["class_name"] = "os.system"
    evil = tmp_path / "evil.safetensors"
    write_safetensors(evil, tensors, {**meta, "architecture": json.dumps(arch)})
    with pytest.raises(ValueError, match="unknown layer class 'os.system'"):
        load_model(evil)
    tensors["dense/kernel"] = tensors["dense/kernel"][:1]
    write_safetensors(evil, tensors, meta)
    with pytest.raises(ValueError, match="weight 'dense/kernel' should be float32"):
        load_model(evil)


def test_save_replaces_atomically(rng, tmp_path, monkeypatch):
    model, x, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()
    model.set_weights([w + 1 for w in model.get_weights()])

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]  # old file whole, no temp
    monkeypatch.undo()
    model.save(path)
    np.testing.assert_array_equal(load_model(path).predict(x), model.predict(x))


def test_save_unbuilt_model_raises(tmp_path):
    with pytest.raises(ValueError, match="save: the model is not built"):
        Sequential([Dense(2)]).save(tmp_path / "m.safetensors")
