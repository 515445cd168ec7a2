"""rnnkit against the NumPy reference, PyTorch and ONNX Runtime, in one process.

    python benchmarks/run.py [--quick] [--threads N] [--json PATH] [--only kernels,streaming,memory,model_api,variants]
                             [--ab PATH [--ab-core DIR]]

Every measurement is interleaved (round-robin over the peers within each repeat, so machine noise hits all
peers alike) and reported as the median of the repeats (min and IQR in the JSON). Ratios are
peer time / rnnkit time: > 1 means rnnkit is faster. GFLOP/s count the flops of the matrix products
(forward 2*T*N*G*H*(C_l + H) per layer, training 3x that) and are also given as a fraction of what
numpy.matmul achieves on the same products in the same run ("% GEMM").

A/B of two builds: --ab PATH imports a second rnnkit from PATH (a checkout's root or a package directory, with
its compiled module in the package, in PATH/build/*/, or in --ab-core DIR) as the package rnnkit_ab, and runs
its functional kernels as the peer "rnnkit@base" in the same rotation as the imported rnnkit's (and in the
streaming section). Its ratio column is then base time / this build's time. For example, from an environment
where `rnnkit` is the new build and /tmp/base is a built checkout of the old commit:

    python benchmarks/run.py --quick --peers rnnkit --ab /tmp/base --only kernels --no-memory
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


SECTIONS = ("kernels", "streaming", "memory", "model_api", "variants")  # kernels: the GEMM table, inference and training


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (~1-2 min): fewer repeats, fewer points")
    ap.add_argument("--smoke", action="store_true", help="a tiny run for the tests (seconds)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every peer (default 2)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"), help="where to write results")
    ap.add_argument("--peers", default="rnnkit,reference,torch,onnxruntime", help="comma-separated peers to run")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--only", default=None, help="comma-separated sections to run, of " + ", ".join(SECTIONS)
                    + " (default: all)")
    ap.add_argument("--ab", metavar="PATH", default=None,
                    help="also run the rnnkit at PATH (a built checkout or a package directory) as the peer "
                         "rnnkit@base: an A/B of two builds (ratio: base time / rnnkit time)")
    ap.add_argument("--ab-core", metavar="DIR", default=None,
                    help="where --ab's compiled modules are (default: its package directory, else the newest "
                         "PATH/build/*/ that has them)")
    args = ap.parse_args(argv)
    if args.ab_core and not args.ab:
        ap.error("--ab-core needs --ab")
    args.sections = set(SECTIONS) if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    if args.sections - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {sorted(args.sections - set(SECTIONS))}; choose from {SECTIONS}")
    return args


def blas_thread_env(threads):
    """numpy's BLAS (used by the reference and the GEMM baseline) must use the same number of threads.
    Effective only if set before numpy is first imported, which run.py as a script ensures."""
    return {"OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}


if __name__ == "__main__":  # before numpy is imported
    os.environ.update(blas_thread_env(parse_args().threads))

import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))  # the repository root, so that `benchmarks` is importable

from benchmarks import cases as K  # noqa: E402
from benchmarks.model_api import KINDS as MODEL_KINDS, measure_model_api  # noqa: E402
from benchmarks.variants import measure_variants, print_variants  # noqa: E402
from benchmarks.peers import FunctionalPeer, available_peers, import_rnnkit, import_rnnkit_from  # noqa: E402
from benchmarks.timing import interleaved, summary  # noqa: E402


@dataclass
class Profile:
    grid: tuple
    large: tuple  # the point whose forward is compared with the GEMM throughput
    varlen: tuple
    stream_H: tuple
    stream_steps: int
    stream_block: int
    repeats: int
    ref_repeats: int
    min_time: float  # seconds one timed repeat lasts at least
    memory_points: tuple
    # {(peer or "*", mode, point): why it is not measured there}
    skip: dict = field(default_factory=dict)
    memory_cells: tuple = K.CELLS
    cells: tuple = K.CELLS
    stream_cells: tuple = K.STREAM_CELLS
    settle: float = 0.2  # seconds between peers' turns (timing.interleaved)
    idle_calls: int = 15  # streaming steps timed one by one after a pause (measure_after_idle)
    idle_pause: float = 0.05  # seconds of that pause
    # the model API section (benchmarks/model_api.py): LSTM(H) -> Dense(1) trained and predicted at (N, T, C, H);
    # batch-1 prediction at (T, C, H); repeats of each, seconds each lasts at least (longer than min_time: a 5%
    # target on calls of a few ms or µs)
    model_api_train: tuple = (32, 50, 8, 64)
    model_api_small: tuple = (20, 8, 32)
    model_api_repeats: int = 11
    model_api_min_time: float = 0.3
    # the cell-variants section (benchmarks/variants.py): (T, N, C, H)
    variants_point: tuple = (100, 32, 64, 256)

    def skip_reason(self, peer, mode, point):
        return self.skip.get((peer, mode, point)) or self.skip.get(("*", mode, point))


PROFILES = {
    "full": Profile(grid=K.GRID, large=K.LARGE, varlen=K.VARLEN, stream_H=K.STREAM_H, stream_steps=2000,
                    stream_block=100, repeats=5, ref_repeats=3, min_time=0.1, memory_points=(K.VARLEN, K.LARGE),
                    skip={("reference", "inference", K.LARGE): "too slow at H=1024 (measured for training)"}),
    "quick": Profile(grid=K.GRID, large=K.LARGE, varlen=K.VARLEN, stream_H=K.STREAM_H, stream_steps=600,
                     stream_block=50, repeats=3, ref_repeats=1, min_time=0.05, memory_points=(K.LARGE,),
                     memory_cells=("lstm",), idle_calls=5, model_api_repeats=9,
                     model_api_min_time=0.2,
                     skip={("reference", "inference", K.LARGE): "too slow at H=1024",
                           ("*", "training", K.LARGE): "H=1024 training not in --quick"}),
    "smoke": Profile(grid=((3, 4, 2, 5, 3),), large=(3, 4, 2, 5, 3), varlen=(3, 4, 1, 8, 3), stream_H=(8,),
                     stream_steps=20, stream_block=5, repeats=3, ref_repeats=2, min_time=0.0,
                     memory_points=((3, 4, 1, 5, 3),), memory_cells=("lstm",), cells=("gru",),
                     stream_cells=("lstm",), settle=0.0, idle_calls=2, idle_pause=0.001,
                     model_api_train=(3, 4, 2, 5), model_api_small=(4, 2, 3), model_api_repeats=3,
                     model_api_min_time=0.0, variants_point=(3, 2, 3, 8)),
}

MODES = ("inference", "training")


# ---------------------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------------------

def machine_info(rnnkit, peers, threads):
    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu == "unknown":
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "simd_flags": sorted(flags & {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
        "threads": threads,
        "rnnkit": rnnkit.__version__,
        "rnnkit_build_info": rnnkit.build_info(),
    }
    for p in peers:
        if p.name in ("torch", "onnxruntime"):
            info[p.name] = p.version()
    try:
        import onnx

        info["onnx"] = onnx.__version__
    except ImportError:
        pass
    return info


class BackgroundLoad:
    """How many cores other processes kept busy over an interval: /proc/stat's busy time of the whole machine
    minus this process's (and its children's) own CPU time, divided by the wall time. A busy machine makes
    every figure noisy (and hurts multi-threaded peers most): the report shows it next to the numbers."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            busy = None
        own = sum(getattr(resource.getrusage(who), k) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for k in ("ru_utime", "ru_stime"))
        return time.perf_counter(), busy, own

    def cores(self):
        (t0, b0, o0), (t1, b1, o1) = self.start, self._sample()
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))


