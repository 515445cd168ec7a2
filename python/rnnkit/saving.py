"""The model file: the safetensors format, written and read with NumPy (no pickle, nothing executed).

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length ``n``, then
``n`` bytes of UTF-8 JSON ``{tensor name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' bytes (little-endian, C order), back to back.

``write_safetensors`` / ``read_safetensors`` are the codec of every file rnnkit writes (the model file below and
the generative models' file of ``rnnkit.generative``):

- The metadata entry ``sha256`` is a digest of the metadata (all of it but this entry) and of every tensor by
  name (its name, dtype, shape and bytes), each in sorted order: it does not depend on where the tensors lie in
  the file or on the order of the header's keys, so a file re-written by the ``safetensors`` library with the
  same tensors and metadata stays valid. The writer always adds it; the reader checks it when it is there, and
  an rnnkit file (metadata ``format`` ``rnnkit.model`` or ``rnnkit.generative``) without it is rejected.
- Reading is bounded by the file. Only a regular file is opened (not a FIFO or a device such as /dev/zero); the
  8-byte length is checked against the file's size and only the header is read (at most 100 MiB, 25 MiB unless
  ASCII, and 200,000 JSON values, so that parsing it takes bounded time and memory) before every entry is
  checked (a known dtype, a shape of at most 32 non-negative integers, offsets that tile the data exactly, no
  duplicate keys, JSON nested at most a few levels); only then are the tensors read, straight into their
  arrays, so nothing larger than the file is allocated. Every problem with the file is a ValueError naming it and saying
  what is wrong (a missing or unreadable file stays an OSError).
- Writing is atomic: the bytes go to a temporary ``.<name>.rnnkit-tmp-<random>`` in the target's directory, are
  flushed to disk and the temporary is renamed over the target, so the target holds the old file or the new
  one, whole, whatever happens (an exception, a kill, a power loss). The new file gets the mode a plain
  ``open(path, "wb")`` would give it: the permission bits of the file it replaces, else ``0o666`` less the
  umask. A failed save removes its temporary. One left by a killed process is removed by the next save of the
  same target: a save holds an exclusive ``flock`` on its temporary until the rename, and removes the
  temporaries of its target that nobody holds (where files cannot be locked, those older than an hour).

The model file (``save_model`` / ``load_model``): tensors ``<layer name>/<weight name>`` (e.g. ``lstm/W_ih``,
PyTorch layout; ``<bidirectional>/forward/W_ih`` and ``.../backward/...`` for a wrapped layer) and the optimizer's
state ``optimizer/<slot>``; metadata ``format`` = ``rnnkit.model``, ``format_version`` = ``2``,
``rnnkit_version``, ``architecture`` (the model's JSON config, rebuilt only from rnnkit's own layer classes),
``compile`` (optimizer, loss and metric names as JSON) and ``sha256``. Loading checks each weight the
architecture declares against the stored tensor of its name (shape and dtype) as the layers are built
(``rnnkit.layers.base.weights_from``), and the stored arrays become the weights: no initializer runs, and what a
file makes rnnkit allocate is bounded by its own size. Every stored tensor must be a weight of the architecture
or the optimizer's state (checked against the weights it belongs to), and the rebuilt model's configuration must
say what the stored one says (no value of another type, none that another overrides). Files of version 1 (whose
digest, ``data_sha256``, covered only the tensor bytes) are still read, with that digest required.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import stat
import time

import numpy as np

from . import __version__, losses, optimizers
from .engine.serialization import (custom_object_scope, get_registered_name, get_registered_object,
                                   register_serializable)

register_keras_serializable = register_serializable  # Keras' name

try:
    import fcntl
except ImportError:  # no flock (Windows): stale temporaries are recognised by their age
    fcntl = None

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_serializable",
           "register_keras_serializable", "get_registered_name", "get_registered_object", "custom_object_scope",
           "write_safetensors", "read_safetensors"]

FORMAT = "rnnkit.model"
FORMAT_VERSION = "2"
DIGEST = "sha256"
WEIGHTS_FORMAT = "rnnkit.weights"
WEIGHTS_VERSION = "1"
_LOADERS = {FORMAT: "rnnkit.load_model", "rnnkit.generative": "rnnkit.generative.load",
            WEIGHTS_FORMAT: "model.load_weights"}
_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
           "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("=") if np.dtype(v).byteorder != "|" else np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # bytes, as the safetensors library
_MAX_HEADER_ITEMS = 200_000  # commas, colons and brackets: a bound on the header's JSON values (~0.2 s to parse)
_MAX_RANK = 32  # NumPy 1.x's limit
_MAX_DEPTH = 32  # nesting of lists and objects in the metadata's JSON (a model's architecture needs about 8)
_TEMPORARY = ".rnnkit-tmp-"  # a temporary of target <name> is .<name>.rnnkit-tmp-<8 hex digits>
_STALE_AFTER = 3600.0  # seconds: the age of an unlockable temporary that the next save removes
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class _FileError(ValueError):
    """A ValueError about the file at ``path``: ``"<path>: <reason>"``."""

    def __init__(self, path, reason):
        super().__init__(f"{os.fspath(path)}: {_short(reason)}")


def _short(text, limit=2000):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


# ---------------------------------------------------------------------------------------------- the codec

def write_safetensors(path, tensors, metadata):
    """Writes ``tensors`` (name -> ndarray) and ``metadata`` (str -> str) to ``path`` atomically, with the
    ``sha256`` digest added to the metadata (see the module docstring)."""
    entries = []
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensors: {name!r} cannot name a tensor (a str other than '__metadata__' can)")
        array = np.asarray(array)
        code = _CODES.get(array.dtype.newbyteorder("=") if array.dtype.byteorder != "|" else array.dtype)
        if code is None:
            raise TypeError(f"tensors: {name!r} has dtype {array.dtype}, which the format cannot hold")
        entries.append((name, code, np.asarray(array, dtype=np.dtype(_DTYPES[code]), order="C")))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("metadata: expected a dict of str to str")
    metadata = {**metadata, DIGEST: _digest(metadata, [(n, c, a.shape, _bytes(a)) for n, c, a in entries])}
    entries.sort(key=lambda e: (-e[2].dtype.itemsize, e[0]))  # larger items first: every tensor stays aligned
    header, offset = {}, 0
    for name, code, array in entries:
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as the reference writer does
    _write_atomically(path, [len(head).to_bytes(8, "little"), head, *(_bytes(a) for _, _, a in entries)])


def read_safetensors(path):
    """(tensors: name -> ndarray, metadata: str -> str) from ``path``, the digest checked when the metadata has
    one; ValueError naming the file when it is not a complete, uncorrupted safetensors file."""
    tensors, metadata, _ = _read(path)
    return tensors, metadata


def _bytes(array):
    """The bytes of a C-contiguous array, as a flat uint8 view (no copy)."""
    return array.reshape(-1).view(np.uint8)


def _utf8(text):
    return text.encode("utf-8", "surrogatepass")  # JSON strings may hold lone surrogates


def _digest(metadata, tensors):
    """The ``sha256`` entry: SHA-256 over the metadata but this entry, sorted by key, then the tensors
    ``(name, dtype code, shape, bytes)`` sorted by name, every field prefixed with its length."""
    h = hashlib.sha256(b"rnnkit safetensors digest 1")

    def field(data):
        h.update(memoryview(data).nbytes.to_bytes(8, "little"))
        h.update(data)

    items = sorted((k, v) for k, v in metadata.items() if k != DIGEST)
    field(b"%d" % len(items))
    for key, value in items:
        field(_utf8(key))
        field(_utf8(value))
    field(b"%d" % len(tensors))
    for name, code, shape, data in sorted(tensors, key=lambda t: t[0]):
        field(_utf8(name))
        field(code.encode())
        field(b"%d" % len(shape) + b"".join(d.to_bytes(8, "little") for d in shape))
        field(data)
    return h.hexdigest()


def _read(path):
    """(tensors, metadata, tensor names in file order) from ``path`` (see ``read_safetensors``)."""
    path = os.fspath(path)

    def bad(reason):
        return _FileError(path, f"not a valid model file ({reason})")

    mode = os.stat(path).st_mode  # (opening a FIFO could wait forever, a device could give bytes forever)
    if not stat.S_ISREG(mode):
        raise bad(f"not a regular file but {_kind(mode)}")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _OPEN_FLAGS)
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # replaced since the check above
            raise bad(f"not a regular file but {_kind(st.st_mode)}")
        size = st.st_size
        if size < 8:
            raise bad(f"{size} bytes: too short for a safetensors header; the file is truncated or empty")
        n = int.from_bytes(_read_exactly(f, 8, bad), "little")
        if n > size - 8:
            raise bad(f"header length {n} exceeds the file's {size - 8} remaining bytes; truncated or not safetensors")
        if n > _MAX_HEADER:
            raise bad(f"header length {n} exceeds the format's limit of {_MAX_HEADER} bytes")
        text = _read_exactly(f, n, bad)
        if not text.startswith(b"{"):
            raise bad(f"the header starts with {bytes(text[:16])!r}, not with a JSON object's '{{'")
        items = sum(text.count(c) for c in (b",", b":", b"[", b"{"))
        if items > _MAX_HEADER_ITEMS:  # its Python objects would take many times the header's size, and seconds
            raise bad(f"the header holds up to {items} JSON values; this reader takes at most {_MAX_HEADER_ITEMS}")
        if n > _MAX_HEADER // 4 and not text.isascii():  # decoded, each character could take 4 bytes
            raise bad(f"a header of {n} bytes with non-ASCII text; this reader takes at most {_MAX_HEADER // 4}")
        header = _parse_json(text, bad, "the header", max_depth=3)
        if not isinstance(header, dict):
            raise bad(f"the header is {_what(header)}, not a JSON object")
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad("__metadata__ must map strings to strings")
        entries = sorted((_entry(name, info, bad) for name, info in header.items()), key=lambda e: e[4:])
        end, data_size = 0, size - 8 - n
        for name, _, _, _, begin, stop in entries:
            if begin != end:
                raise bad(f"tensor {name!r} starts at byte {begin} of the data, but the tensors before it end at "
                          f"{end}; tensors must lie back to back without overlapping")
            end = stop
        if end != data_size:
            raise bad(f"the tensors end at byte {end} of the data, but the file holds {data_size} bytes of data"
                      + ("; the file is truncated" if end > data_size else ""))
        raw = {}
        for name, _, dtype, shape, _, _ in entries:  # every size is now bounded by the file's
            raw[name] = np.empty(shape, dtype)
            _read_exactly(f, raw[name].nbytes, bad, into=_bytes(raw[name]))
    if DIGEST in metadata and metadata[DIGEST] != _digest(metadata, [(name, code, shape, _bytes(raw[name]))
                                                                     for name, code, _, shape, _, _ in entries]):
        raise bad(f"the metadata and tensors do not match the recorded {DIGEST} digest; the file is corrupted")
    tensors = {name: a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("=")) for name, a in raw.items()}
    return tensors, metadata, [e[0] for e in entries]


def _le(array):
    """``array`` with its bytes in little-endian order (itself on a little-endian machine)."""
    little = array.dtype.byteorder in "<|" or (array.dtype.byteorder == "=" and np.little_endian)
    return array if little else array.astype(array.dtype.newbyteorder("<"))


def _entry(name, info, bad):
    """(name, dtype code, dtype, shape, begin, end) of a header entry, every field checked."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        keys = sorted(info) if isinstance(info, dict) else None
        raise bad(f"tensor {name!r}: expected an entry with the keys dtype, shape and data_offsets, got "
                  + (f"the keys {keys}" if keys is not None else _what(info)))
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _DTYPES:
        raise bad(f"tensor {name!r}: dtype {_what(code)} is not one of {sorted(_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > _MAX_RANK or not all(_is_size(d) for d in shape):
        raise bad(f"tensor {name!r}: the shape must be a list of at most {_MAX_RANK} non-negative integers, got "
                  f"{_what(shape)}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_size(o) for o in offsets) \
            or offsets[0] > offsets[1]:
        raise bad(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end, got {_what(offsets)}")
    dtype = np.dtype(_DTYPES[code])
    if math.prod(shape) * dtype.itemsize != offsets[1] - offsets[0]:
        raise bad(f"tensor {name!r}: offsets {offsets} hold {offsets[1] - offsets[0]} bytes, but its shape "
                  f"{shape} and dtype {code} take {math.prod(shape) * dtype.itemsize}")
    return name, code, dtype, tuple(shape), offsets[0], offsets[1]


def _is_size(value):
    return type(value) is int and value >= 0


def _what(value, limit=120):
    """A short description of a JSON value for an error message."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value) if _depth(value) <= _MAX_DEPTH else f"a {type(value).__name__} nested too deeply"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(mode):
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _read_exactly(f, n, bad, into=None):
    """``n`` bytes from ``f`` (into the writable buffer ``into`` when given)."""
    buffer = memoryview(bytearray(n) if into is None else into)
    got = 0
    while got < n:
        k = f.readinto(buffer[got:])
        if not k:
            raise bad(f"the file ended {n - got} bytes early; it was truncated while being read")
        got += k
    return buffer.obj if into is None else into


def _parse_json(data, bad, what, max_depth=_MAX_DEPTH):
    """JSON text (str or UTF-8 bytes) as Python data: no duplicate keys, no NaN or Infinity, lists and objects
    nested at most ``max_depth`` deep."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise bad(f"{what} is not UTF-8: {e}") from None
    except RecursionError:
        raise bad(f"{what} nests lists or objects too deeply") from None
    except ValueError as e:
        raise bad(f"{what} is not valid JSON: {e}") from None
    if _depth(value) > max_depth:
        raise bad(f"{what} nests lists or objects more than {max_depth} deep")
    return value


def _object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {duplicate!r} appears twice in one object")
    return result


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _depth(value):
    """How deeply lists and objects nest in ``value`` (0 for a scalar), found without recursion."""
    depth, level = 0, [value] if isinstance(value, (dict, list)) else []
    while level:
        depth += 1
        children = (c.values() if isinstance(c, dict) else c for c in level)
        level = [v for vs in children for v in vs if isinstance(v, (dict, list))]
    return depth


# ---------------------------------------------------------------------------------------------- atomic writing

def _write_atomically(path, chunks):
    """Writes the bytes-like ``chunks`` to ``path``, whole or not at all (see the module docstring)."""
    path = os.fsdecode(os.fspath(path))
    directory, name = os.path.split(path)
    prefix = f".{name}{_TEMPORARY}"
    _remove_stale_temporaries(directory or ".", prefix)
    fd, tmp = _create_temporary(directory, prefix, path)
    with os.fdopen(fd, "wb") as f:  # closing it releases the lock, after the rename
        try:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _sync_directory(directory or ".")


def _create_temporary(directory, prefix, target):
    """(fd, path) of a new temporary beside ``target``, locked, with the mode ``open(target, "wb")`` would give."""
    try:
        existing = os.stat(target)
        mode = stat.S_IMODE(existing.st_mode) & 0o777 if stat.S_ISREG(existing.st_mode) else None
    except OSError:
        mode = None  # a new file: 0o666 less the umask, as open() creates it
    for _ in range(100):
        tmp = os.path.join(directory, prefix + secrets.token_hex(4))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | _OPEN_FLAGS, 0o666)
        except FileExistsError:
            continue
        if _lock(fd) and _same_file(tmp, fd):  # else another save's cleaning took it between open and lock
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            return fd, tmp
        os.close(fd)
    raise FileExistsError(f"{target}: could not create a temporary file {prefix}* beside it")


def _remove_stale_temporaries(directory, prefix):
    """Removes the temporaries ``<prefix>*`` in ``directory`` that no save is writing: those nobody holds a lock on
    (their writer was killed), or, without flock, those older than ``_STALE_AFTER``."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            if fcntl is None:
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER:
                    os.unlink(entry.path)
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | _OPEN_FLAGS)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode) and _lock(fd) and _same_file(entry.path, fd):
                    os.unlink(entry.path)
            finally:
                os.close(fd)


def _lock(fd):
    """True when this process now holds the exclusive lock on ``fd`` (always without flock)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(path, fd):
    try:
        a, b = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _sync_directory(directory):
    """Flushes the rename to disk (POSIX; elsewhere a directory cannot be opened, and nothing is needed)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | _OPEN_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------- rnnkit's files

def read_rnnkit_file(path, kind, version, what):
    """(tensors, metadata) of the rnnkit file at ``path``: its metadata ``format`` must be ``kind`` and its
    ``format_version`` ``version``, and its digest is required. ``what`` names the kind of file in error messages."""
    tensors, metadata, order = _read(path)
    found = metadata.get("format")
    if found != kind:
        hint = f"; read it with {_LOADERS[found]}" if found in _LOADERS else ""
        raise _FileError(path, f"a safetensors file, but not {what} (metadata format is {_what(found)}, "
                               f"expected {kind!r}){hint}")
    found = metadata.get("format_version")
    if kind == FORMAT and found == "1":  # written before the digest covered the metadata
        digest = hashlib.sha256()
        for name in order:
            digest.update(_bytes(_le(tensors[name])))
        if metadata.get("data_sha256") != digest.hexdigest():
            raise _FileError(path, "not a valid model file (the tensor data does not match its recorded "
                                   "data_sha256 digest, or it has none; the file is corrupted)")
        return tensors, metadata
    if found != version:
        raise _FileError(path, f"{what} of format version {_what(found)}; this rnnkit reads version {version}")
    if DIGEST not in metadata:
        raise _FileError(path, f"not a valid model file (the metadata has no {DIGEST!r} digest, which every file "
                               "rnnkit writes has; the file is damaged)")
    return tensors, metadata


def metadata_json(path, metadata, key):
    """The metadata entry ``key`` parsed as JSON (nested at most 32 deep); ValueError naming the file when it is
    missing or not JSON."""
    if key not in metadata:
        raise _FileError(path, f"not a valid model file (the metadata has no {key!r} entry)")
    return _parse_json(metadata[key], lambda reason: _FileError(path, f"not a valid model file ({reason})"),
                       f"the metadata's {key!r} entry")


def config_matches(stored, rebuilt):
    """True when every value of the ``stored`` JSON config is in ``rebuilt`` (a JSON-normalised ``get_config()``),
    of the same type: what a loader rebuilt from a file is what the file says (``rebuilt`` may have more keys,
    the defaults of options newer than the file)."""
    if isinstance(stored, dict):
        return isinstance(rebuilt, dict) and all(k in rebuilt and config_matches(v, rebuilt[k])
                                                 for k, v in stored.items())
    if isinstance(stored, list):
        return isinstance(rebuilt, list) and len(stored) == len(rebuilt) \
            and all(config_matches(a, b) for a, b in zip(stored, rebuilt))
    return type(stored) is type(rebuilt) and stored == rebuilt


# ---------------------------------------------------------------------------------------------- the model file

def _weight_tensors(model):
    """``<layer name>/<weight name>`` -> array, for every weight of ``model``'s layers."""
    return {f"{layer.name}/{name}": w for layer in model.layers for name, w in zip(layer.weight_names, layer.weights)}


def save_model(model, path, include_optimizer=True):
    """Writes ``model`` (a built Sequential, functional or subclassed model) to ``path``; see the module
    docstring for the format. ValueError, before anything is written, when the model holds a user's class that is
    not registered (``register_serializable``) or whose configuration does not rebuild it."""
    model._require_built("save")
    from .engine.serialization import serialize_layer
    from .models import Sequential

    if type(model) is Sequential:
        architecture = {"class_name": "Sequential", "config": model.get_config()}
        tensors = _weight_tensors(model)
    else:
        architecture = serialize_layer(model)
        _check_rebuilds(model)
        if model._graph is None:
            architecture["build_input_shape"] = _json_shapes(model._input_shapes)
        tensors = dict(weight_paths(model))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
                "architecture": json.dumps(architecture)}
    if model.compiled:
        metadata["compile"] = json.dumps(_compile_config(model, include_optimizer))
        if include_optimizer:
            for key, value in model.optimizer.get_state().items():
                tensors[f"optimizer/{key}"] = np.asarray(value)
    write_safetensors(path, tensors, metadata)


def weight_paths(model):
    """[(path, array)] for every weight of ``model`` once: ``<layer>/<weight>`` for a functional model's layers, a
    layer inside a model used as a layer prefixed by that model's name (``<model>/<layer>/<weight>``); the layers a
    subclassed model or a layer holds are named by the attribute that holds them (``blocks.0/W``), so the paths
    do not depend on the default names layers get."""
    from .models import Model

    found, seen = [], set()

    def visit(layer, key, prefix):
        if isinstance(layer, Model):
            inner = "" if prefix is None else f"{prefix}{key}/"
            children = [(child.name, child) for child in layer.layers] if layer._graph is not None \
                else layer.named_sublayers()
            for child_key, child in children:
                visit(child, child_key, inner)
            return
        for name, w in zip(layer.weight_names, layer.weights):
            if id(w) not in seen:
                seen.add(id(w))
                found.append((f"{prefix}{key}/{name}", w))
        for child_key, child in layer.named_sublayers():
            visit(child, child_key, f"{prefix}{key}/")

    visit(model, model.name, None)
    return found


def _check_rebuilds(model):
    """ValueError naming the first user's layer whose ``get_config`` does not rebuild it."""
    from .engine.serialization import get_registered_name

    for layer in model._all_layers():
        if get_registered_name(type(layer)) is None:
            continue
        try:
            type(layer).from_config(json.loads(json.dumps(layer.get_config())))
        except Exception as e:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__qualname__}) cannot be rebuilt from its "
                             f"get_config() ({type(e).__name__}: {e}); define get_config() to return every "
                             "constructor argument") from None


