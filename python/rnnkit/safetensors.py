"""The safetensors codec of every file rnnkit writes (the model and weights files of ``rnnkit.saving``, the
generative models' file of ``rnnkit.generative``), with NumPy only (no pickle, nothing executed).

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length ``n``, then
``n`` bytes of UTF-8 JSON ``{tensor name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' bytes (little-endian, C order), back to back.

- The metadata entry ``sha256`` is a digest of the metadata (all of it but this entry) and of every tensor by
  name (its name, dtype, shape and bytes), each in sorted order: it does not depend on where the tensors lie in
  the file or on the order of the header's keys, so a file re-written by the ``safetensors`` library with the
  same tensors and metadata stays valid. The writer always adds it; the reader checks it when it is there, and
  an rnnkit file (metadata ``format`` ``rnnkit.model`` or ``rnnkit.generative``) without it is rejected
  (``rnnkit.saving.read_rnnkit_file``).
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

This module knows the format only: nothing here imports rnnkit's models or layers.
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

try:
    import fcntl
except ImportError:  # no flock (Windows): stale temporaries are recognised by their age
    fcntl = None

__all__ = ["write_safetensors", "read_safetensors"]

DIGEST = "sha256"
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