# ---------------------------------------------------------------------------------------------------------
# the machine's own limit: float32 GEMM throughput
# ---------------------------------------------------------------------------------------------------------

def measure_gemm(all_cases, repeats, min_time, rnnkit):
    """numpy.matmul GFLOP/s for every [M, K] x [K, N] product the kernels do; Eigen's if rnnkit exposes it."""
    shapes = sorted({shape for case in all_cases for shape, _ in K.gemm_shapes(case)})
    rng = np.random.default_rng(2)
    fns = {}
    for M, Kd, N in shapes:
        a = rng.standard_normal((M, Kd)).astype(np.float32)
        b = rng.standard_normal((Kd, N)).astype(np.float32)
        c = np.empty((M, N), np.float32)
        fns[(M, Kd, N)] = (lambda a=a, b=b, c=c: np.matmul(a, b, out=c))
    raw = interleaved(fns, {s: repeats for s in fns}, min_time)
    out = {}
    core = getattr(rnnkit, "_core", None)
    eigen = getattr(core, "gemm_benchmark", None)
    for shape, r in raw.items():
        M, Kd, N = shape
        s = summary(r["samples"])
        rec = {"M": M, "K": Kd, "N": N, "number": r["number"], **s, "gflops": 2.0 * M * Kd * N / s["median_s"] / 1e9}
        if eigen is not None:
            try:
                rec["eigen_gemm_benchmark"] = eigen(M, Kd, N)  # signature assumed (M, K, N); recorded as returned
            except Exception as e:  # noqa: BLE001 - an optional probe of an API that may change
                rec["eigen_gemm_benchmark_error"] = repr(e)
        out[shape] = rec
    return out


def numpy_gemm_baseline(case):
    """fn() doing with numpy.matmul exactly the products of one full-length forward of `case`, nothing else."""
    rng = np.random.default_rng(3)
    ops = []
    for (M, Kd, N), count in K.gemm_shapes(case.full_length()):
        ops.append((rng.standard_normal((M, Kd)).astype(np.float32), rng.standard_normal((Kd, N)).astype(np.float32),
                    np.empty((M, N), np.float32), count))

    def run():
        for a, b, c, count in ops:
            for _ in range(count):
                np.matmul(a, b, out=c)

    return run


