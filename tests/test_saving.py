"""rnnkit.saving: the safetensors model file — exact round trips, exact resumption, damaged and foreign files."""

import hashlib
import json
import re
import os
import select
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy
from helpers import join_safetensors, split_safetensors

import rnnkit
from rnnkit import Sequential, generative, initializers, load_model
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


# ---------------------------------------------------------------------------------------------- the digest

def _same_model(a, b):
    assert a.get_config() == b.get_config()
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert wa.dtype == wb.dtype
        np.testing.assert_array_equal(wa, wb)
    assert a.compiled == b.compiled
    if a.compiled:
        assert a.optimizer.get_config() == b.optimizer.get_config()
        sa, sb = a.optimizer.get_state(), b.optimizer.get_state()
        assert sorted(sa) == sorted(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_files_rewritten_by_the_safetensors_library_load(rng, tmp_path):
    model, x, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors = safetensors.numpy.load_file(path)  # the library reads rnnkit's file ...
    with safetensors.safe_open(path, "np") as f:
        metadata = f.metadata()
    ours, our_metadata = read_safetensors(path)
    assert metadata == our_metadata and sorted(tensors) == sorted(ours)
    for name, array in ours.items():
        assert tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(tensors[name], array)
    again = tmp_path / "again.safetensors"
    safetensors.numpy.save_file(dict(reversed(tensors.items())), again, metadata=metadata)  # ... and writes it
    loaded = load_model(again)
    _same_model(loaded, model)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # a generative model's file too
    rbm = generative.RNNDBN(6, 4, 3, 2, seed=0)
    rbm.save(path)
    with safetensors.safe_open(path, "np") as f:
        metadata = f.metadata()
    safetensors.numpy.save_file(safetensors.numpy.load_file(path), again, metadata=metadata)
    loaded = generative.load(again)
    assert loaded.get_config() == rbm.get_config()
    for name, w in rbm.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], w)


