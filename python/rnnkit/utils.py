"""Data utilities with Keras 3's names, arguments and defaults: ``pad_sequences`` and ``to_categorical``.

Both follow ``keras.utils`` (Keras 3) for every valid input, and raise ``ValueError`` / ``TypeError`` naming
the argument for input Keras would silently misread or fail on with an unrelated NumPy error (negative or
out-of-range class ids, fractional class ids, a bad ``padding`` or ``maxlen``, ragged samples).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["pad_sequences", "to_categorical", "set_random_seed"]


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Pads (and truncates) a list of sequences to one length: ``[num_samples, maxlen, *sample_shape]``.

    sequences: a list (anything with ``len``) of sequences (lists or arrays of L_n samples, each a scalar or
    an array of one shape, taken from the first non-empty sequence). maxlen: the output length; None: the
    longest sequence's (0 for no sequences). dtype: the output dtype (``object`` for strings of any length).
    padding / truncating: "pre" or "post", where values are added to a short sequence and removed from a long
    one. value: the padding value (cast to ``dtype``).

    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2, padding="post")
    array([[1, 0],
           [2, 3],
           [5, 6]], dtype=int32)
    """
    if not hasattr(sequences, "__len__") or isinstance(sequences, (str, bytes)):
        raise ValueError(f"sequences: expected a list of sequences, got {type(sequences).__name__}")
    for name, where in (("padding", padding), ("truncating", truncating)):
        if not isinstance(where, str) or where not in ("pre", "post"):
            raise ValueError(f"{name}: expected 'pre' or 'post', got {where!r}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral)):
        raise TypeError(f"maxlen: expected an integer or None, got {maxlen!r}")
    if maxlen is not None and maxlen < 0:
        raise ValueError(f"maxlen: expected an integer >= 0 or None, got {maxlen!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: {dtype!r} is not a NumPy dtype ({e})") from None
    if isinstance(value, str) and dtype.kind not in "OUS":
        raise ValueError(f"dtype: {dtype} cannot hold the string padding value {value!r}; "
                         "use dtype=object for strings of any length")

    lengths, sample_shape, first = [], (), None
    for n, s in enumerate(sequences):
        try:
            if isinstance(s, (str, bytes)):
                raise TypeError
            lengths.append(len(s))
        except TypeError:
            raise ValueError(f"sequences: expected a list of sequences, but sequences[{n}] is {s!r:.80}") from None
        if first is None and len(s):
            sample_shape, first = _samples(s, n, None).shape[1:], n

    maxlen = int(max(lengths, default=0)) if maxlen is None else int(maxlen)
    try:
        x = np.full((len(lengths), maxlen, *sample_shape), value, dtype=dtype)
    except (ValueError, TypeError) as e:
        raise type(e)(f"value: {value!r:.80} cannot fill an array of dtype {dtype} ({e})") from None
    if maxlen == 0:
        return x
    for n, s in enumerate(sequences):
        if not lengths[n]:
            continue
        try:
            kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        except (TypeError, KeyError):
            raise ValueError(f"sequences: sequences[{n}] ({type(s).__name__}) cannot be sliced; "
                             "give lists or arrays") from None
        kept = _samples(kept, n, dtype)
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"sequences: the samples of sequences[{n}] have shape {kept.shape[1:]}, those of "
                             f"sequences[{first}] (the first non-empty one) {sample_shape}; they must be the same")
        if padding == "post":
            x[n, :len(kept)] = kept
        else:
            x[n, maxlen - len(kept):] = kept
    return x


def _samples(s, n, dtype):
    """sequences[n] (or a slice of it) as an array [L, *sample_shape]; ValueError naming it if it is ragged or
    its values do not convert to ``dtype``."""
    try:
        a = np.asarray(s) if dtype is None else np.asarray(s, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"sequences: sequences[{n}] is not a sequence of samples of one shape "
                         f"convertible to {'an array' if dtype is None else dtype} ({e})") from None
    if a.ndim == 0:
        raise ValueError(f"sequences: sequences[{n}] ({type(s).__name__}) is not an ordered sequence; "
                         "give lists or arrays")
    return a


def to_categorical(x, num_classes=None):
    """Class ids -> one-hot rows: ``x: [...]`` of integers in [0, num_classes) -> float64 ``[..., num_classes]``
    (a last axis of size 1 is dropped first: ``[N, 1]`` -> ``[N, num_classes]``, as in Keras).

    num_classes: the number of classes; None: ``max(x) + 1``. Whole-number floats (``2.0``) count as ids.

    >>> to_categorical([0, 2], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    given = np.asarray(x)
    if given.dtype.kind not in "biuf":
        raise TypeError(f"x: expected integer class ids, got dtype {given.dtype}")
    if given.dtype.kind == "f":
        if not np.isfinite(given).all() or not np.array_equal(given, np.round(given)):
            bad = given[~(np.isfinite(given) & (given == np.round(given)))].flat[0]
            raise ValueError(f"x: expected integer class ids, got the value {bad.item()!r}")
        if given.size and np.abs(given).max() >= 2.0**63:
            raise ValueError(f"x: class id {np.abs(given).max().item()!r} is beyond the int64 range")
    ids = given.astype(np.int64)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise TypeError(f"num_classes: expected a positive integer or None, got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes: expected a positive integer or None, got {num_classes!r}")
        num_classes = int(num_classes)
    if ids.size and ids.min() < 0:
        raise ValueError(f"x: class ids must be >= 0, got {ids.min()}")
    if num_classes is None:
        if not ids.size:
            raise ValueError("x: no class ids to infer num_classes from; pass num_classes")
        num_classes = int(ids.max()) + 1
    elif ids.size and ids.max() >= num_classes:
        raise ValueError(f"x: class ids must be < num_classes={num_classes}, got {ids.max()}")

    shape = ids.shape[:-1] if ids.ndim > 1 and ids.shape[-1] == 1 else ids.shape
    flat = ids.reshape(-1)
    categorical = np.zeros((flat.shape[0], num_classes))
    categorical[np.arange(flat.shape[0]), flat] = 1
    return categorical.reshape(*shape, num_classes)


def set_random_seed(seed):
    """Keras' ``keras.utils.set_random_seed``: seeds rnnkit's generator (``rnnkit.set_seed``), from which weights,
    dropout and shuffling draw."""
    from .random import set_seed

    set_seed(seed)
