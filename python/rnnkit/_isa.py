"""Chooses the compiled kernel module for this CPU.

The kernels are built for several instruction sets, each as its own extension
module: ``_core`` (baseline x86-64, or the only one elsewhere), ``_core_avx2``
(AVX2 + FMA) and ``_core_avx512``. At import the best one this CPU runs is chosen;
the environment variable ``RNNKIT_ISA`` (``baseline``, ``avx2``, ``avx512``) forces one.

``RNNKIT_CORE_DIR=<directory>`` loads the compiled modules from that directory instead of the package's
own, e.g. a sanitizer build of ``_core`` alone (``.ci/sanitize``); only the modules found there are available.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import operator
import os
import sys


def _import(name):
    """The compiled module `name` (``_core``, ...): the package's own, or the one in $RNNKIT_CORE_DIR."""
    directory = os.environ.get("RNNKIT_CORE_DIR")
    if not directory:
        return importlib.import_module(f"{__package__}.{name}")
    qualified = f"{__package__}.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(directory, name + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(qualified, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[qualified] = module
            return module
    raise ImportError(f"RNNKIT_CORE_DIR: no compiled module {name} in {directory!r}")


_baseline = _import("_core")

MODULES = {"baseline": "_core", "avx2": "_core_avx2", "avx512": "_core_avx512"}
_PREFERENCE = ("avx512", "avx2", "baseline")
_loaded = {"baseline": _baseline}
MAX_THREADS = _baseline.MAX_THREADS


def _module(isa):
    if isa not in _loaded:
        _loaded[isa] = _import(MODULES[isa])
        _loaded[isa].set_num_threads(_baseline.get_num_threads())
    return _loaded[isa]


def compiled():
    """The instruction sets this build has kernels for."""
    found = []
    for isa in MODULES:
        try:
            _module(isa)
        except ImportError:
            continue
        found.append(isa)
    return found


def available():
    """The instruction sets this build has kernels for and this CPU can run, best first."""
    have = compiled()
    return [isa for isa in _PREFERENCE if isa in have and _baseline.cpu_supports(isa)]


def use(isa):
    """Make the kernels built for `isa` the ones rnnkit calls."""
    global current, name
    if isa not in MODULES:
        raise ValueError(f"isa: expected one of {sorted(MODULES)}, got {isa!r}")
    if isa not in available():
        raise ValueError(f"isa: {isa!r} is not available here (this build and CPU support {available()})")
    current, name = _module(isa), isa


def _initial():
    forced = os.environ.get("RNNKIT_ISA")
    if forced:
        if forced not in MODULES:
            raise ImportError(f"RNNKIT_ISA: expected one of {sorted(MODULES)}, got {forced!r}")
        if forced not in available():
            raise ImportError(f"RNNKIT_ISA={forced!r} is not available here (this build and CPU support {available()})")
        return forced
    return available()[0]


current = _baseline
name = "baseline"
use(_initial())


def get_num_threads():
    """Threads the kernels use."""
    return current.get_num_threads()


def set_num_threads(n):
    """Set the threads the kernels use: an int from 1 to ``MAX_THREADS`` (256). Results are the same to the
    bit at any thread count."""
    if isinstance(n, bool):
        raise TypeError("n: expected an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n: expected an int, got {type(n).__name__}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n: expected a thread count in [1, {MAX_THREADS}], got {n}")
    for module in _loaded.values():
        module.set_num_threads(n)


def release_memory():
    """Frees the memory the kernels keep between calls: blocks of freed result arrays (at most 256 MiB, reused
    by later calls of the same sizes) and the calling thread's working buffers (at most 64 MiB per dtype; a
    larger one is freed when its call returns). Later calls allocate again as needed."""
    for module in _loaded.values():
        module.release_memory()


def build_info():
    """Compiler, flags, OpenMP, threads and the instruction set of the kernels in use."""
    info = dict(current.build_info())
    info["isa_available"] = available()
    return info