def test_the_digest_does_not_depend_on_the_order_of_the_tensors(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    header, data = split_safetensors(path.read_bytes())
    names = [k for k in header if k != "__metadata__"]
    for order in (names[::-1], sorted(names, key=lambda k: hashlib.md5(k.encode()).digest())):
        moved = tmp_path / "moved.safetensors"
        moved.write_bytes(join_safetensors(header, data, order=order, pad=False))
        assert split_safetensors(moved.read_bytes())[1] != data  # the bytes did move
        _same_model(load_model(moved), model)


def test_the_digest_covers_the_metadata_and_is_required(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    bad = tmp_path / "bad.safetensors"

    def edit(old, new, match):
        assert old in blob[:8 + n]
        bad.write_bytes(blob.replace(old, new, 1))
        with pytest.raises(ValueError, match=rf"bad\.safetensors: .*{match}"):
            load_model(bad)

    digest = "do not match the recorded sha256 digest"
    edit(b'"compile"', b'"comxile"', digest)  # a metadata key (it dropped the optimizer state before)
    edit(b'\\"units\\": 3', b'\\"units\\": 4', digest)  # inside the architecture
    edit(b'\\"learning_rate\\": 0.01', b'\\"learning_rate\\": 0.02', digest)  # in the compile settings
    edit(b'"bi/forward/W_ih"', b'"bi/forward/W_hh"', "")  # a tensor's name (a duplicate key here)
    edit(b'"dense/bias"', b'"dense/bia5"', digest)
    edit(b'"sha256"', b'"sha257"', "has no 'sha256' digest")  # renaming the digest does not switch it off
    header, data = split_safetensors(blob)
    header["__metadata__"].pop("sha256")
    bad.write_bytes(join_safetensors(header, data))
    with pytest.raises(ValueError, match=r"bad\.safetensors: .*has no 'sha256' digest"):
        load_model(bad)
    header["__metadata__"]["sha256"] = "0" * 64
    bad.write_bytes(join_safetensors(header, data))
    with pytest.raises(ValueError, match=rf"bad\.safetensors: .*{digest}"):
        load_model(bad)
    # a file another program wrote, without a digest, is still read as safetensors (but is not a model)
    safetensors.numpy.save_file({"w": np.ones(3, np.float32)}, bad, metadata={"format": "pt"})
    assert read_safetensors(bad)[1] == {"format": "pt"}
    with pytest.raises(ValueError, match=r"bad\.safetensors: a safetensors file, but not an rnnkit model"):
        load_model(bad)


def test_version_1_files_load_with_their_data_digest(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    header, data = split_safetensors(path.read_bytes())
    meta = header["__metadata__"]
    meta["format_version"] = "1"  # as rnnkit wrote it before the digest covered the metadata
    meta["data_sha256"] = hashlib.sha256(data).hexdigest()
    del meta["sha256"]
    path.write_bytes(join_safetensors(header, data))
    _same_model(load_model(path), model)
    meta["data_sha256"] = hashlib.sha256(data + b"x").hexdigest()
    path.write_bytes(join_safetensors(header, data))
    with pytest.raises(ValueError, match="m.safetensors: .*data_sha256"):
        load_model(path)


# ---------------------------------------------------------------------------------------------- loading

def test_loading_runs_no_initializer(monkeypatch, tmp_path):
    rnnkit.set_seed(0)
    model = Sequential([LSTM(1024, return_sequences=True, recurrent_initializer="random_normal",  # (fast to make)
                             input_shape=(None, 16)),
                        Bidirectional(GRU(8)), Dense(2, kernel_initializer="uniform_pytorch")])
    model.compile("adam", "mse")
    path = tmp_path / "big.safetensors"
    model.save(path)

    def no(*args, **kwargs):
        raise AssertionError("an initializer or a random generator ran while loading")

    monkeypatch.setattr(initializers.Initializer, "__call__", no)
    for cls in vars(initializers).values():
        if isinstance(cls, type) and "_draw" in vars(cls):
            monkeypatch.setattr(cls, "_draw", no)
    monkeypatch.setattr(rnnkit.random, "generator", no)
    monkeypatch.setattr(initializers, "generator", no)
    monkeypatch.setattr(np.random, "default_rng", no)
    start = time.perf_counter()
    loaded = load_model(path)
    seconds = time.perf_counter() - start
    monkeypatch.undo()
    _same_model(loaded, model)
    assert seconds < 1.0, f"an LSTM(1024) model took {seconds:.2f} s to load"
    # the stored arrays are the weights: writable, aligned, C-contiguous and owned by nothing else
    for w in loaded.weights:
        assert w.flags.writeable and w.flags.aligned and w.flags.c_contiguous
    assert len({id(w) for w in loaded.weights}) == len(loaded.weights)


def test_files_asking_for_huge_weights_are_rejected_at_once(rng, tmp_path):
    rnnkit.set_seed(0)
    model = Sequential([LSTM(8, input_shape=(None, 3)), Dense(2)])
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors, meta = read_safetensors(path)
    for units in (8000, 10**12, 10**100):
        meta_units = {**meta, "architecture": meta["architecture"].replace('"units": 8', f'"units": {units}')}
        write_safetensors(path, tensors, meta_units)
        start = time.perf_counter()
        message = (rf"weight 'lstm.*/W_ih' should be float32\[{4 * units}, 3\], the file has float32\[32, 3\]"
                   if units < 2**62 else "cannot be rebuilt: ValueError: Maximum allowed dimension exceeded")
        with pytest.raises(ValueError, match=rf"m\.safetensors: .*{message}"):
            load_model(path)
        assert time.perf_counter() - start < 0.5


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero")
def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, "/dev/zero"):
        with pytest.raises(ValueError, match=rf"{path}: not a valid model file \(not a regular file"):
            load_model(path)
        with pytest.raises(ValueError, match=rf"{path}: not a valid model file \(not a regular file"):
            generative.load(path)


# ---------------------------------------------------------------------------------------------- writing

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_saved_files_get_the_mode_open_would_give(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))])
    rbm = generative.RNNRBM(4, 3, 2, seed=0)
    previous = os.umask(0o027)
    try:
        for save, name in ((model.save, "m.safetensors"), (rbm.save, "g.safetensors")):
            path = tmp_path / name
            save(path)
            assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 less the umask
            path.chmod(0o604)
            save(path)  # replacing a file keeps its mode, as open(path, "wb") would
            assert stat.S_IMODE(path.stat().st_mode) == 0o604
        os.umask(0o002)
        model.save(tmp_path / "n.safetensors")
        assert stat.S_IMODE((tmp_path / "n.safetensors").stat().st_mode) == 0o664
    finally:
        os.umask(previous)


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_stale_temporaries_are_removed_by_the_next_save_and_live_ones_are_not(tmp_path):
    import fcntl

    model = Sequential([Dense(2, input_shape=(3,))])
    path = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.safetensors.rnnkit-tmp-0badf00d"  # left by a killed save: nobody holds its lock
    live = tmp_path / ".m.safetensors.rnnkit-tmp-00c0ffee"  # another process's save in progress: locked
    other = tmp_path / ".other.safetensors.rnnkit-tmp-0badf00d"  # another target's: not this save's business
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    with subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                           "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", live],
                          stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout.readline() == b"locked\n"
            model.save(path)
            assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (path, live, other))
        finally:
            holder.kill()
    model.save(path)  # its writer is gone: the next save removes it
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (path, other))
    with open(live, "wb") as f:  # a temporary someone holds is never removed, however old
        fcntl.flock(f, fcntl.LOCK_EX)
        os.utime(live, (0, 0))
        model.save(path)
        assert live.exists()


