"""Helpers the tests share, imported as ``from helpers import ...`` (pytest puts tests/ on sys.path, as it does
for conftest.py, which keeps the fixtures)."""

import contextlib
import importlib.util
import os

import numpy as np
import pytest


def central_differences(loss, arrays, eps=1e-6, entries=None, seed=0):
    """Central differences (loss(a + eps) - loss(a - eps)) / (2 eps) of the scalar ``loss()`` with respect
    to the entries of each array, each changed in place and then restored: every entry, or up to ``entries``
    of each array chosen at random (``seed``), NaN marking the entries not probed."""
    pick = np.random.default_rng(seed)
    grads = []
    for a in arrays:
        g = np.full(a.shape, np.nan)
        probe = range(a.size) if entries is None else pick.choice(a.size, size=min(entries, a.size), replace=False)
        for i in probe:
            old = a.flat[i]
            a.flat[i] = old + eps
            plus = loss()
            a.flat[i] = old - eps
            minus = loss()
            a.flat[i] = old
            g.flat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


@contextlib.contextmanager
def rnnkit_threads(n, split="units"):
    """rnnkit's kernels on n threads, even for problems too small to be worth it (so that tests of small
    problems cover the multi-threaded paths), sharing each step of the recurrence as `split` says ("units",
    "rows" or "auto": by the problem's size); restores every setting."""
    import rnnkit
    from rnnkit import _isa

    previous, small, step = rnnkit.get_num_threads(), _isa.current._split_small_calls(n > 1), _isa.current._step_split(split)
    rnnkit.set_num_threads(n)
    try:
        yield
    finally:
        rnnkit.set_num_threads(previous)
        _isa.current._split_small_calls(small)
        _isa.current._step_split(step)


def split_safetensors(blob):
    """(header: dict, data: bytes) of the bytes of a safetensors file."""
    import json

    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join_safetensors(header, data, order=None, pad=True):
    """The bytes of a safetensors file: ``header`` (a dict, or JSON bytes taken as they are) and ``data``; with
    ``order`` (tensor names), the tensors are moved to lie in that order (offsets and bytes), the header's keys
    too. ``pad`` aligns the data to 8 bytes with spaces, as the reference writer does."""
    import json

    if order is not None:
        header, chunks, offset = dict(header), [], 0
        for name in order:
            begin, end = header[name]["data_offsets"]
            chunks.append(data[begin:end])
            header[name] = {**header[name], "data_offsets": [offset, offset + end - begin]}
            offset += end - begin
        header = {**{name: header[name] for name in order}, **{k: v for k, v in header.items() if k not in order}}
        data = b"".join(chunks)
    head = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + data


def import_keras():
    """Keras 3 on its NumPy backend, for the parity tests: a skip without it, unless RNNKIT_REQUIRE_KERAS=1 (CI),
    which makes a missing or unusable Keras an error. KERAS_BACKEND is read once, when keras is first imported."""
    os.environ["KERAS_BACKEND"] = "numpy"
    required = os.environ.get("RNNKIT_REQUIRE_KERAS") == "1"
    if required:
        import keras  # fail loudly: the parity tests must run
    else:
        # ImportError too, not only a missing keras: its NumPy backend fails to import without jax
        keras = pytest.importorskip("keras", reason="Keras 3 with its NumPy backend (pip install keras jax)",
                                    exc_type=ImportError)
    if keras.backend.backend() != "numpy":  # keras was imported earlier in this process with another backend
        if required:
            raise RuntimeError(f"keras runs the {keras.backend.backend()!r} backend; these tests need 'numpy' "
                               "(set KERAS_BACKEND=numpy before keras is imported)")
        pytest.skip(f"keras runs the {keras.backend.backend()!r} backend, not 'numpy'", allow_module_level=True)
    if not keras.__version__.startswith("3."):
        raise RuntimeError(f"these tests compare with Keras 3, got keras {keras.__version__}")
    return keras


def check_model_gradients(model, x, rng, entries=5):
    """The tape's gradient of sum(R * outputs) for every trainable weight of ``model`` equals central differences
    (float64: a model of float64 layers); returns the tape's gradients."""
    from rnnkit.engine.functional import flatten

    values, _ = model._forward(model._check_x(x), training=True)
    R = [rng.standard_normal(v.shape) for v in values]
    model._backward(R)
    analytic = [g for g, _ in model._gradient_pairs()]
    weights = model.trainable_weights
    assert weights and len(analytic) == len(weights)

    def loss():
        return sum(float((r * o).sum()) for r, o in zip(R, flatten(model.predict(x))))

    for a, n in zip(analytic, central_differences(loss, weights, entries=entries)):
        probe = ~np.isnan(n)
        np.testing.assert_allclose(a[probe], n[probe], rtol=1e-6, atol=1e-8)
    return analytic


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    """The module examples/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
