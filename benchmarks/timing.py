"""The one timing loop: interleaved (round-robin over peers within each repeat), median of repeats."""

from __future__ import annotations

import gc
import math
import resource
import time

import numpy as np


def interleaved(fns, repeats, min_time, units=1, keep_first=False, settle=0.0):
    """Time several callables against each other.

    fns: {name: fn}; repeats: {name: how many repeats} (peers may get fewer, e.g. the slow NumPy reference);
    min_time: seconds one repeat should last at least (fn is called `number` times in a row per repeat,
    `number` calibrated once per peer); units: how many units of work one call does (streaming blocks).
    Within each repeat every peer runs once, the starting peer rotating, so machine noise hits all alike.
    settle: seconds of pause after each peer's turn and after its warm-up. Thread pools keep spinning on the
    cores after their work is done (OpenBLAS for about 0.1 s, ONNX Runtime and OpenMP runtimes for less),
    which would slow whichever peer runs next; the pause lets them go idle, so each peer is timed on quiet cores.
    The garbage collector is off during a round of repeats (as in timeit) and runs between rounds.
    Returns {name: {"samples": [seconds per unit, one per repeat], "number": calls per repeat, "sys_s" and
    "minor_faults": the process's system CPU seconds and minor page faults per call, one per repeat}}, plus
    "first": what the first (warm-up) call returned if keep_first. A peer that maps fresh memory on every call
    pays the kernel for each page: how much that costs depends on the machine (a virtual machine's page faults
    can cost several times a bare one's), which sys_s shows beside the time.
    """
    names = list(fns)
    number, first = {}, {}
    for name in names:
        t0 = time.perf_counter()
        result = fns[name]()  # warm-up (first-call allocations, lazy initialisation)
        dt = time.perf_counter() - t0
        if keep_first:
            first[name] = result
        del result
        if min_time > 0 and dt < min_time:  # calibrate on a second, warm call
            t0 = time.perf_counter()
            fns[name]()
            dt = time.perf_counter() - t0
        number[name] = max(1, math.ceil(min_time / max(dt, 1e-9))) if min_time > 0 else 1
        if settle > 0:
            time.sleep(settle)  # the warm-up's thread pools too, or the first timed peer runs beside them
    samples = {name: [] for name in names}
    sys_s = {name: [] for name in names}
    faults = {name: [] for name in names}
    for r in range(max(repeats.values(), default=0)):
        order = names[r % len(names):] + names[:r % len(names)]
        gc.collect()  # once per round (cheap after gc.freeze() of the imported modules, see run.py)
        gc.disable()
        try:
            for name in order:
                if r >= repeats[name]:
                    continue
                fn, n = fns[name], number[name]
                u0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                dt = time.perf_counter() - t0
                u1 = resource.getrusage(resource.RUSAGE_SELF)
                samples[name].append(dt / (n * units))
                sys_s[name].append((u1.ru_stime - u0.ru_stime) / n)
                faults[name].append((u1.ru_minflt - u0.ru_minflt) / n)
                if settle > 0:
                    time.sleep(settle)
        finally:
            gc.enable()
    return {name: {"samples": samples[name], "number": number[name], "sys_s": sys_s[name],
                   "minor_faults": faults[name], **({"first": first[name]} if keep_first else {})}
            for name in names}


def summary(samples):
    """Median, min, quartiles and IQR of a list of seconds."""
    a = np.asarray(samples, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median_s": float(med), "min_s": float(a.min()), "q1_s": float(q1), "q3_s": float(q3),
            "iqr_s": float(q3 - q1), "repeats": int(a.size), "samples_s": [float(v) for v in a]}