_RESAVER = """
import os, sys
import rnnkit
from rnnkit import generative

kind, target, *refs = sys.argv[1:]
models = [(rnnkit.load_model if kind == "model" else generative.load)(ref) for ref in refs]
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "fork":  # a child that re-saves the two models in turn over the target until it is killed
        pid = os.fork()
        if pid == 0:
            i = 0
            while True:
                models[i % 2].save(target)
                i += 1
        print(pid, flush=True)
    elif command == "reap":
        os.waitpid(int(args[0]), 0)
        print("reaped", flush=True)
"""


def _line(stream, timeout=20.0):
    """One line from the binary, unbuffered ``stream``, failing after ``timeout`` seconds."""
    line, deadline = b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"no answer from the re-saving process after {timeout} s (got {line!r})")
        byte = stream.read(1)
        if not byte:
            raise AssertionError(f"the re-saving process ended (got {line!r})")
        line += byte
    return line.decode().strip()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked processes")
@pytest.mark.parametrize("kind", ["model", "generative"])
def test_killed_saves_leave_the_old_or_the_new_file_whole(kind, tmp_path):
    """SIGKILL at random moments of saves over an existing file: the file is always one of the two models,
    whole, and at most the killed save's temporary is left, which the next save removes."""
    if kind == "model":
        rnnkit.set_seed(0)
        a = Sequential([LSTM(128, input_shape=(None, 32)), Dense(4)])
        a.compile("adam", "mse")
        a.fit(np.ones((4, 3, 32)), np.ones((4, 4)), verbose=0)
        b = Sequential.from_config(a.get_config())
        b.set_weights([w + 1 for w in a.get_weights()])
        load = load_model
    else:
        a, b = generative.RNNRBM(88, 150, 100, seed=0), generative.RNNRBM(88, 150, 100, seed=1)
        load = generative.load
    refs = [tmp_path / "a.ref", tmp_path / "b.ref"]
    a.save(refs[0])
    b.save(refs[1])
    expected = [r.read_bytes() for r in refs]
    target = tmp_path / "m.safetensors"
    target.write_bytes(expected[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    pick, seen, left, kills = np.random.default_rng(7), set(), 0, 0
    with subprocess.Popen([sys.executable, "-c", _RESAVER, kind, target, *refs], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, bufsize=0, env=env) as resaver:
        try:
            assert _line(resaver.stdout) == "ready"
            deadline = time.monotonic() + 4.0  # 30 kills, or as many as 4 s allow on a busy machine
            while kills < 30 and (kills < 10 or time.monotonic() < deadline):
                kills += 1
                resaver.stdin.write(b"fork\n")
                pid = int(_line(resaver.stdout))
                time.sleep(pick.uniform(0.0, 0.04))
                os.kill(pid, signal.SIGKILL)
                resaver.stdin.write(f"reap {pid}\n".encode())
                assert _line(resaver.stdout) == "reaped"
                data = target.read_bytes()
                assert data in expected, "the file is neither the old model nor the new one, whole"
                seen.add(expected.index(data))
                debris = [p for p in os.listdir(tmp_path) if p.startswith(".m.safetensors.rnnkit-tmp-")]
                assert len(debris) <= 1, debris  # only the killed save's own temporary
                left += len(debris)
        finally:
            resaver.kill()
    load(target)
    a.save(target)  # the next save removes the last temporary
    assert sorted(os.listdir(tmp_path)) == ["a.ref", "b.ref", "m.safetensors"]
    print(f"{kind}: {kills} kills, the file held model {sorted(seen)}, {left} kills left a temporary")


def test_save_weights_and_load_weights(rng, tmp_path):
    """model.save_weights / load_weights: weights only, matched by layer position (a model built again, with
    other default layer names, loads them), every mismatch a ValueError naming the file before anything is set."""
    model, x, _ = _trained(rng)
    path = tmp_path / "model.weights.safetensors"
    model.save_weights(path)
    again, _, _ = _trained(np.random.default_rng(99))  # same architecture, other weights and layer names
    assert [layer.name for layer in again.layers] != [layer.name for layer in model.layers]
    again.load_weights(path)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(FileExistsError):
        model.save_weights(path, overwrite=False)

    other = Sequential([Embedding(10, 4, input_shape=(6,)), LSTM(5), Dense(3)])
    before = other.get_weights()
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*layers"):
        other.load_weights(path)
    for a, b in zip(other.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="model.load_weights"):
        load_model(path)
    with pytest.raises(ValueError, match="rnnkit.load_model"):
        model.save(tmp_path / "whole.safetensors")
        model.load_weights(tmp_path / "whole.safetensors")


def test_model_checkpoint_saves_weights_only(rng, tmp_path):
    model, x, y = _trained(rng)
    path = tmp_path / "ckpt-{epoch}.weights"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[rnnkit.callbacks.ModelCheckpoint(str(path), monitor="loss",
                                                                                     save_weights_only=True)])
    again, _, _ = _trained(np.random.default_rng(5))
    again.load_weights(tmp_path / "ckpt-2.weights")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="model.load_weights"):
        load_model(tmp_path / "ckpt-1.weights")