# ---------------------------------------------------------------------------------------------------------
# inference and training
# ---------------------------------------------------------------------------------------------------------

def _as_array(out):
    try:
        return np.asarray(out.detach() if hasattr(out, "detach") else out, dtype=np.float64)
    except Exception:  # noqa: BLE001
        return None


VARIANTS = ("@full",)  # the suffixes measure_case gives the other variants of a case


def _peer_of(name, suffix):
    """'torch@full' -> 'torch' for suffix '@full'; 'torch' -> 'torch' for suffix ''; None if another variant.
    A peer's own name may have an '@' too ('rnnkit@base', 'rnnkit@base@full')."""
    if suffix:
        return name[:-len(suffix)] if name.endswith(suffix) else None
    return None if name.endswith(VARIANTS) else name


GEMM = "numpy_gemm"  # the baseline run in the same rotation: numpy.matmul on exactly the forward's products


def measure_case(peers, case, mode, prof, gemm_table, gemm_times):
    """All peers on one case and mode, interleaved, returning one record per variant.

    Variable-length cases also run the same batch padded at full length ("<peer>@full") in the same rotation.
    Inference also runs the numpy GEMM baseline in the rotation; its time (kept in gemm_times for the training
    records: training is counted as 3x the forward's products) makes "% GEMM" = baseline time / peer time
    for the same flops. Without it, the per-shape table measured up front is used.
    """
    problem = K.make_problem(case)
    variants = {"": problem}
    if case.varlen:
        variants["@full"] = K.full_length(problem)
    fns, skipped = {}, {}
    for p in peers:
        reason = prof.skip_reason(p.name, mode, case.point)
        for suffix, pr in variants.items():
            fn = None if reason else p.forward(pr) if mode == "inference" else p.train(pr)
            if fn is not None:
                fns[p.name + suffix] = fn
            else:
                skipped[p.name + suffix] = reason or ("inference only" if mode == "training" and not p.can_train
                                                      else "not supported")
    if not fns:
        return []
    if mode == "inference":
        fns[GEMM] = numpy_gemm_baseline(case)
    reps = {n: prof.ref_repeats if n.startswith("reference") else prof.repeats for n in fns}
    load = BackgroundLoad()
    raw = interleaved(fns, reps, prof.min_time, keep_first=True, settle=prof.settle)
    background = load.cores()

    key = case.full_length()
    if GEMM in raw:
        gemm_times[key] = summary(raw.pop(GEMM)["samples"])
    if key in gemm_times:
        gemm_fwd_s = gemm_times[key]["median_s"]
    else:
        gemm_fwd_s = sum(count * gemm_table[shape]["median_s"] for shape, count in K.gemm_shapes(key))
    gemm_gflops = K.forward_flops(key) / gemm_fwd_s / 1e9

    records = []
    for suffix, pr in variants.items():
        variant = "full" if not case.varlen else ("varlen" if suffix == "" else "padded")
        flops = (K.forward_flops if mode == "inference" else K.training_flops)(case, pr.lengths)
        base = raw.get("rnnkit" + suffix)
        base_s = summary(base["samples"])["median_s"] if base else None
        first = _as_array(base["first"]) if base else None
        rec = {"mode": mode, "case": case.as_dict(), "label": case.label.replace(" varlen", ""), "variant": variant,
               "flops": flops, "numpy_gemm_s": gemm_fwd_s * (1 if mode == "inference" else 3),
               "numpy_gemm_gflops": gemm_gflops, "numpy_gemm_source": "interleaved" if key in gemm_times
               else "per-shape table", "background_cores": background, "peers": {},
               "skipped": {_peer_of(k, suffix): v for k, v in skipped.items() if _peer_of(k, suffix)}}
        for name, r in raw.items():
            peer = _peer_of(name, suffix)
            if not peer:
                continue
            s = summary(r["samples"])
            s["number"] = r["number"]
            s["sys_ms_per_call"] = float(np.median(r["sys_s"])) * 1e3
            s["minor_faults_per_call"] = float(np.median(r["minor_faults"]))
            s["gflops"] = flops / s["median_s"] / 1e9
            s["gemm_fraction"] = s["gflops"] / gemm_gflops
            if base_s:
                s["rnnkit_speedup"] = s["median_s"] / base_s
            other = _as_array(r["first"])
            if first is not None and other is not None and other.shape == first.shape:
                # what each peer returned (inference: y; training: dx), against rnnkit's
                s["max_abs_diff_vs_rnnkit"] = float(np.max(np.abs(other - first))) if first.size else 0.0
            rec["peers"][peer] = s
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------------------

MATVEC = "numpy matvec"


