"""Hostile files against rnnkit's model files, of three kinds: the Sequential model file (``rnnkit.load_model``),
the same file holding a functional model or a registered subclassed one ("functional", ``rnnkit.load_model`` too:
the architecture a graph of layers, nodes, inputs and outputs, or a registered class with its build shape), and
the generative models' file (``rnnkit.generative.load``, RNN-RBM and RNN-DBN).

Each file is a valid file of the kind, mutated: bit flips, bytes overwritten, truncations and extensions, edited
header lengths, header entries with unknown dtypes, bad or huge shapes, overlapping, negative or out-of-range
offsets, duplicate keys, deep nesting, non-string metadata, and files whose digest is recomputed (valid
containers) but whose architecture or config asks for huge weights, names unknown classes, or disagrees with
the stored tensors; for the functional kind also graphs whose nodes name missing layers or refer to tensors not
made yet (forward references, cycles), with duplicate or unused layers, ops outside rnnkit.ops or with hostile
arguments, unregistered classes or Lambda, or inputs, repeats, reshapes and build shapes too large to try; also
files of zeros, random bytes, another kind's file, an .npz file, a FIFO, a directory and /dev/zero. Every one
must be rejected with a ValueError naming the file, or, where the mutation provably changed nothing (the benign
re-layouts below, swapping two tensors with the same bytes, another build shape of a subclassed model), load a
model identical to the original; none may take more than 1 s or allocate (tracemalloc) more than 100 MB beyond
the file's size.

The default run is a seeded sample of 300 files of each kind, 200 of the functional kind (RNNKIT_FUZZ_SEED picks
another);
RNNKIT_FUZZ_LONG=1 runs every case, with 1,200 random mutations of each base file: about 2,800 to 3,000 files of
each kind. ``pytest -s`` prints the figures.
"""

import collections
import functools
import json
import os
import time
import tracemalloc

import numpy as np
import pytest
from helpers import join_safetensors, split_safetensors

import rnnkit
from rnnkit import Sequential, generative, layers, load_model, ops
from rnnkit.engine.functional import TRIAL_LIMIT
from rnnkit.layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, SimpleRNN
from rnnkit.saving import read_safetensors, weight_paths, write_safetensors

LONG = os.environ.get("RNNKIT_FUZZ_LONG") == "1"
SEED = int(os.environ.get("RNNKIT_FUZZ_SEED", "2024"))
RANDOM_FILES = 1200 if LONG else 100  # random byte-level mutations of each base file
# files of each kind without RNNKIT_FUZZ_LONG: a seeded sample of the cases (all of them with it); fewer of the
# functional kind, whose files take longest to load (a graph is rebuilt and its user layers and ops tried)
DEFAULT_FILES = {"sequential": 300, "functional": 200, "generative": 300}
SECONDS, EXTRA_BYTES = 1.0, 100 * 2**20

REJECT, EITHER, SAME = "reject", "reject or same", "same"  # what a mutation may lead to


# ---------------------------------------------------------------------------------------------- the two kinds