def test_a_file_of_the_two_bias_layers_loads_with_the_biases_summed(tmp_path, rng):
    """Files written when SimpleRNN / LSTM / GRU(reset_after=False) trained b_ih and b_hh load: the one bias is
    their sum (the kernels only ever add them). Their optimizer state no longer fits: compile=False is needed."""
    from rnnkit.saving import read_safetensors, write_safetensors

    model = rnnkit.Sequential([rnnkit.layers.LSTM(3, return_sequences=True, input_shape=(4, 2)),
                               rnnkit.layers.Bidirectional(rnnkit.layers.GRU(2, reset_after=False))])
    model.compile("adam", "mse")
    x = rng.standard_normal((5, 4, 2)).astype("float32")
    model.fit(x, rng.standard_normal((5, 4)), epochs=1, verbose=0)
    model.save(tmp_path / "new.rnnkit")
    tensors, metadata = read_safetensors(tmp_path / "new.rnnkit")
    old = {}
    for key, value in tensors.items():
        if key.endswith("/bias"):
            part = rng.standard_normal(value.shape).astype(value.dtype)
            old[key[:-4] + "b_ih"], old[key[:-4] + "b_hh"] = value - part, part
        else:
            old[key] = value
    del metadata["sha256"]
    write_safetensors(tmp_path / "old.rnnkit", old, metadata)
    loaded = rnnkit.load_model(tmp_path / "old.rnnkit", compile=False)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="two biases.*compile=False"):
        rnnkit.load_model(tmp_path / "old.rnnkit")