def _json_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: _json_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_json_shapes(s) for s in shapes]
    return list(shapes)


def _compile_config(model, include_optimizer):
    from .models import Sequential

    optimizer = optimizers.serialize(model.optimizer) if include_optimizer else None
    if type(model) is Sequential:
        return {"loss": losses.serialize(model.loss),
                "metrics": [name for name, fn in model.metrics if not _is_plain_callable(fn)],
                "optimizer": optimizer}
    from .engine.functional import flatten, pack_like

    loss, loss_weights, metrics = model._compile_spec

    def named(structure, serialize):
        leaves = flatten(structure)
        return pack_like(structure, [None if leaf is None else serialize(leaf) for leaf in leaves])

    def metric_name(m):
        return m if isinstance(m, str) else m.name if not _is_plain_callable(m) else None

    def loss_config(spec):  # a serialized loss (as a loaded model holds it) is one loss, not a dict of them
        if isinstance(spec, dict) and set(spec) != {"class_name", "config"}:
            return {k: loss_config(v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [loss_config(s) for s in spec]
        return None if spec is None else losses.serialize(losses.get(spec))

    metrics = named(metrics, metric_name) if metrics is not None else None
    if isinstance(metrics, list):
        metrics = [m for m in metrics if m is not None]
    return {"loss": loss_config(loss), "loss_weights": loss_weights,
            "metrics": metrics if metrics is not None else [], "optimizer": optimizer}


def _is_plain_callable(fn):
    from .metrics import Metric

    return not isinstance(fn, Metric)


class _Mismatch(ValueError):
    """A weight of the architecture that the stored tensors do not hold."""


def load_model(path, custom_objects=None, compile=True, safe_mode=True):
    """The model read from ``path`` (written by ``model.save``), compiled as it was saved, with the
    optimizer state restored so training resumes exactly; ``compile=False`` skips that. A user's classes in the
    model are found among the registered ones (``register_serializable``) and in ``custom_objects`` (name ->
    class); nothing is imported or executed from the file. ValueError naming the file for anything wrong with it
    (see the module docstring)."""
    from .layers.base import weights_from
    from .models import Sequential

    if isinstance(custom_objects, bool):  # load_model(path, False): the compile flag of older calls
        custom_objects, compile = None, custom_objects
    tensors, metadata = read_rnnkit_file(path, FORMAT, FORMAT_VERSION, "an rnnkit model")
    architecture = metadata_json(path, metadata, "architecture")
    if isinstance(architecture, dict) and architecture.get("class_name") != "Sequential" \
            and isinstance(architecture.get("config"), dict):
        model = _load_model_graph(path, tensors, architecture, custom_objects)
        return _compile_from_file(path, model, tensors, metadata, compile)
    if not isinstance(architecture, dict) or architecture.get("class_name") != "Sequential" \
            or not isinstance(architecture.get("config"), dict):
        found = architecture.get("class_name") if isinstance(architecture, dict) else architecture
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: expected a Sequential "
                               f"{{'class_name': 'Sequential', 'config': {{...}}}}, got model class {_what(found)}")
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer/")}
    used = set()

    folded = set()

    def stored(layer, name, shape, owners):
        key = _weight_key(layer, name, owners)
        array = weights.get(key)
        if array is None and name == "bias":
            array = _folded_bias(weights, key, used)
            folded.add(key)
        if array is None or key in used or array.shape != shape or array.dtype != layer.dtype:
            got = "none" if array is None else "it twice" if key in used else f"{array.dtype}{list(array.shape)}"
            raise _Mismatch(f"weight {key!r} should be {layer.dtype}{list(shape)}, the file has {got}")
        used.add(key)
        return array

    try:
        with weights_from(stored):
            model = Sequential.from_config(architecture["config"])
        rebuilt = json.loads(json.dumps(model.get_config()))
    except _Mismatch as e:
        raise _FileError(path, e) from None
    except Exception as e:  # the architecture is the file's data: whatever it breaks, the file is at fault
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: {type(e).__name__}: {e}") from None
    if not model.built:
        raise _FileError(path, "the architecture in the file has no input shape, so it cannot hold weights")
    if not config_matches(architecture["config"], rebuilt):
        raise _FileError(path, "the architecture in the file is not the one its layers rebuild from it (a value of "
                               "the wrong type, or one that another contradicts)")
    for layer in model.layers:
        for name, w in zip(layer.weight_names, layer.weights):
            if weights.get(f"{layer.name}/{name}") is not w and not any(k.startswith(f"{layer.name}/") for k in folded):
                raise _FileError(path, f"weight {layer.name}/{name} is not stored under that name")
    if set(weights) - used:
        raise _FileError(path, f"tensor {sorted(set(weights) - used)[0]!r} is not a weight of the architecture")
    if folded and compile and any(k.startswith("optimizer/") for k in tensors):
        raise _FileError(path, "the file was written when SimpleRNN, LSTM and GRU(reset_after=False) layers trained two "
                               "biases (b_ih, b_hh); its weights load, as one bias b_ih + b_hh, but its optimizer state "
                               "does not fit the layers any more: load it with compile=False and compile it again")
    return _compile_from_file(path, model, tensors, metadata, compile)


def _folded_bias(weights, key, used):
    """The one ``bias`` of a recurrent layer from a file of the two-bias layers: ``b_ih + b_hh``, both marked used;
    None when the file has not both."""
    prefix = key[:-len("bias")]
    b_ih, b_hh = weights.get(prefix + "b_ih"), weights.get(prefix + "b_hh")
    if b_ih is None or b_hh is None or b_ih.shape != b_hh.shape or b_ih.dtype != b_hh.dtype:
        return None
    used.update((prefix + "b_ih", prefix + "b_hh"))
    return b_ih + b_hh


def _compile_from_file(path, model, tensors, metadata, compile):
    """The model compiled with the file's settings and optimizer state (checked first)."""
    state = {k[len("optimizer/"):]: v for k, v in tensors.items() if k.startswith("optimizer/")}
    if "compile" not in metadata:
        if state:
            raise _FileError(path, "the file holds an optimizer state but no compile settings")
        return model
    config = metadata_json(path, metadata, "compile")
    keys = {"loss", "metrics", "optimizer"}
    if not isinstance(config, dict) or not keys <= set(config) <= keys | {"loss_weights"} \
            or not isinstance(config["metrics"], (list, dict)):
        raise _FileError(path, f"the compile settings must be an object with loss, metrics (a list) and "
                               f"optimizer, got {_what(config)}")
    if (config["optimizer"] is None) != (not state):
        raise _FileError(path, "the compile settings and the optimizer state disagree: "
                               + ("a state without an optimizer" if state else "an optimizer without its state"))
    if compile:
        try:
            extra = {"loss_weights": config["loss_weights"]} if "loss_weights" in config else {}
            model.compile(optimizer="rmsprop" if config["optimizer"] is None else config["optimizer"],
                          loss=config["loss"], metrics=config["metrics"], **extra)
            if state:
                _restore_optimizer(model, state)
        except Exception as e:
            raise _FileError(path, f"the compile settings in the file cannot be restored: {type(e).__name__}: "
                                   f"{e}") from None
    return model


def _load_model_graph(path, tensors, architecture, custom_objects):
    """A functional or subclassed model rebuilt from the file's architecture, its weights the stored tensors.

    The layers are built inside ``weights_from`` with weights that are zero-stride views (nothing drawn or
    allocated), at most as many values as the file stores, then each view is replaced, everywhere it is held, by
    the stored tensor of its path (``weight_paths``). The layers and ops tried on zero arrays while the graph is
    rebuilt are bounded by ``engine.functional.TRIAL_LIMIT`` (what they are given and, before they run, what they
    would make), and a graph's configuration must be the one the rebuilt model gives (no unused layer, no call or
    value more)."""
    from .engine.serialization import custom_object_scope, deserialize_layer
    from .layers.base import weights_from

    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer/")}
    budget, requested = sum(int(v.size) for v in weights.values()), [0]

    def placeholder(layer, name, shape, owners):
        requested[0] += math.prod(shape)
        if requested[0] > budget:
            raise _Mismatch(f"the architecture declares more weight values than the file's {budget} (at "
                            f"{layer.name}/{name}, shape {list(shape)})")
        return np.broadcast_to(np.zeros((), layer.dtype), shape)

    try:
        with weights_from(placeholder), custom_object_scope(custom_objects):
            model = deserialize_layer({k: v for k, v in architecture.items() if k != "build_input_shape"})
            if getattr(model, "_graph", True) is None:
                shapes = architecture.get("build_input_shape")
                if shapes is None:
                    raise _Mismatch("a subclassed model's file must record the shape of its inputs")
                shapes = _tuple_shapes(shapes)
                from .engine.functional import TRIAL_LIMIT, flatten

                values = sum(math.prod(1 if d is None else d for d in s)
                             for s in (shapes.values() if isinstance(shapes, dict) else
                                       shapes if isinstance(shapes, list) else [shapes]))
                if not all(d is None or (type(d) is int and d >= 0) for d in flatten(shapes)) \
                        or values > TRIAL_LIMIT:
                    raise _Mismatch(f"the recorded input shapes {_what(shapes)} are not shapes of at most "
                                    f"{TRIAL_LIMIT} values")
                model.build(shapes)
            # a graph's file says what its layers rebuild from it, and nothing else (no layer, call or value more)
            rebuilt = json.loads(json.dumps(model.get_config())) if getattr(model, "_graph", None) else None
    except _Mismatch as e:
        raise _FileError(path, e) from None
    except Exception as e:  # the architecture is the file's data: whatever it breaks, the file is at fault
        raise _FileError(path, f"the architecture in the file cannot be rebuilt: {type(e).__name__}: {e}") from None
    from .models import Model

    if not isinstance(model, Model):
        raise _FileError(path, f"the architecture in the file is a {type(model).__name__}, not a model")
    keys = {"class_name", "config"} | ({"registered_name"} if "registered_name" in architecture else set()) \
        | ({"build_input_shape"} if model._graph is None else set())
    if set(architecture) != keys:
        kind = "functional" if model._graph is not None else "subclassed"
        raise _FileError(path, f"the architecture in the file has the entries {sorted(architecture)}, a {kind} "
                               f"model's has {sorted(keys)}")
    if rebuilt is not None and not config_matches(architecture["config"], rebuilt):
        raise _FileError(path, "the architecture in the file is not the one its layers rebuild from it (a value of "
                               "the wrong type, one that another contradicts, or a layer or call outside the graph)")
    replace, used = {}, set()
    for key, view in weight_paths(model):
        array = weights.get(key)
        if array is None or array.shape != view.shape or array.dtype != view.dtype:
            got = "none" if array is None else f"{array.dtype}{list(array.shape)}"
            raise _FileError(path, f"weight {key!r} should be {view.dtype}{list(view.shape)}, the file has {got}")
        replace[id(view)] = array
        used.add(key)
    if set(weights) - used:
        raise _FileError(path, f"tensor {sorted(set(weights) - used)[0]!r} is not a weight of the architecture")
    _replace_arrays(model, replace)
    return model


def _tuple_shapes(shapes):
    if isinstance(shapes, dict):
        return {k: _tuple_shapes(v) for k, v in shapes.items()}
    if isinstance(shapes, list) and shapes and isinstance(shapes[0], (list, dict)):
        return [_tuple_shapes(s) for s in shapes]
    return tuple(shapes)


def _replace_arrays(model, replace):
    """Every reference a layer holds to an array in ``replace`` (by id) now points at its replacement."""
    from .models import Model

    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        held = layer.__dict__.get("weights")
        if isinstance(held, list):
            for i, w in enumerate(held):
                if id(w) in replace:
                    held[i] = replace[id(w)]
        for variable in layer.__dict__.get("_variables", ()):
            if id(variable.value) in replace:
                variable.value = replace[id(variable.value)]
        stack.extend(layer.layers if isinstance(layer, Model) else ())
        stack.extend(layer.sublayers())


def _weight_key(layer, name, owners):
    """The file's name of ``layer``'s weight ``name``: ``<layer>/<name>`` for a model's own layers; a layer that a
    Bidirectional builds is its forward or backward layer, whose weights it calls ``forward/<name>`` and
    ``backward/<name>``."""
    if not owners:
        return f"{layer.name}/{name}"
    outer = owners[-1]
    roles = [role for role in ("forward", "backward") if getattr(outer, f"{role}_layer", None) is layer]
    if not roles:
        raise _Mismatch(f"layer {layer.name!r}, built by {outer.name!r}, has no weights in the model file")
    return _weight_key(outer, f"{roles[0]}/{name}", owners[:-1])


def _restore_optimizer(model, state):
    """Checks the stored optimizer state against the model's trainable weights, then restores it."""
    iterations = state.get("iterations")
    if iterations is None or iterations.shape != () or iterations.dtype != np.int64 or iterations < 0:
        raise ValueError("optimizer/iterations must be a non-negative int64 scalar, got "
                         + ("none" if iterations is None else f"{iterations.dtype}{list(iterations.shape)}"))
    variables = model.trainable_weights
    slots = {k: v for k, v in state.items() if k != "iterations"}
    count = len({key.partition("/")[0] for key in slots})
    for key, value in slots.items():
        i = key.partition("/")[0]
        w = variables[int(i)] if count == len(variables) and i.isdecimal() and int(i) < count else None
        if value.dtype.kind != "f" or (w is not None and (value.shape != w.shape or value.dtype != w.dtype)):
            raise ValueError(f"optimizer slot {key!r} is {value.dtype}{list(value.shape)}"
                             + (f", but its weight is {w.dtype}{list(w.shape)}" if w is not None else ""))
    model.optimizer.set_state(state)


# ---------------------------------------------------------------------------------------------- the weights file

def save_weights(model, path, overwrite=True):
    """Writes the weights of ``model`` (built) to ``path``: the model file's tensors (``<layer name>/<weight
    name>``) and their names in order, without the architecture or the optimizer, atomically and with the digest,
    as ``save_model``."""
    model._require_built("save_weights")
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path}: exists, and overwrite=False")
    from .models import Sequential

    if type(model) is Sequential:
        tensors, order = _weight_tensors(model), {"layers": json.dumps([layer.name for layer in model.layers])}
    else:
        pairs = weight_paths(model)
        tensors, order = dict(pairs), {"weights": json.dumps([key for key, _ in pairs])}
    metadata = {"format": WEIGHTS_FORMAT, "format_version": WEIGHTS_VERSION, "rnnkit_version": __version__, **order}
    write_safetensors(path, tensors, metadata)