def numpy_matvec_baseline(case, block):
    """fn() doing `block` numpy.matmul matrix-vector products over one step's weights, [G*H, C+H] x [C+H]:
    what reading every weight once costs on this machine, the floor of a step at batch 1."""
    W_ih, W_hh, _, _ = K.stream_weights(case)
    W = np.ascontiguousarray(np.concatenate([W_ih, W_hh], axis=1))
    v = np.ones(W.shape[1], np.float32)
    out = np.empty(W.shape[0], np.float32)

    def run():
        for _ in range(block):
            np.matmul(W, v, out=out)

    return run, W.nbytes


def measure_after_idle(fns, calls, pause):
    """One streaming step per call of each fn, timed alone after `pause` seconds of idle (a stream whose
    samples arrive every `pause` seconds: the threads of every peer have gone to sleep, its caches are
    cold). Peers take turns; returns {name: [seconds of each call]}."""
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(calls):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause)
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def measure_stream(peers, cell, H, prof):
    case = K.stream_case(cell, H)
    xs = K.stream_inputs(case, prof.stream_steps)
    fns = {}
    for p in peers:
        fn = p.stream(case, xs, prof.stream_block)
        if fn is not None:
            fns[p.name] = fn
    fns[MATVEC], weight_bytes = numpy_matvec_baseline(case, prof.stream_block)
    blocks = max(1, prof.stream_steps // prof.stream_block)
    load = BackgroundLoad()
    raw = interleaved(fns, {n: blocks for n in fns}, 0.0, units=prof.stream_block, settle=prof.settle)
    rec = {"cell": cell, "H": H, "C": H, "N": 1, "steps": blocks * prof.stream_block, "block": prof.stream_block,
           "background_cores": load.cores(), "weight_bytes": weight_bytes, "peers": {}}
    floor = summary(raw.pop(MATVEC)["samples"])["median_s"]
    rec["matvec_us"] = floor * 1e6
    rec["peers"] = _stream_summaries({name: r["samples"] for name, r in raw.items()})
    if "rnnkit" in rec["peers"]:
        # the weights read per second, and the matrix-vector floor as a fraction of the whole step
        base = rec["peers"]["rnnkit"]["median_s"]
        rec["rnnkit_weight_gb_s"] = weight_bytes / base / 1e9
        rec["rnnkit_of_matvec"] = floor / base
    # the same step when the stream pauses between samples
    steps = {p.name: p.stream(case, xs, 1) for p in peers}
    idle = measure_after_idle({n: fn for n, fn in steps.items() if fn is not None}, prof.idle_calls, prof.idle_pause)
    rec["after_idle"] = {"pause_s": prof.idle_pause, "peers": _stream_summaries(idle)}
    return rec


def _stream_summaries(samples):
    """{name: [seconds per step, one a sample]} -> {name: its summary, with median_us and, when rnnkit is
    among them, rnnkit_speedup}"""
    out = {name: summary(v) for name, v in samples.items()}
    base = out["rnnkit"]["median_s"] if "rnnkit" in out else None
    for s in out.values():
        s["median_us"] = s["median_s"] * 1e6
        if base:
            s["rnnkit_speedup"] = s["median_s"] / base
    return out


# ---------------------------------------------------------------------------------------------------------
# peak memory of one training step, each in a fresh interpreter
# ---------------------------------------------------------------------------------------------------------

def measure_memory(peer_names, points, cells, threads):
    """ru_maxrss survives exec: a child exec'd straight from this (large) process would start with this
    process's peak. So each probe is started by a small /bin/sh that forks it: a fresh process whose
    peak starts from the shell's. memory_probe.py also reports its peak at start-up as a check."""
    env = dict(os.environ, **blas_thread_env(threads))
    out = []
    for point in points:
        for cell in cells:
            rec = {"case": K.Case(cell, *point).as_dict(), "label": K.Case(cell, *point).label, "peers": {}}
            for name in peer_names:
                cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, os.path.join(HERE, "memory_probe.py"),
                       name, cell, *map(str, point), str(threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
                try:
                    rec["peers"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    rec["peers"][name] = {"error": (proc.stderr or proc.stdout)[-500:]}
            r, t = rec["peers"].get("rnnkit", {}), rec["peers"].get("torch", {})
            if "delta_mib" in r and "delta_mib" in t:
                rec["ratio_rnnkit_over_torch"] = r["delta_mib"] / t["delta_mib"] if t["delta_mib"] > 0 else None
            out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------------------
# targets (from the performance issue)
# ---------------------------------------------------------------------------------------------------------

def _fmt_list(items):
    return ", ".join(items) if items else "no data"


def evaluate_targets(results, streaming, memory, prof, model_api=None):
    """MET only if every expected figure was measured and passes; NOT MET if any measured figure fails;
    UNKNOWN if none fails but some were not measured (skipped, or a peer not installed)."""
    targets = []

    def add(name, values, ok, unit="x"):
        """values: [(label, number or None when not measured)]; ok(number) -> bool."""
        vals = [(lab, v) for lab, v in values if v is not None]
        missing = [lab for lab, v in values if v is None]
        failed = any(not ok(v) for _, v in vals)
        met = False if failed else (None if missing or not vals else True)
        detail = _fmt_list([f"{lab} {v:.2f}{unit}" + ("" if ok(v) else " (!)") for lab, v in vals])
        if missing:
            detail += f"; not measured: {', '.join(missing)}"
        targets.append({"name": name, "met": met, "detail": detail, "values": {lab: v for lab, v in vals},
                        "not_measured": missing})

    def record(mode, case, variant="full"):
        return next((r for r in results if r["mode"] == mode and r["variant"] == variant
                     and r["case"] == case.as_dict()), None)

    def speedups(mode, cells, peer):
        out = []
        for point in prof.grid:
            for cell in (c for c in prof.cells if c in cells):
                case = K.Case(cell, *point)
                r = record(mode, case)
                out.append((case.label, r and r["peers"].get(peer, {}).get("rnnkit_speedup")))
        return out

    if results:  # the kernels' sections (not run with --only model_api, say)
        for mode, word in (("training", "training step"), ("inference", "inference")):
            for peer in ("torch",) if mode == "training" else ("torch", "onnxruntime"):
                add(f"{word} >= 1.0x {peer}, LSTM, every grid point", speedups(mode, ("lstm",), peer),
                    lambda v: v >= 1.0)
                add(f"{word} >= 1.5x {peer}, GRU and RNN, every grid point", speedups(mode, ("gru", "rnn"), peer),
                    lambda v: v >= 1.5)

    if streaming:
        for peer, need in (("torch", 5.0), ("onnxruntime", 1.5)):
            add(f"streaming step at batch 1 >= {need}x faster than {peer}" + (" LSTMCell/GRUCell" * (peer == "torch")),
                [(f"{s['cell']} H{s['H']}", s["peers"].get(peer, {}).get("rnnkit_speedup")) for s in streaming],
                lambda v, need=need: v >= need)

    if results:
        large = []
        for cell in prof.cells:
            r = record("inference", K.Case(cell, *prof.large))
            large.append((f"{cell}", r and r["peers"].get("rnnkit", {}).get("gemm_fraction", 0) * 100))
        add(f"H={prof.large[1]} forward >= 75% of numpy GEMM throughput (rnnkit GFLOP/s / numpy.matmul GFLOP/s "
            "on the same products)", large, lambda v: v >= 75.0, unit="%")

        vl = []
        for mode in MODES:
            for cell in prof.cells:
                case = K.Case(cell, *prof.varlen, varlen=True)
                r, p = record(mode, case, "varlen"), record(mode, case, "padded")
                ok = r and p and "rnnkit" in r["peers"] and "rnnkit" in p["peers"]
                vl.append((f"{mode} {cell}", p["peers"]["rnnkit"]["median_s"] / r["peers"]["rnnkit"]["median_s"]
                           if ok else None))
        add("variable-length no slower than the same batch at full length (rnnkit padded time / varlen time)", vl,
            lambda v: v >= 1.0)

        add(">= 5x the NumPy reference, every training grid point", speedups("training", K.CELLS, "reference"),
            lambda v: v >= 5.0)
    if memory:
        add("training-step peak memory <= torch's (rnnkit / torch ru_maxrss growth)",
            [(m["label"], m.get("ratio_rnnkit_over_torch")) for m in memory], lambda v: v <= 1.0)
    if model_api:
        step, b1 = model_api["step"], model_api["batch1"]
        add(f"model API training step within 5% of Sequential's (functional and subclassed time / Sequential's, "
            f"LSTM({step['H']}) -> Dense(1), N{step['N']} T{step['T']} C{step['C']})",
            [(k, step["train"].get(k, {}).get("ratio_to_sequential")) for k in MODEL_KINDS[1:]], lambda v: v <= 1.05)
        for what, how in (("predict", "predict(x)"), ("call", "model(x)")):
            seq = b1[what]["sequential"]["overhead_us"]
            add(f"batch-1 {how} overhead over the kernels: functional's <= Sequential's ({seq:.1f} us; "
                f"LSTM({b1['H']}) -> Dense(1), T{b1['T']} C{b1['C']}; model time - kernel time)",
                [("functional", b1[what]["functional"]["overhead_us"])], lambda v, seq=seq: v <= seq, unit=" us")
        lead = model_api.get("leading_padding")
        if lead:
            add(f"leading padding (padding=\"pre\") at most 10% over the same batch right-padded (LSTM({lead['H']}), "
                f"N{lead['N']} T{lead['T']} C{lead['C']}; left / right time)",
                [(case, r["ratio"]) for case, r in lead["cases"].items()], lambda v: v <= 1.10)
    return targets


# ---------------------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------------------

def table(headers, rows):
    cols = [headers] + rows
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(headers))]
    line = lambda r: "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def print_model_api(api):
    """The model API section: times of each kind of model, ratio = its time / Sequential's; batch-1 overheads."""
    step, b1 = api["step"], api["batch1"]
    at = f"N{step['N']} T{step['T']} C{step['C']} H{step['H']}"
    print(f"\n== model API: the same LSTM -> Dense(1) in Sequential, functional and subclassed models (median; "
          f"ratio: time / Sequential's) ==")
    rows = []
    for label, rec, what, scale, unit in ((f"train_on_batch {at}", step, "train", 1e3, "ms"),
                                         (f"predict {at}", step, "predict", 1e3, "ms"),
                                         (f"predict N1 T{b1['T']} C{b1['C']} H{b1['H']}", b1, "predict", 1e6, "us"),
                                         (f"model(x) N1 T{b1['T']} C{b1['C']} H{b1['H']}", b1, "call", 1e6, "us")):
        row = [label, unit]
        for k in MODEL_KINDS:
            s = rec[what][k]
            row += [_num(s["median_s"] * scale, ".3f" if unit == "ms" else ".1f")]
            if k != "sequential":
                row += [_num(s["ratio_to_sequential"], ".3f")]
        rows.append(row)
    print(table(["case", "unit", "sequential", "functional", "ratio", "subclassed", "ratio"], rows))
    print(f"\n  batch-1 overhead over the bare kernels ({b1['kernels']['median_us']:.1f} us: lstm_forward without "
          "cache + the Dense's matmul), us; in brackets: minus Sequential's")
    rows = []
    for what, how in (("predict", "predict(x)"), ("call", "model(x)")):
        row = [how]
        for k in MODEL_KINDS:
            s = b1[what][k]
            row += [_num(s["overhead_us"], ".1f") + ("" if k == "sequential" else
                                                    f" ({s['overhead_minus_sequential_us']:+.1f})")]
        rows.append(row)
    print(table(["overhead", *MODEL_KINDS], rows))
    garbage = {f"{what} {k}": rec[what][k]["cyclic_garbage"] for rec, whats in ((step, ("train", "predict")),
                                                                              (b1, ("predict", "call")))
               for what in whats for k in MODEL_KINDS}
    print("  objects left to the cycle collector per call: " + ", ".join(f"{n} {v}" for n, v in garbage.items()))
    lead = api.get("leading_padding")
    if lead:
        print(f"\n  leading padding: LSTM({lead['H']}) at N{lead['N']} T{lead['T']} C{lead['C']}, masks padded at the "
              "start against the same sequences padded at the end (ms; ratio: left / right)")
        rows = [[case, _num(r["right"]["median_s"] * 1e3, ".3f"), _num(r["left"]["median_s"] * 1e3, ".3f"),
                 _num(r["ratio"], ".3f")] for case, r in lead["cases"].items()]
        print(table(["case", "right", "left", "ratio"], rows))


def print_report(out, peer_names):
    m = out["machine"]
    print(f"\nrnnkit benchmarks ({out['profile']} run, {m['threads']} threads, {out['seconds']:.0f} s)")
    print(f"CPU: {m['cpu']} | cores {m['cpu_count']} (affinity {m['affinity']}) | SIMD {' '.join(m['simd_flags'])}"
          f" | load avg start {m['loadavg_start'][0]:.1f} end {m['loadavg_end'][0]:.1f}")
    bg = m.get("background_cores")
    if bg is not None:
        print(f"Other processes kept {bg:.2f} of {m['cpu_count']} cores busy on average during this run"
              + (" -- WARNING: a busy machine; figures are noisy (column bg: busy cores per case)"
                 if bg > 0.1 * (m["cpu_count"] or 1) else " (column bg: per case)"))
    print(f"python {m['python']} | numpy {m['numpy']} | torch {m.get('torch', 'not run')} | onnxruntime "
          f"{m.get('onnxruntime', 'not run')} | rnnkit {m['rnnkit']} {m['rnnkit_build_info']}")
    if out.get("ab"):
        ab = out["ab"]
        print(f"A/B: rnnkit = {m.get('rnnkit_core')} (git {m.get('rnnkit_git')}); {ab['peer']} = {ab['core']} "
              f"(git {ab['git']}), {ab['build_info'].get('flags', '').strip()}")
    print("Ratios are peer time / rnnkit time (> 1: rnnkit faster). GF/s: matrix-product GFLOP/s; %GEMM: of what "
          "numpy.matmul does on the same products. sys: the kernel's CPU ms per call (page faults of freshly mapped "
          "memory, mostly).")
    others = [p for p in peer_names if p != "rnnkit"]
    for mode in MODES:
        if not any(r["mode"] == mode for r in out["results"]):
            continue  # a section not run (--only)
        rows = []
        for r in (r for r in out["results"] if r["mode"] == mode):
            p = r["peers"]
            rk = p.get("rnnkit", {})
            label = r["label"] + ("" if r["variant"] == "full" else f" [{r['variant']}]")
            row = [label, _num(rk.get("median_s", None) and rk["median_s"] * 1e3, ".2f"), _num(rk.get("gflops"), ".1f"),
                   _num(rk.get("gemm_fraction") and rk["gemm_fraction"] * 100, ".0f")]
            for o in others:
                if o in p:
                    row += [_num(p[o]["median_s"] * 1e3, ".2f"), _num(p[o].get("rnnkit_speedup"), ".2f")]
                else:
                    why = r["skipped"].get(o, "not run")
                    row += ["skip" if "slow" in why else "n/a", "-"]
                if o == "torch":
                    row += [_num(p.get(o, {}).get("gflops"), ".1f")]
            if "torch" in others:
                row += ["/".join(_num(p.get(o, {}).get("sys_ms_per_call"), ".1f") for o in ("rnnkit", "torch"))]
            rows.append(row + [_num(r.get("background_cores"), ".2f")])
        headers = ["case", "rnnkit ms", "GF/s", "%GEMM"]
        for o in others:
            headers += [f"{o} ms", "ratio"] + (["GF/s"] if o == "torch" else [])
        headers += (["sys rk/torch"] if "torch" in others else []) + ["bg"]
        print(f"\n== {mode} (median of repeats; reference: fewer repeats) ==")
        print(table(headers, rows))
        notes = sorted({f"{k}: {v}" for r in out["results"] if r["mode"] == mode for k, v in r["skipped"].items()})
        for n in notes:
            print(f"  skipped {n}")

    if out["streaming"]:
        print("\n== streaming: one step at batch 1, state carried in Python (microseconds per step, median of "
              "blocks) ==")
        rows = []
        for s in out["streaming"]:
            row = [f"{s['cell']} H{s['H']}", _num(s["peers"].get("rnnkit", {}).get("median_us"), ".1f")]
            for o in others:
                q = s["peers"].get(o)
                row += [_num(q and q["median_us"], ".1f"), _num(q and q.get("rnnkit_speedup"), ".2f")]
            row += [_num(s.get("matvec_us"), ".1f"), _num(s.get("rnnkit_of_matvec") and 100 * s["rnnkit_of_matvec"], ".0f"), _num(s.get("rnnkit_weight_gb_s"), ".0f")]
            rows.append(row + [_num(s.get("background_cores"), ".2f")])
        print(table(["case", "rnnkit us"] + [h for o in others for h in (f"{o} us", "ratio")]
                    + ["matvec us", "% matvec", "GB/s", "bg"], rows))
        print("  matvec: numpy.matmul of the step's weights [G*H, C+H] by a vector, which reads each weight once;"
              " GB/s: the weights rnnkit reads per second")
    if any(s.get("after_idle") for s in out["streaming"]):
        rows = []
        for s in out["streaming"]:
            idle = s.get("after_idle", {}).get("peers", {})
            row = [f"{s['cell']} H{s['H']}", _num(idle.get("rnnkit", {}).get("median_us"), ".0f")]
            for o in others:
                q = idle.get(o)
                row += [_num(q and q["median_us"], ".0f"), _num(q and q.get("rnnkit_speedup"), ".2f")]
            rows.append(row)
        pause = out["streaming"][0]["after_idle"]["pause_s"]
        print(f"\n== streaming after idle: one step {pause * 1e3:.0f} ms after the last (microseconds, median of calls) ==")
        print(table(["case", "rnnkit us"] + [h for o in others for h in (f"{o} us", "ratio")], rows))

    if out["gemm"]:
        print("\n== numpy.matmul float32 throughput on the kernels' products ==")
        rows = [[f"[{g['M']},{g['K']}]x[{g['K']},{g['N']}]", _num(g["median_s"] * 1e6, ".1f"), _num(g["gflops"], ".1f")]
                + ([str(g.get("eigen_gemm_benchmark", g.get("eigen_gemm_benchmark_error")))]
                   if "eigen_gemm_benchmark" in g or "eigen_gemm_benchmark_error" in g else []) for g in out["gemm"]]
        print(table(["product", "us", "GFLOP/s"] + (["eigen"] if any(len(r) > 3 for r in rows) else []), rows))

    if out["memory"]:
        print("\n== peak memory of one training step (ru_maxrss growth, fresh interpreter each) ==")
        rows = []
        for mrec in out["memory"]:
            r, t = mrec["peers"].get("rnnkit", {}), mrec["peers"].get("torch", {})
            rows.append([mrec["label"], _num(r.get("delta_mib"), ".1f"), _num(t.get("delta_mib"), ".1f"),
                         _num(mrec.get("ratio_rnnkit_over_torch"), ".2f")])
        print(table(["case", "rnnkit MiB", "torch MiB", "rnnkit/torch"], rows))

    if out.get("model_api"):
        print_model_api(out["model_api"])
    if out.get("variants"):
        print_variants(out["variants"], table)

    print("\n== targets ==")
    for t in out["targets"]:
        status = {True: "MET", False: "NOT MET", None: "UNKNOWN"}[t["met"]]
        print(f"[{status}] {t['name']}: {t['detail']}")


# ---------------------------------------------------------------------------------------------------------

AB = "rnnkit@base"  # the peer --ab adds


def _git_head(path):
    """The commit checked out at path (a short hash, '+' if its tracked files differ from it), or None."""
    try:
        head = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def run(args):
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    prof = PROFILES[profile]
    t_start = time.perf_counter()
    run_load = BackgroundLoad()
    rnnkit = import_rnnkit()
    wanted = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    peers, missing = available_peers(include=wanted)
    ab = None
    if getattr(args, "ab", None):
        base, core_dir = import_rnnkit_from(args.ab, "rnnkit_ab", getattr(args, "ab_core", None))
        peers.insert(1 if peers and peers[0].name == "rnnkit" else 0,
                     FunctionalPeer(AB, base.functional, base.set_num_threads, base.__version__))
        ab = {"peer": AB, "path": os.path.abspath(args.ab), "package": os.path.dirname(base.__file__),
              "core": base._isa.current.__file__, "core_dir": core_dir, "rnnkit": base.__version__,
              "build_info": base.build_info(), "git": _git_head(args.ab)}
    for p in peers:
        p.set_threads(args.threads)
    peer_names = [p.name for p in peers]
    gc.collect()
    gc.freeze()  # the imported libraries' objects: keeps the collections between timed rounds short
    out = {"schema": 1, "profile": profile, "machine": machine_info(rnnkit, peers, args.threads),
           "peers": peer_names, "missing_peers": missing}
    if ab:
        out["machine"]["rnnkit_core"] = rnnkit._isa.current.__file__
        out["machine"]["rnnkit_git"] = _git_head(os.path.dirname(rnnkit.__file__))
        out["ab"] = ab
    print(f"peers: {', '.join(peer_names)}" + (f"; missing: {missing}" if missing else ""), flush=True)

    sections = getattr(args, "sections", set(SECTIONS))
    out["sections"] = [s for s in SECTIONS if s in sections]
    grid = [K.Case(cell, *pt) for pt in prof.grid for cell in prof.cells]
    varlen = [K.Case(cell, *prof.varlen, varlen=True) for cell in prof.cells]
    gemm = {}
    if "kernels" in sections:
        gemm = measure_gemm(grid + varlen, max(3, prof.repeats), prof.min_time, rnnkit)
        print(f"gemm: {len(gemm)} shapes ({time.perf_counter() - t_start:.0f} s)", flush=True)
    out["gemm"] = list(gemm.values())

    out["results"], gemm_times = [], {}
    for mode in MODES if "kernels" in sections else ():
        for case in grid + varlen:
            recs = measure_case(peers, case, mode, prof, gemm, gemm_times)
            if not recs:
                continue
            out["results"] += recs
            rk = recs[0]["peers"].get("rnnkit", {})
            print(f"{mode:9s} {case.label:34s} rnnkit {rk.get('median_s', float('nan')) * 1e3:9.2f} ms  "
                  + " ".join(f"{n} x{q.get('rnnkit_speedup', float('nan')):.2f}" for n, q in recs[0]["peers"].items()
                             if n != "rnnkit")
                  + f"  bg {recs[0]['background_cores'] or 0:.2f}  ({time.perf_counter() - t_start:.0f} s)", flush=True)

    out["streaming"] = []
    for cell in prof.stream_cells if "streaming" in sections else ():
        for H in prof.stream_H:
            out["streaming"].append(measure_stream(peers, cell, H, prof))
    if "streaming" in sections:
        print(f"streaming done ({time.perf_counter() - t_start:.0f} s)", flush=True)

    mem_peers = [n for n in ("rnnkit", "torch") if n in peer_names]
    out["memory"] = [] if args.no_memory or "memory" not in sections else measure_memory(
        mem_peers, prof.memory_points, prof.memory_cells, args.threads)

    out["model_api"] = None
    if "model_api" in sections:
        rnnkit.set_num_threads(args.threads)  # the section runs rnnkit's models whatever --peers says
        load = BackgroundLoad()
        out["model_api"] = measure_model_api(prof)
        out["model_api"]["background_cores"] = load.cores()
        print(f"model API done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    out["variants"] = None
    if "variants" in sections:
        rnnkit.set_num_threads(args.threads)
        out["variants"] = measure_variants(prof)
        print(f"cell variants done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    out["targets"] = evaluate_targets(out["results"], out["streaming"], out["memory"], prof, out["model_api"])
    out["machine"]["loadavg_end"] = list(os.getloadavg())
    out["machine"]["background_cores"] = run_load.cores()
    out["seconds"] = time.perf_counter() - t_start

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print_report(out, peer_names)
    print(f"\nraw numbers: {args.json}")
    gc.unfreeze()
    return out


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
