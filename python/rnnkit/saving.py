"""The model file: the safetensors format, written and read with NumPy (no pickle, nothing executed).

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length ``n``, then
``n`` bytes of UTF-8 JSON ``{tensor name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' bytes (little-endian, C order), back to back. Tensors are
named ``<layer name>/<weight name>`` (e.g. ``lstm/W_ih``, PyTorch layout) and ``optimizer/<slot>``.
The metadata holds ``format`` = ``rnnkit.model``, ``architecture`` (the model's JSON config, rebuilt only
from rnnkit's own layer classes), ``compile`` (optimizer, loss and metric names as JSON) and
``data_sha256`` (a digest of the tensor bytes, so corruption is detected). Saving writes a temporary file in
the same directory, fsyncs it and renames it over ``path``: an existing file is replaced whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from . import __version__, losses, optimizers

__all__ = ["save_model", "load_model", "write_safetensors", "read_safetensors"]

FORMAT = "rnnkit.model"
FORMAT_VERSION = "1"
_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
           "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("<") if np.dtype(v).byteorder != "|" else np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20


def write_safetensors(path, tensors, metadata):
    """Writes ``tensors`` (name -> ndarray) and ``metadata`` (str -> str) to ``path`` atomically."""
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        code = _CODES.get(array.dtype.newbyteorder("<") if array.dtype.byteorder not in "|" else array.dtype)
        if code is None:
            raise TypeError(f"tensors: {name!r} has dtype {array.dtype}, which the format cannot hold")
        data = array.astype(np.dtype(_DTYPES[code]), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    data = b"".join(chunks)
    header["__metadata__"] = {**metadata, "data_sha256": hashlib.sha256(data).hexdigest()}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as the reference writer does
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_safetensors(path):
    """(tensors: name -> ndarray, metadata: str -> str) from ``path``; ValueError naming it when the file is
    not a complete, uncorrupted safetensors file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()

    def bad(reason):
        return ValueError(f"{path}: not a valid model file ({reason})")

    if len(blob) < 8:
        raise bad(f"{len(blob)} bytes: too short for a safetensors header; the file is truncated or empty")
    n = int.from_bytes(blob[:8], "little")
    if n > min(len(blob) - 8, _MAX_HEADER):
        raise bad(f"header length {n} exceeds the file's {len(blob) - 8} remaining bytes; truncated or not safetensors")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must map strings to strings")
    data = memoryview(blob)[8 + n:]
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: _offsets(kv[1])):
        try:
            dtype, shape = np.dtype(_DTYPES[info["dtype"]]), tuple(int(d) for d in info["shape"])
            begin, stop = _offsets(info)
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r} has a malformed entry {info!r:.200}") from None
        if begin != end or stop - begin != dtype.itemsize * int(np.prod(shape)) or min(shape, default=0) < 0:
            raise bad(f"tensor {name!r}: offsets {[begin, stop]} do not match its shape {list(shape)} "
                      f"and dtype {info['dtype']} or the previous tensor's end {end}")
        if stop > len(data):
            raise bad(f"tensor {name!r} ends at byte {stop} but the data has {len(data)} bytes; the file is truncated")
        tensors[name] = np.frombuffer(data[begin:stop], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        end = stop
    if end != len(data):
        raise bad(f"{len(data) - end} bytes after the last tensor")
    digest = metadata.get("data_sha256")
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise bad("the tensor data does not match its recorded sha256 digest; the file is corrupted")
    return tensors, metadata


def _offsets(info):
    begin, stop = info["data_offsets"] if isinstance(info, dict) else (None, None)
    return int(begin), int(stop)


def save_model(model, path, include_optimizer=True):
    """Writes ``model`` (a built Sequential) to ``path``; see the module docstring for the format."""
    model._require_built("save")
    tensors = {}
    for layer in model.layers:
        for name, w in zip(layer.weight_names, layer.weights):
            tensors[f"{layer.name}/{name}"] = w
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
                "architecture": json.dumps({"class_name": type(model).__name__, "config": model.get_config()})}
    if model.compiled:
        compile_config = {"loss": losses.serialize(model.loss),
                          "metrics": [name for name, fn in model.metrics if not _is_plain_callable(fn)],
                          "optimizer": optimizers.serialize(model.optimizer) if include_optimizer else None}
        metadata["compile"] = json.dumps(compile_config)
        if include_optimizer:
            for key, value in model.optimizer.get_state().items():
                tensors[f"optimizer/{key}"] = np.asarray(value)
    write_safetensors(path, tensors, metadata)


def _is_plain_callable(fn):
    from .metrics import Metric

    return not isinstance(fn, Metric)


def load_model(path, compile=True):
    """A Sequential read from ``path`` (written by ``model.save``), compiled as it was saved, with the
    optimizer state restored so training resumes exactly; ``compile=False`` skips that."""
    from .models import Sequential

    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: a safetensors file, but not an rnnkit model (metadata format is "
                         f"{metadata.get('format')!r}, expected {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model file format version {metadata.get('format_version')!r}; this rnnkit "
                         f"reads version {FORMAT_VERSION}")
    try:
        architecture = json.loads(metadata["architecture"])
        if architecture.get("class_name") != "Sequential":
            raise ValueError(f"unknown model class {architecture.get('class_name')!r}")
        model = Sequential.from_config(architecture["config"])
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{path}: the architecture in the file cannot be rebuilt: {e}") from None
    for layer in model.layers:
        arrays = []
        for name, w in zip(layer.weight_names, layer.weights):
            key = f"{layer.name}/{name}"
            if key not in tensors or tensors[key].shape != w.shape or tensors[key].dtype != w.dtype:
                got = "missing" if key not in tensors else f"{tensors[key].dtype}{list(tensors[key].shape)}"
                raise ValueError(f"{path}: weight {key!r} should be {w.dtype}{list(w.shape)}, the file has {got}")
            arrays.append(tensors[key])
        layer.set_weights(arrays)
    if compile and "compile" in metadata:
        config = json.loads(metadata["compile"])
        model.compile(optimizer=config["optimizer"] or "rmsprop", loss=config["loss"], metrics=config["metrics"])
        state = {k[len("optimizer/"):]: v for k, v in tensors.items() if k.startswith("optimizer/")}
        if config["optimizer"] is not None and state:
            model.optimizer.set_state(state)
    return model