def load_weights(model, path):
    """Sets the weights of ``model`` (built, with the architecture they were saved from) from the weights file at
    ``path``. Layers (weights, for a model other than Sequential) are matched by position, so a model built again
    with other default layer names loads them; every weight's shape and dtype is checked before any is set
    (ValueError naming the file)."""
    model._require_built("load_weights")
    tensors, metadata = read_rnnkit_file(path, WEIGHTS_FORMAT, WEIGHTS_VERSION, "an rnnkit weights file")
    from .models import Sequential

    if type(model) is not Sequential:
        keys = metadata_json(path, metadata, "weights")
        own = weight_paths(model)
        if not isinstance(keys, list) or len(keys) != len(own) or set(keys) != set(tensors):
            raise _FileError(path, f"the file holds {len(tensors)} weights, the model has {len(own)}")
        for key, (name, w) in zip(keys, own):
            t = tensors[key]
            if t.shape != w.shape or t.dtype != w.dtype:
                raise _FileError(path, f"weight {name!r} needs {w.dtype}{list(w.shape)}, the file's {key!r} is "
                                       f"{t.dtype}{list(t.shape)}")
        for key, (_, w) in zip(keys, own):
            w[...] = tensors[key]
        return
    names = metadata_json(path, metadata, "layers")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != len(model.layers):
        raise _FileError(path, f"the weights are of {len(names) if isinstance(names, list) else 'no'} layers, the "
                               f"model has {len(model.layers)}")
    arrays, used = [], set()
    for stored_name, layer in zip(names, model.layers):
        layer_arrays = []
        for name, w in zip(layer.weight_names, layer.weights):
            key = f"{stored_name}/{name}"
            t = tensors.get(key)
            if t is None or t.shape != w.shape or t.dtype != w.dtype:
                got = "none" if t is None else f"{t.dtype}{list(t.shape)}"
                raise _FileError(path, f"layer {layer.name!r} needs {key!r} of {w.dtype}{list(w.shape)}, the file has "
                                       f"{got}")
            layer_arrays.append(t)
            used.add(key)
        arrays.append(layer_arrays)
    if set(tensors) - used:
        raise _FileError(path, f"tensor {sorted(set(tensors) - used)[0]!r} is not a weight of the model")
    for layer, layer_arrays in zip(model.layers, arrays):
        layer.set_weights(layer_arrays)