def _sequential_files(tmp_path):
    rnnkit.set_seed(3)
    pick = np.random.default_rng(3)
    model = Sequential([Embedding(12, 4, mask_zero=True, input_shape=(5,), name="embedding"),
                        Bidirectional(LSTM(3, return_sequences=True), name="bi"),
                        GRU(3, return_sequences=True, reset_after=False), Dropout(0.1),
                        SimpleRNN(2), Dense(3, activation="softmax", name="dense")])
    model.compile(rnnkit.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(pick.integers(1, 12, (8, 5)), pick.integers(0, 3, 8), epochs=1, batch_size=4, verbose=0)
    plain = Sequential([LSTM(4, input_shape=(None, 3), dtype="float64", name="lstm"), Dense(2, dtype="float64")])
    files = []
    for name, m in (("trained.safetensors", model), ("plain.safetensors", plain)):
        m.save(tmp_path / name)
        files.append((tmp_path / name, m))
    return files


def _generative_files(tmp_path):
    files = []
    for name, m in (("rbm.safetensors", generative.RNNRBM(6, 4, 3, seed=0)),
                    ("dbn.safetensors", generative.RNNDBN(5, 4, 3, 3, dtype="float64", seed=1))):
        m.save(tmp_path / name)
        files.append((tmp_path / name, m))
    return files


def _same_sequential(a, b):
    if type(a) is not type(b) or a.get_config() != b.get_config() or a.compiled != b.compiled:
        return False
    wa, wb = a.get_weights(), b.get_weights()
    if len(wa) != len(wb) or any(x.dtype != y.dtype or not np.array_equal(x, y) for x, y in zip(wa, wb)):
        return False
    if a.compiled:
        sa, sb = a.optimizer.get_state(), b.optimizer.get_state()
        if (a.optimizer.get_config() != b.optimizer.get_config() or type(a.loss) is not type(b.loss)
                or [n for n, _ in a.metrics] != [n for n, _ in b.metrics] or sorted(sa) != sorted(sb)
                or any(sa[k].dtype != sb[k].dtype or not np.array_equal(sa[k], sb[k]) for k in sa)):
            return False
    return True


def _same_generative(a, b):
    return (type(a) is type(b) and a.get_config() == b.get_config() and sorted(a.weights) == sorted(b.weights)
            and all(a.weights[k].dtype == b.weights[k].dtype and np.array_equal(a.weights[k], b.weights[k])
                    for k in a.weights))


@rnnkit.saving.register_serializable(package="hostile_files")
class Scale(layers.Layer):
    """A user's layer with weights of its own: tanh(x @ w + b)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, x):
        return ops.tanh(ops.matmul(x, self.w) + self.b)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@rnnkit.saving.register_serializable(package="hostile_files")
class Tagger(rnnkit.Model):
    """A subclassed model: an LSTM and a Dense."""

    def __init__(self, units, outputs, **kwargs):
        super().__init__(**kwargs)
        self.units, self.n_outputs = units, outputs
        self.lstm = LSTM(units)
        self.dense = Dense(outputs)

    def call(self, x):
        return self.dense(self.lstm(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "outputs": self.n_outputs}


def _functional_files(tmp_path):
    rnnkit.set_seed(5)
    pick = np.random.default_rng(5)
    ids, seq = rnnkit.Input(shape=(5,), dtype="int64", name="ids"), rnnkit.Input(shape=(5, 6), name="seq")
    x = Embedding(12, 4, mask_zero=True, name="embedding")(ids)
    x = Bidirectional(LSTM(3, return_sequences=True), name="bi")(x)
    shared = Dense(3, activation="tanh", name="shared")  # one set of weights, two nodes
    x = ops.concatenate([shared(x), shared(seq)], axis=-1)
    x = layers.RNN([layers.LSTMCell(3), layers.GRUCell(2)], return_sequences=True, name="cells")(x)
    x = layers.RepeatVector(2, name="repeat")(Scale(3, name="scale")(x[:, -1]))
    x = layers.TimeDistributed(Dense(2), name="td")(layers.Reshape((3, 2), name="reshape")(x))
    model = rnnkit.Model([ids, seq], x, name="graph")
    model.compile(rnnkit.optimizers.Adam(0.01), "mse", metrics=["mae"])
    model.fit([pick.integers(1, 12, (8, 5)), pick.standard_normal((8, 5, 6))], pick.standard_normal((8, 3, 2)),
              epochs=1, batch_size=4, verbose=0)
    tagger = Tagger(3, 2, name="tagger")
    tagger.compile("rmsprop", "mse")
    tagger.fit(pick.standard_normal((8, 5, 3)), pick.standard_normal((8, 2)), epochs=1, batch_size=4, verbose=0)
    files = []
    for name, m in (("functional.safetensors", model), ("subclassed.safetensors", tagger)):
        m.save(tmp_path / name)
        files.append((tmp_path / name, m))
    return files


def _same_optimizer(a, b):
    sa, sb = a.optimizer.get_state(), b.optimizer.get_state()
    return (a.optimizer.get_config() == b.optimizer.get_config() and sorted(sa) == sorted(sb)
            and all(sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]) for k in sa))


def _same_functional(a, b):
    if type(a) is not type(b) or a.get_config() != b.get_config() or a.compiled != b.compiled:
        return False
    wa, wb = weight_paths(a), weight_paths(b)
    if [k for k, _ in wa] != [k for k, _ in wb] or any(
            x.dtype != y.dtype or not np.array_equal(x, y) for (_, x), (_, y) in zip(wa, wb)):
        return False
    # the compile settings as the file holds them: loss, loss weights and metrics by name
    return not a.compiled or (rnnkit.saving._compile_config(a, False) == rnnkit.saving._compile_config(b, False)
                              and _same_optimizer(a, b))


KINDS = {"sequential": (_sequential_files, load_model, _same_sequential),
         "functional": (_functional_files, load_model, _same_functional),
         "generative": (_generative_files, generative.load, _same_generative)}


# ---------------------------------------------------------------------------------------------- mutations

def _random_mutations(blob, pick, count):
    """(family, bytes, expectation) of ``count`` random byte-level mutations of ``blob``."""
    n = int.from_bytes(blob[:8], "little")
    size = len(blob)

    def position():  # mostly in the header, where a change can mean something else
        where = pick.random()
        if where < 0.1:
            return int(pick.integers(0, 8))
        if where < 0.8:
            return int(pick.integers(8, 8 + n))
        return int(pick.integers(8 + n, size)) if size > 8 + n else int(pick.integers(0, size))

    for _ in range(count):
        family = pick.choice(["bit flip"] * 6 + ["byte set", "truncation", "extension", "splice", "zeroed run"])
        data = bytearray(blob)
        if family == "bit flip":
            i = position()
            data[i] ^= 1 << int(pick.integers(0, 8))
        elif family == "byte set":
            i = position()
            data[i] = (data[i] + int(pick.integers(1, 256))) % 256
        elif family == "truncation":
            data = data[:int(pick.integers(0, size))]
        elif family == "extension":
            data += bytes(int(pick.integers(1, 64))) if pick.random() < 0.5 else pick.bytes(int(pick.integers(1, 64)))
        elif family == "splice":  # a run of the header deleted or repeated
            i, k = position(), int(pick.integers(1, 16))
            data = data[:i] + data[i + k:] if pick.random() < 0.5 else data[:i + k] + data[i:]
        else:
            i, k = position(), int(pick.integers(1, 32))
            data[i:i + k] = bytes(len(data[i:i + k]))
        yield family, bytes(data), EITHER


def _length_fields(blob):
    n, size = int.from_bytes(blob[:8], "little"), len(blob)
    for value in (0, 1, 2, n - 1, n + 1, n + 8, n - 8, size - 8, size - 7, size, 2**31, 2**32 + n, 2**63, 2**64 - 1,
                  100 * 2**20 + 1):
        yield "header length", value.to_bytes(8, "little") + blob[8:], EITHER if value == n else REJECT


def _header_edits(blob, pick):
    """Edits of the parsed header (re-encoded; the digest is not recomputed)."""
    header, data = split_safetensors(blob)
    names = sorted(k for k in header if k != "__metadata__")
    big = max(names, key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])

    def entry(name, **change):
        edited = json.loads(json.dumps(header))
        edited[name] = {**edited[name], **change}
        for key, value in change.items():
            if value is _DROP:
                del edited[name][key]
        return join_safetensors(edited, data)

    for value in ("F8", "f32", "", "BF16", "F64", "F32", "I32", "U32", "BOOL", "U8", "I64", 5, None, [], {"F32": 1}):
        name = pick.choice(names)
        if value != header[name]["dtype"]:
            yield "dtype", entry(name, dtype=value), REJECT
    shape = header[big]["shape"]
    for value in ([-1], [-4, -3], [2**40, 2**40], [2**62] * 4, [1] * 100, [True] * len(shape), [1.5], ["4"], [[4]],
                  {}, None, "4", shape[::-1] if len(set(shape)) > 1 else [1, *shape], [int(np.prod(shape))],
                  [*shape, 1], [0, *shape], [10**30], [1] * 33, [*shape[:-1], shape[-1] + 1] if shape else [1]):
        yield "shape", entry(big, shape=value), REJECT
    begin, end = header[big]["data_offsets"]
    for value in ([-8, end], [begin, end + 8], [end, begin] if end > begin else [1, 0], [begin + 4, end + 4],
                  [begin - 4, end - 4] if begin >= 4 else [begin + 8, end + 8], [begin, 2**63], [2**64, 2**64 + 4],
                  [float(begin), float(end)], [str(begin), end], [begin], [begin, end, end], None, [None, end],
                  [begin, len(data) + 1], [0, end - begin] if begin else [8, 8 + end]):
        yield "data offsets", entry(big, data_offsets=value), REJECT
    for name in pick.choice(names, size=min(3, len(names)), replace=False):
        yield "entry keys", entry(name, dtype=_DROP), REJECT
        yield "entry keys", entry(name, extra=1), REJECT
        edited = dict(header)
        edited[name] = [None, [], "F32", 7][int(pick.integers(4))]
        yield "entry type", join_safetensors(edited, data), REJECT
    a, b = pick.choice(names, size=2, replace=False)  # two tensors' places swapped
    if {**header[a], "data_offsets": None} == {**header[b], "data_offsets": None}:
        edited = {**header, a: {**header[a], "data_offsets": header[b]["data_offsets"]},
                  b: {**header[b], "data_offsets": header[a]["data_offsets"]}}
        yield "swap", join_safetensors(edited, data), EITHER  # the same model only when both hold the same bytes
    same = [(x, y) for x in names for y in names
            if x < y and {**header[x], "data_offsets": None} == {**header[y], "data_offsets": None}
            and data[slice(*header[x]["data_offsets"])] == data[slice(*header[y]["data_offsets"])]]
    for x, y in same[:2]:  # equal tensors swapped: provably the same model
        edited = {**header, x: {**header[x], "data_offsets": header[y]["data_offsets"]},
                  y: {**header[y], "data_offsets": header[x]["data_offsets"]}}
        yield "swap of equal tensors", join_safetensors(edited, data), SAME
    meta = header["__metadata__"]
    for value in (None, [], "text", 5, {"format": 5}, {"format": None}, {"format": ["x"]}, {"format": {"a": "b"}},
                  {**meta, "architecture": json.loads(meta.get("architecture", meta.get("config", "{}")))},
                  {**meta, "sha256": None}, {**meta, "format": True}, {**meta, "extra": 1.5}):
        yield "metadata type", join_safetensors({**header, "__metadata__": value}, data), REJECT
    without = {k: v for k, v in header.items() if k != "__metadata__"}
    yield "metadata missing", join_safetensors(without, data), REJECT
    yield "tensor dropped", join_safetensors({k: v for k, v in header.items() if k != big}, data), REJECT
    yield "tensor renamed", join_safetensors({(k + "_" if k == big else k): v for k, v in header.items()}, data), REJECT
    extra = {**header, "extra": {"dtype": "F32", "shape": [2], "data_offsets": [len(data), len(data) + 8]}}
    yield "tensor added", join_safetensors(extra, data + bytes(8)), REJECT
    for key in ("format", "format_version", "sha256"):
        dropped = {**header, "__metadata__": {k: v for k, v in meta.items() if k != key}}
        yield "metadata entry dropped", join_safetensors(dropped, data), REJECT
    text = json.dumps(header, separators=(",", ":"))
    first = json.dumps(names[0])
    twice = text.replace(first, f"{first}:{json.dumps(header[names[0]])},{first}", 1)
    yield "duplicate tensor key", join_safetensors(twice.encode(), data), REJECT
    twice = text.replace('"format":', '"format":"x","format":', 1)
    yield "duplicate metadata key", join_safetensors(twice.encode(), data), REJECT
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[]", b"null", b"7",
                b'"text"', b"{}", b"", b" " * 64, b"\xef\xbb\xbf" + text.encode(), text.encode() + b"x",
                text.replace("[0,", "[NaN,", 1).encode(), text.replace("[0,", "[" + "9" * 5000 + ",", 1).encode(),
                text.replace('"dtype"', '"dty\xff"', 1).encode("latin-1"), text.encode()[:-1],
                text.replace('"shape":[', '"shape":' + "[" * 5000 + "]" * 4999 + ",[", 1).encode(),
                text.encode().replace(b'"format"', b'"\\ud800format"', 1)):
        yield "raw header", join_safetensors(raw, data), REJECT
    # benign: the same header in another form, or the tensors in another order: the same model
    yield "benign re-encoding", join_safetensors(json.dumps(header, indent=1, sort_keys=True).encode(), data), SAME
    yield "benign re-encoding", join_safetensors(text.encode(), data, pad=False), SAME
    yield "benign re-encoding", join_safetensors(text.encode() + b" " * 24, data), SAME
    yield "benign order", join_safetensors(header, data, order=names[::-1]), SAME
    yield "benign order", join_safetensors(header, data, order=list(pick.permutation(names))), SAME
    yield "benign order", join_safetensors({"__metadata__": {k: meta[k] for k in reversed(meta)},
                                            **{k: header[k] for k in reversed(names)}}, data), SAME


_DROP = object()


def _semantic_edits(kind, path, tmp_path):
    """Valid containers (the digest recomputed by rnnkit's own writer) whose content is wrong: (family, bytes,
    REJECT)."""
    tensors, meta = read_safetensors(path)
    out = tmp_path / "edited.safetensors"

    def written(tensors=tensors, **metadata):
        write_safetensors(out, tensors, {k: v for k, v in {**meta, **metadata}.items() if v is not None})
        data = out.read_bytes()
        out.unlink()  # (writing over a file makes ext4 flush it: slow)
        return data

    big = max(tensors, key=lambda k: tensors[k].size)
    changed = {**tensors, big: np.zeros((2, *tensors[big].shape), tensors[big].dtype)}
    yield "tensor shape", written(changed), REJECT
    for dtype in (np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_):
        if np.dtype(dtype) != tensors[big].dtype:
            yield "tensor dtype", written({**tensors, big: tensors[big].astype(dtype)}), REJECT
    yield "tensor missing", written({k: v for k, v in tensors.items() if k != big}), REJECT
    yield "tensor extra", written({**tensors, "extra": np.zeros(3, np.float32)}), REJECT
    yield "tensor renamed", written({(k + "x" if k == big else k): v for k, v in tensors.items()}), REJECT
    yield "format", written(format="rnnkit.model" if kind == "generative" else "rnnkit.generative"), REJECT
    for value in ("pt", "", "RNNKIT.MODEL"):
        yield "format", written(format=value), REJECT
    for value in ("3", "0", "", "2.0", "1", "2", " 1"):
        if value != meta["format_version"]:
            yield "format version", written(format_version=value), REJECT
    deep = "[" * 200_000 + "]" * 200_000
    if kind == "sequential":
        arch = json.loads(meta["architecture"])
        layers = arch["config"]["layers"]
        rec = next(i for i, layer in enumerate(layers) if layer["class_name"] in ("LSTM", "GRU", "Bidirectional"))

        def architecture(edit):
            a = json.loads(meta["architecture"])
            edit(a)
            return written(architecture=json.dumps(a))

        def layer_config(i, **change):
            def edit(a):
                config = a["config"]["layers"][i]["config"]
                if "layer" in config:
                    config = config["layer"]["config"]
                config.update(change)
            return architecture(edit)

        for units in (8000, 10**6, 10**12, 10**100, 10**4000, 0, -1, 8.5, "8", True, None, [3], {"u": 3}):
            yield "units", layer_config(rec, units=units), REJECT
        yield "units", layer_config(len(layers) - 1, units=10**9), REJECT
        if layers[0]["class_name"] == "Embedding":
            for value in (10**9, 10**15, -5, "x"):
                yield "embedding size", layer_config(0, input_dim=value), REJECT
        other = "<f4" if layers[rec]["config"].get("dtype") == "float64" else "float64"
        for dtype in ("float16", "int32", "object", 5, None, other):
            yield "layer dtype", layer_config(rec, dtype=dtype), REJECT
        yield "unknown keyword", layer_config(rec, evil=1), REJECT
        yield "initializer", layer_config(rec, kernel_initializer={"class_name": "os.system", "config": {}}), REJECT
        yield "deep config", layer_config(rec, kernel_initializer=json.loads("[" * 500 + "]" * 500)), REJECT
        for cls in ("Lambda", "os.system", "__import__", "Layer", "Sequential", 5, None):
            yield "layer class", architecture(lambda a: a["config"]["layers"][rec].update(class_name=cls)), REJECT
        yield "wrapped class", architecture(lambda a: a["config"]["layers"].__setitem__(
            rec, {"class_name": "Bidirectional", "config": {"name": "w", "layer": a["config"]["layers"][rec]}})), REJECT
        yield "wrapped class", architecture(lambda a: a["config"]["layers"].__setitem__(
            rec, {"class_name": "Bidirectional",
                  "config": {"name": "w", "layer": {"class_name": "Dense", "config": {"units": 2}}}})), REJECT
        for cls in ("Model", "Functional", "os.system", None, 5):
            yield "model class", architecture(lambda a: a.update(class_name=cls)), REJECT
        for value in (None, [], "x", 5):
            yield "model config", architecture(lambda a: a.update(config=value)), REJECT
        for value in (None, {}, "x", [None], [5], [{"class_name": "Dense"}], []):
            yield "layers", architecture(lambda a: a["config"].update(layers=value)), REJECT
        yield "layer dropped", architecture(lambda a: a["config"]["layers"].pop(rec)), REJECT
        yield "layer repeated", architecture(lambda a: a["config"]["layers"].insert(rec, a["config"]["layers"][rec])), \
            REJECT
        yield "layer renamed", architecture(lambda a: a["config"]["layers"][-1]["config"].update(name="other")), REJECT
        first = layers[0]["config"]
        shape_key = "batch_input_shape" if "batch_input_shape" in first else None
        for value in ([None, None, 10**12], [None, None, 10**100], [None, None, -3], "abc", [[1]], [None], 7,
                      [None, 5, 2**70]):
            if shape_key:
                yield "input shape", architecture(
                    lambda a: a["config"]["layers"][0]["config"].update(batch_input_shape=value)), REJECT
            yield "input shape", architecture(lambda a: a["config"].update(build_input_shape=value)), REJECT
        if shape_key:  # no input shape at all: the model has no weights for the stored tensors
            yield "input shape", architecture(lambda a: (a["config"]["layers"][0]["config"].pop("batch_input_shape"),
                                                         a["config"].update(build_input_shape=None))), REJECT
        for value in ("{", "[", "null", "[]", "5", '"Sequential"', deep, "{}", '{"class_name": "Sequential"}',
                      json.dumps({"class_name": "Sequential", "config": json.loads("[" * 40 + "]" * 40)}),
                      meta["architecture"] + "x", meta["architecture"].replace("{", "{\"a\": 1, \"a\": 2, ", 1)):
            yield "architecture text", written(architecture=value), REJECT
        yield from _compile_edits(tensors, meta, written)
    elif kind == "functional":
        yield from _graph_edits(meta, written)
        yield from _compile_edits(tensors, meta, written)
    else:
        config = json.loads(meta["config"])

        def configured(**change):
            return written(config=json.dumps({**config, **change}))

        for key in ("n_visible", "n_hidden", "n_recurrent") + (("n_hidden2",) if "n_hidden2" in config else ()):
            for value in (10**6, 10**12, 10**100, 0, -1, 6.5, "6", True, None, config[key] + 1):
                yield key, configured(**{key: value}), REJECT
        for value in ("float16", "int32", 5, None, "float64" if config["dtype"] == "float32" else "float32"):
            yield "dtype", configured(dtype=value), REJECT
        for value in (0, -1, "x", None, float("inf")):
            yield "init scale", written(config=json.dumps({**config, "init_scale": value}, allow_nan=True)), REJECT
        yield "config keys", configured(seed=3), REJECT
        yield "config keys", written(config=json.dumps({k: v for k, v in config.items() if k != "n_hidden"})), REJECT
        yield "config keys", configured(n_hidden2=3) if "n_hidden2" not in config else \
            written(config=json.dumps({k: v for k, v in config.items() if k != "n_hidden2"})), REJECT
        nested = json.dumps({**config, "n_visible": json.loads("[" * 40 + "]" * 40)})
        for value in ("{", "[]", "null", "5", deep, nested):
            yield "config text", written(config=value), REJECT
        for value in ("RNNX", "LSTM", "", None, "RNNRBM" if "n_hidden2" in config else "RNNDBN"):
            yield "class", written(**{"class": value}), REJECT


def _graph_edits(meta, written):
    """Edits of a functional model's graph (layers, nodes, inputs and outputs) or of a subclassed model's class and
    build shape, in valid containers: (family, bytes, expectation)."""
    arch = json.loads(meta["architecture"])

    def architecture(edit):
        a = json.loads(meta["architecture"])
        edit(a)
        return written(architecture=json.dumps(a))

    if arch["class_name"] != "Functional":  # a registered subclassed model: its class, config and build shape
        for value in ([None, 10**9, 3], [10**12, 5, 3], [None, 2**62, 3], [None, -1, 3], [None, 5.5, 3],
                      [None, True, 3], [True, 5, 3], [None, "5", 3], "abc", 5, [], {}, [[None, 5, 3]],
                      {"x": [None, 5, 3]}, [None, 5], [None, 5, 3, 1], [None, 5, 4], [None] * 40, None,
                      json.loads("[" * 30 + "]" * 30)):
            yield "build input shape", architecture(lambda a: a.update(build_input_shape=value)), REJECT
        yield "build input shape", architecture(lambda a: a.pop("build_input_shape")), REJECT
        # another length of sequence: the same model, built by a call on zeros of at most TRIAL_LIMIT values
        for value in ([None, 7, 3], [None, None, 3], [2, 5, 3], [None, TRIAL_LIMIT // 3, 3]):
            yield "build input shape of the same model", architecture(lambda a: a.update(build_input_shape=value)), \
                EITHER
        for key in ("units", "outputs"):
            for value in (10**6, 10**9, 10**100, 0, -1, 2.5, "3", None, [3], {"u": 3}):
                yield f"config {key}", architecture(lambda a: a["config"].update({key: value})), REJECT
        yield "unknown keyword", architecture(lambda a: a["config"].update(evil=1)), REJECT
        for value in ("hostile_files>Nope", "Custom>Tagger", "hostile_files>Scale", "", 5, None, ["x"], {"a": 1}):
            yield "registered name", architecture(lambda a: a.update(registered_name=value)), REJECT
        yield "registered name", architecture(lambda a: a.pop("registered_name")), REJECT
        for value in ("Lambda", "Functional", "Model", "Sequential", "os.system", None, 5):
            yield "model class", architecture(lambda a: (a.update(class_name=value), a.pop("registered_name"))), REJECT
        return

    names = [layer["config"]["name"] for layer in arch["config"]["layers"]]
    ops_layers = [n for n, layer in zip(names, arch["config"]["layers"]) if layer["class_name"] == "OpLayer"]
    concat, = [n for n in ops_layers if n.startswith("concatenate")]
    take, = [n for n in ops_layers if n.startswith("take_slice")]

    def layer(a, name):
        return next(layer for layer in a["config"]["layers"] if layer["config"]["name"] == name)

    def configured(name, **change):
        def edit(a):
            config = layer(a, name)["config"]
            if "layer" in config:
                config = config["layer"]["config"]
            elif "cell" in config:
                config = config["cell"]["config"]["cells"][0]["config"]
            config.update(change)
        return architecture(edit)

    def node(a, name, k=0):
        return [n for n in a["config"]["nodes"] if n[0] == name][k]

    def ref(name, k=0, i=0):
        return {"__tensor__": [name, k, i]}

    # inputs: shapes too large to hold or to try a layer on, or no shapes at all
    for name, values in (("seq", ([None, 10**9, 6], [10**12, 5, 6], [None, 2**62, 6], [None, 5, 2**40],
                                  [None, -5, 6], [None, 5.5, 6], [None, "5", 6], [None, 5, True], [None, 5, None],
                                  [None] * 40, "abc", None, 7, [[None, 5, 6]], [], [None, 5, 6.0])),
                         ("ids", ([None, 10**9], [10**15, 5], [None, -1], [None, 5, 1], None))):
        for value in values:
            yield "input shape", configured(name, batch_shape=value), REJECT
    for value in ("object", "complex64", "<U3", 5, ["int64"], "datetime64"):
        yield "input dtype", configured("ids", dtype=value), REJECT
    # both inputs so long that trying the concatenation on sequences of 2 steps takes just TRIAL_LIMIT values, on 3
    # more: rejected, after one trial within the bounds
    steps = TRIAL_LIMIT // 12
    yield "input shape at the trial limit", architecture(lambda a: (
        layer(a, "ids")["config"].update(batch_shape=[None, steps]),
        layer(a, "seq")["config"].update(batch_shape=[None, steps, 6]))), REJECT
    # layers asking for more weights than the file holds (rejected before anything is allocated), or for huge outputs
    for name in ("shared", "bi", "td", "cells", "scale"):
        for value in (10**6, 10**9, 10**12, 10**100, 0, -1, 2.5, None, [3]) + (("3",) if name != "scale" else ()):
            yield "units", configured(name, units=value), REJECT  # (the user's Scale takes "3" for 3)
    for value in (10**9, 10**15, -5, "x"):
        yield "embedding size", configured("embedding", input_dim=value), REJECT
        yield "embedding size", configured("embedding", output_dim=value), REJECT
    for value in (10**9, 10**7, 2**62, 0, -1, 2.5, "2", True, None, [2]):
        yield "repeat", configured("repeat", n=value), REJECT
    for value in ([10**9], [10**6, 10**6], [-1, 10**12], [2**62, 2**62], [-1, -1], [0], [6, 0], [1.5, 4], ["4"],
                  [True, 6], None, 5, [-1, 2**62]):
        yield "reshape", configured("reshape", target_shape=value), REJECT
    yield "unknown keyword", configured("shared", evil=1), REJECT
    # OpLayers: only rnnkit.ops functions of symbolic tensors, arguments Keras' forms of JSON data, within bounds
    for name in (concat, take):
        for value in ("system", "__import__", "eval", "exec", "getattr", "open", "_op", "_apply", "np", "builtins",
                      "UFUNCS", "zeros", "ones", "shape", "convert_to_numpy", "convert_to_tensor", "", None, 5,
                      ["concatenate"], "Concatenate", "os.system", "numpy.concatenate"):
            yield "op function", configured(name, function=value), REJECT
    slot = layer(arch, take)["config"]["args"][0]

    def op(name, function, args, kwargs, node_args=None):
        def edit(a):
            layer(a, name)["config"].update(function=function, args=args, kwargs=kwargs)
            if node_args is not None:
                node(a, name)[1] = node_args
        return architecture(edit)

    def numpy(value, dtype="int64"):
        return {"class_name": "__numpy__", "config": {"value": value, "dtype": dtype}}

    def tuple_(*values):
        return {"class_name": "__tuple__", "config": {"value": list(values)}}

    everything = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    k = 10_000  # x[:, rows, cols] with rows [k, 1] and cols [1, k]: [N, k, k]
    for args, kwargs in (
            ([slot, {"class_name": "__lambda__", "config": {"code": "print(1)"}}], {}),
            ([slot, {"class_name": "os.system", "config": {}}], {}),
            ([slot, {"class_name": 5, "config": {}}], {}),
            ([slot, numpy([1], "object")], {}), ([slot, numpy("abc")], {}), ([slot, numpy([1], "V8")], {}),
            ([slot, numpy([[0]] * k), numpy([[0] * k])], {}),
            ([slot, tuple_(everything, numpy([[0]] * k), numpy([[0] * k]))], {}),
            ([slot, {"class_name": "__slice__", "config": {}}], {}), ([slot, tuple_(5)], {}),
            ([slot, {"class_name": "__tuple__", "config": {"value": 5}}], {}),
            ([slot, {"class_name": "__keras_tensor__", "config": {"shape": "x", "dtype": "float32"}}], {}),
            ([slot, tuple_(everything, -1)], {"evil": 1}),
            ([slot, json.loads("[" * 20 + "-1" + "]" * 20)], {}),
            ([slot] + [0] * 50_000, {}),
            ([slot, tuple_(everything, -1)], None), (None, {}), ({"a": 1}, {}), ([slot, tuple_(everything, -1)], [1])):
        yield "op args", op(take, "take_slice", args, kwargs), REJECT
    for function, args, kwargs in (("repeat", [slot, 10**7], {"axis": 1}), ("repeat", [slot, 10**12], {}),
                                   ("repeat", [slot, -1], {}), ("one_hot", [slot, 10**8], {}),
                                   ("one_hot", [slot, 10**7], {}), ("broadcast_to", [slot, [10**6, 10**6]], {}),
                                   ("broadcast_to", [slot, [10**9, 2, 5, 2]], {}), ("reshape", [slot, [-1, 10**9]], {}),
                                   ("sum", [slot], {"axis": 10**100}), ("split", [slot, list(range(1, 50_000))], {}),
                                   ("concatenate", [[slot] * 2], {"axis": 1}),
                                   ("matmul", [slot, numpy([[0] * 20_000] * 2, "float32")], {}),
                                   ("add", [slot, numpy([0.0] * 7, "float32")], {}),  # [k, 1, ...] by [k, ...]:
                                   ("where", [slot, numpy([[[[[0.0]]]]] * 1000, "float32"),  # [k, k, N, 5, 2]
                                              numpy([[[[0.0]]]] * 1000, "float32")], {})):
        yield "op args", op(take, function, args, kwargs), REJECT
    # an op with no symbolic tensor at all: never made by a graph, and nothing it could be tried on
    yield "op args", op(concat, "ones", [[20_000, 20_000]], {}, node_args=[[]]), REJECT
    yield "op args", op(concat, "zeros", [[20_000, 20_000]], {}, node_args=[]), REJECT
    yield "op args", op(concat, "concatenate", [[1.0, 2.0]], {}, node_args=[[]]), REJECT
    many = 2_000  # one tensor concatenated with itself many times: more weights after it than the file holds
    yield "op args", op(concat, "concatenate", [[slot] * many], {"axis": -1}, node_args=[[ref("shared")] * many]), \
        REJECT
    # nodes: of layers that do not exist, on tensors not made yet (forward references, cycles), or malformed
    for value in ("nope", 5, None, "", ["shared"], "ids", "graph"):
        yield "node layer", architecture(lambda a: a["config"]["nodes"][2].__setitem__(0, value)), REJECT
    for value in (None, {}, "x", [], [[]], [None], json.loads("[" * 30 + "]" * 30)):
        yield "nodes", architecture(lambda a: a["config"].update(nodes=value)), REJECT
    yield "node order", architecture(lambda a: a["config"]["nodes"].reverse()), REJECT
    yield "node order", architecture(lambda a: a["config"]["nodes"].insert(0, a["config"]["nodes"].pop(1))), REJECT
    yield "node order", architecture(lambda a: a["config"]["nodes"].append(a["config"]["nodes"].pop(0))), REJECT
    yield "node dropped", architecture(lambda a: a["config"]["nodes"].pop(1)), REJECT
    yield "node repeated", architecture(lambda a: a["config"]["nodes"].insert(1, a["config"]["nodes"][1])), REJECT
    for value in (ref("shared"), ref("shared", 1), ref("cells"), ref("td")):  # shared's first call reads itself
        yield "node cycle", architecture(lambda a: node(a, "shared")[1].__setitem__(0, value)), REJECT  # or later
    for value in (ref("bi", 0, 1), ref("bi", 0, -1), ref("bi", -1), ref("bi", 1), ref("bi", True), ref("bi", 0, True),
                  ref("bi", 0.0), ref("bi", 0, 0.0), ref("bi", "0"), ref("nope"), {"__tensor__": ["bi", 0]},
                  {"__tensor__": ["bi", 0, 0, 0]}, {"__tensor__": "bi"}, {"__tensor__": ["bi", 0, 0], "x": 1},
                  {"__tensor__": [["bi"], 0, 0]}, ref("ids", 1), ref("graph"), ref("bi", 10**100),
                  [[[[ref("bi")]]]], json.loads("[" * 25 + "]" * 25)):
        yield "node tensor", architecture(lambda a: node(a, "shared")[1].__setitem__(0, value)), REJECT
    yield "node args", architecture(lambda a: node(a, "shared").__setitem__(1, [ref("bi"), ref("seq")] * 2)), REJECT
    yield "node args", architecture(lambda a: node(a, "shared").append({})), REJECT
    yield "node args", architecture(lambda a: node(a, "shared").__setitem__(2, {"evil": ref("bi")})), REJECT
    yield "node args", architecture(lambda a: node(a, "shared").__setitem__(2, [])), REJECT
    yield "node args", architecture(lambda a: node(a, "shared").__setitem__(1, [[[1.0] * 6] * 5] * 2)), REJECT
    for value in (ref("nope"), ref("td", 1), ref("td", 0, 1), ref("td", 0, -1), ref("td", True), ref("shared", 0.0),
                  None, "x", 5, [], {}):
        yield "outputs", architecture(lambda a: a["config"].update(outputs=value)), REJECT
    for value in ([ref("ids"), ref("shared")], [ref("ids"), ref("ids")], [ref("ids")], [ref("ids"), ref("seq", 0, -1)],
                  [ref("ids"), ref("nope")], None, "x", []):
        yield "inputs", architecture(lambda a: a["config"].update(inputs=value)), REJECT
    # layers: unknown or code-running classes, unregistered user classes, duplicate or unused names
    for value in ("Lambda", "os.system", "__import__", "Layer", "Model", "Functional", "Sequential", "InputLayer",
                  "Scale", 5, None):
        yield "layer class", architecture(lambda a: layer(a, "shared").update(class_name=value)), REJECT
    system = {"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
    yield "layer class", architecture(lambda a: layer(a, "shared").update(
        class_name="Lambda", config={"name": "shared", "function": system})), REJECT
    for value in ("hostile_files>Nope", "Custom>Scale", "hostile_files>Tagger", "", 5, None, ["x"]):
        yield "registered name", architecture(lambda a: layer(a, "scale").update(registered_name=value)), REJECT
    yield "registered name", architecture(lambda a: layer(a, "scale").pop("registered_name")), REJECT
    yield "duplicate names", architecture(lambda a: a["config"]["layers"].insert(3, layer(a, "shared"))), REJECT
    yield "duplicate names", architecture(lambda a: layer(a, "td")["config"].update(name="shared")), REJECT
    yield "duplicate names", architecture(lambda a: layer(a, "seq")["config"].update(name="ids")), REJECT
    yield "duplicate names", architecture(lambda a: layer(a, "seq")["config"].update(name="shared")), REJECT
    yield "duplicate names", architecture(lambda a: (layer(a, "reshape")["config"].update(name="repeat"),
                                                     node(a, "reshape").__setitem__(0, "repeat"))), REJECT
    yield "unused layer", architecture(lambda a: a["config"]["layers"].append(
        {"class_name": "Dense", "config": {"name": "extra", "units": 10**9}})), REJECT
    yield "unused layer", architecture(lambda a: a["config"]["layers"].append(layer(a, "scale") | {
        "config": {**layer(a, "scale")["config"], "name": "extra"}})), REJECT
    for value in (None, {}, "x", [None], [5], [{"class_name": "Dense"}], []):
        yield "layers", architecture(lambda a: a["config"].update(layers=value)), REJECT
    for value in ("Model", "Sequential", "os.system", "Lambda", None, 5):
        yield "model class", architecture(lambda a: a.update(class_name=value)), REJECT
    for value in (None, [], "x", 5):
        yield "model config", architecture(lambda a: a.update(config=value)), REJECT
    yield "registered name", architecture(lambda a: a.update(registered_name="hostile_files>Tagger")), REJECT
    yield "build input shape", architecture(lambda a: a.update(build_input_shape=[None, 10**9, 3])), REJECT


def _compile_edits(tensors, meta, written):
    """Edits of a model file's compile settings and optimizer state (``written`` re-writes the file): (family, bytes,
    REJECT)."""
    deep = "[" * 200_000 + "]" * 200_000
    if "compile" in meta:
        compile_config = json.loads(meta["compile"])
        state = {k: v for k, v in tensors.items() if k.startswith("optimizer/")}

        def compiled(**change):
            return written(compile=json.dumps({**compile_config, **change}))

        for value in ("nope", {"class_name": "Evil", "config": {}}, 5, None, [1]):
            yield "loss", compiled(loss=value), REJECT
        for value in ("accuracy", [5], ["nope"], None, {"a": 1}):
            yield "metrics", compiled(metrics=value), REJECT
        optimizer = compile_config["optimizer"]

        def with_config(**change):
            return {**optimizer, "config": {**optimizer["config"], **change}}

        for value in ("nope", {"class_name": "os.system", "config": {}}, 5, [], with_config(learning_rate=-1),
                      with_config(learning_rate=json.loads("[" * 30 + "]" * 30)), with_config(evil=1), None):
            yield "optimizer", compiled(optimizer=value), REJECT
        yield "compile keys", written(compile=json.dumps({**compile_config, "extra": 1})), REJECT
        yield "compile keys", written(compile=json.dumps({"loss": compile_config["loss"]})), REJECT
        for value in ("{", "[]", "null", deep, "5"):
            yield "compile text", written(compile=value), REJECT
        yield "compile dropped", written(compile=None), REJECT
        it = "optimizer/iterations"
        for value in (np.array(-1, np.int64), np.array(2.0), np.array([2], np.int64), np.array(2, np.int32)):
            yield "optimizer iterations", written({**tensors, it: value}), REJECT
        slot = next(k for k in state if k != it)
        yield "optimizer slot", written({k: v for k, v in tensors.items() if k != slot}), REJECT
        yield "optimizer slot", written({**tensors, slot: np.zeros((3, 3), np.float32)}), REJECT
        yield "optimizer slot", written({**tensors, slot: tensors[slot].astype(np.int32)}), REJECT
        yield "optimizer slot", written({**tensors, slot: tensors[slot].astype(np.float64)}), REJECT
        yield "optimizer slot", written({**tensors, "optimizer/99/momentum": tensors[slot]}), REJECT
        yield "optimizer slot", written({**tensors, "optimizer/0/evil": tensors[slot]}), REJECT
        yield "optimizer state", written({k: v for k, v in tensors.items() if k not in state}), REJECT
    else:
        yield "optimizer state", written({**tensors, "optimizer/iterations": np.array(3, np.int64)}), REJECT


@functools.lru_cache(maxsize=1)
def _large_headers():
    """(family, bytes) of headers of many (empty) tensors, of one shape of very many values, and of long non-ASCII
    text: the same for every kind, made once (they take a while)."""
    made = []
    for count in (40_000, 10**6):
        many = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count // 10)}
        made.append(("many values", join_safetensors({**many, "__metadata__": {"format": "pt"}}, b"")))
        shape = b'{"t":{"dtype":"U8","shape":[' + b",".join([b"1000"] * count) + b'],"data_offsets":[0,0]}}'
        made.append(("many values", join_safetensors(shape, b"")))
    emoji = json.dumps({"__metadata__": {"a": "\U0001F600" + "x" * (26 * 2**20)}}, ensure_ascii=False)
    made.append(("long non-ASCII header", join_safetensors(emoji.encode(), b"")))
    return tuple(made)


def _whole_files(kind, files, tmp_path):
    """(family, bytes or a path, REJECT): files that are not a file of the kind at all."""
    pick = np.random.default_rng(11)
    for size in (0, 1, 7, 8, 16, 4096, 2**20):
        yield "zeros", bytes(size), REJECT
    yield "0xff", b"\xff" * 100, REJECT
    for size in (9, 500, 65536):
        yield "random bytes", pick.bytes(size), REJECT
    yield "header only", join_safetensors({}, b""), REJECT
    for family, data in _large_headers():
        yield family, data, REJECT
    yield "foreign safetensors", join_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                   "__metadata__": {"format": "pt"}}, bytes(8)), REJECT
    other = _sequential_files if kind == "generative" else _generative_files
    sub = tmp_path / "other"
    sub.mkdir()
    for path, _ in other(sub):
        yield "the other kind's file", path.read_bytes(), REJECT
    npz = tmp_path / "old.npz"
    np.savez(npz, __meta__=np.array("{}"), **{"w/W": np.zeros(3)})
    yield "npz", npz.read_bytes(), REJECT
    sparse = tmp_path / "sparse.safetensors"  # 16 MiB of zeros claiming a 16 MiB header
    with open(sparse, "wb") as f:
        f.write((16 * 2**20).to_bytes(8, "little"))
        f.truncate(16 * 2**20 + 8)
    yield "zeros with a long header", sparse, REJECT
    yield "directory", sub, REJECT
    if hasattr(os, "mkfifo") and os.path.exists("/dev/zero"):
        fifo = tmp_path / "fifo.safetensors"
        os.mkfifo(fifo)
        yield "FIFO", fifo, REJECT
        link = tmp_path / "zero.safetensors"
        os.symlink("/dev/zero", link)
        for path in (link, "/dev/zero", "/dev/null"):
            yield "device", path, REJECT


# ---------------------------------------------------------------------------------------------- the test

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hostile_files_are_rejected_or_load_the_same_model(kind, tmp_path, monkeypatch):
    make, load, same = KINDS[kind]
    files = make(tmp_path)
    pick = np.random.default_rng(SEED)
    cases = []
    with monkeypatch.context() as fast:
        fast.setattr(os, "fsync", lambda fd: None)  # the files made here need not reach the disk
        for path, model in files:
            blob = path.read_bytes()
            for family, data, expect in [*_random_mutations(blob, pick, RANDOM_FILES), *_length_fields(blob),
                                         *_header_edits(blob, pick), *_semantic_edits(kind, path, tmp_path)]:
                cases.append((family, data, expect, model))
        cases += [(family, data, expect, files[0][1]) for family, data, expect in _whole_files(kind, files, tmp_path)]
    sample = DEFAULT_FILES[kind]
    if not LONG and len(cases) > sample:  # every file that must load, and a sample of the others
        must = [i for i, case in enumerate(cases) if case[2] == SAME]
        rest = [i for i, case in enumerate(cases) if case[2] != SAME]
        chosen = sorted(must + list(pick.choice(rest, sample - len(must), replace=False)))
        cases = [cases[i] for i in chosen]

    counts = collections.defaultdict(collections.Counter)
    worst_seconds, worst_bytes, failures = 0.0, 0, []
    target = tmp_path / "hostile.safetensors"
    tracemalloc.start()
    try:
        for i, (family, data, expect, model) in enumerate(cases):
            if isinstance(data, bytes):
                target.unlink(missing_ok=True)  # a new file each time (writing over one makes ext4 flush it: slow)
                target.write_bytes(data)
                path, size = target, len(data)
            else:
                path = data
                size = os.path.getsize(path) if os.path.isfile(path) else 0
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            start = time.perf_counter()
            try:
                loaded, error = load(path), None
            except ValueError as e:
                loaded, error = None, e
            except Exception as e:  # noqa: BLE001 - any other type is a failure, reported below with the case
                failures.append(f"case {i} ({family}): {type(e).__name__}: {e}"[:400])
                continue
            seconds = time.perf_counter() - start
            extra = tracemalloc.get_traced_memory()[1] - before
            worst_seconds, worst_bytes = max(worst_seconds, seconds), max(worst_bytes, extra - size)
            if seconds > SECONDS or extra > size + EXTRA_BYTES:
                failures.append(f"case {i} ({family}): {seconds:.2f} s, {extra / 2**20:.1f} MiB for a file of "
                                f"{size} bytes")
            if error is not None:
                counts[family]["rejected"] += 1
                if os.fspath(path) not in str(error):
                    failures.append(f"case {i} ({family}): the message does not name the file: {error}")
                if expect == SAME:
                    failures.append(f"case {i} ({family}): a file of the same model was rejected: {error}")
            else:
                counts[family]["same model"] += 1
                if expect == REJECT or not same(loaded, model):
                    failures.append(f"case {i} ({family}): loaded " + ("a different model" if not same(loaded, model)
                                                                        else "a file that must be rejected"))
    finally:
        tracemalloc.stop()
    rejected = sum(c["rejected"] for c in counts.values())
    print(f"\n{kind}: {len(cases)} hostile files, {rejected} rejected, {len(cases) - rejected} loaded the same model; "
          f"at most {worst_seconds * 1e3:.1f} ms and {worst_bytes / 2**20:.2f} MiB beyond the file's size per file")
    for family, c in sorted(counts.items()):
        print(f"  {family:28s} {sum(c.values()):5d}  " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    assert not failures, f"{len(failures)} of {len(cases)} files:\n" + "\n".join(failures[:40])
    assert len(cases) >= (1000 if LONG else sample)
