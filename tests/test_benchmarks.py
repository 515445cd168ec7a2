"""Smoke test of the benchmark harness (benchmarks/run.py): a tiny case with whichever peers are installed.

Checks the JSON structure and that the measured numbers are positive; not the speed. torch and onnxruntime
are optional here: their parts are checked only when they are installed.
"""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import run as bench  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from rnnkit.cells import CELLS  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = HAVE_TORCH and importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    out = bench.run(bench.parse_args(["--smoke", "--threads", "1", "--json", str(path)]))
    with open(path) as f:
        saved = json.load(f)
    assert saved["profile"] == "smoke"
    return saved, out


def test_header_and_peers(results):
    data, _ = results
    assert data["schema"] == 1
    m = data["machine"]
    for key in ("cpu", "cpu_count", "numpy", "threads", "rnnkit_build_info", "loadavg_start", "loadavg_end"):
        assert key in m
    assert data["peers"][:2] == ["rnnkit", "reference"]
    assert ("torch" in data["peers"]) == HAVE_TORCH
    if HAVE_ORT:
        assert "onnxruntime" in data["peers"]
    assert data["seconds"] > 0


def test_gemm_positive(results):
    data, _ = results
    assert data["gemm"]
    for g in data["gemm"]:
        assert g["median_s"] > 0 and g["gflops"] > 0 and g["min_s"] <= g["median_s"] and g["iqr_s"] >= 0


def test_inference_and_training_records(results):
    data, _ = results
    modes = {r["mode"] for r in data["results"]}
    assert modes == {"inference", "training"}
    variants = {r["variant"] for r in data["results"]}
    assert variants == {"full", "varlen", "padded"}
    for r in data["results"]:
        assert r["flops"] > 0 and r["numpy_gemm_gflops"] > 0 and r["numpy_gemm_source"] == "interleaved"
        assert r["background_cores"] is None or r["background_cores"] >= 0
        assert "rnnkit" in r["peers"] and "reference" in r["peers"]
        if HAVE_TORCH:
            assert "torch" in r["peers"]
        if HAVE_ORT and r["mode"] == "inference" and r["variant"] != "varlen":
            assert "onnxruntime" in r["peers"]
        if r["mode"] == "training":
            assert "onnxruntime" not in r["peers"]
        for name, s in r["peers"].items():
            assert s["median_s"] > 0 and s["min_s"] > 0 and s["gflops"] > 0 and s["rnnkit_speedup"] > 0, name
            assert s["repeats"] == len(s["samples_s"]) >= 1
            assert s["sys_ms_per_call"] >= 0 and s["minor_faults_per_call"] >= 0, name
            # every peer computed the same thing (y for inference, dx for training) as rnnkit
            assert s["max_abs_diff_vs_rnnkit"] < 1e-4, (r["label"], name)
        assert r["peers"]["rnnkit"]["rnnkit_speedup"] == 1.0


def test_streaming_records(results):
    data, _ = results
    assert data["streaming"]
    for s in data["streaming"]:
        assert s["steps"] > 0
        assert "rnnkit" in s["peers"] and (HAVE_TORCH == ("torch" in s["peers"]))
        for q in s["peers"].values():
            assert q["median_us"] > 0 and q["rnnkit_speedup"] > 0
        # the matrix-vector floor: the step's weights [G*H, C+H] read once, as float32
        G = CELLS[s["cell"]].G
        assert s["weight_bytes"] == 4 * G * s["H"] * (s["C"] + s["H"])
        assert s["matvec_us"] > 0 and s["rnnkit_of_matvec"] > 0 and s["rnnkit_weight_gb_s"] > 0
        # the same step timed call by call after a pause, every peer that streams
        idle = s["after_idle"]
        assert idle["pause_s"] > 0 and set(idle["peers"]) == set(s["peers"])
        for q in idle["peers"].values():
            assert q["repeats"] == len(q["samples_s"]) == bench.PROFILES["smoke"].idle_calls
            assert q["median_us"] > 0 and q["rnnkit_speedup"] > 0
        assert idle["peers"]["rnnkit"]["rnnkit_speedup"] == 1.0


def test_memory_records(results):
    data, _ = results
    assert data["memory"]
    for mrec in data["memory"]:
        r = mrec["peers"]["rnnkit"]
        assert "error" not in r, r
        assert r["after_kib"] >= r["before_kib"] > 0 and r["delta_mib"] >= 0
        # started from a small process, not with the benchmark's own peak (ru_maxrss survives exec)
        assert r["start_kib"] < r["before_kib"]
        if HAVE_TORCH:
            assert "error" not in mrec["peers"]["torch"]


def test_model_api_records(results):
    # Sequential, functional and subclassed models of the same layers and weights, and the bare kernels at batch 1
    data, _ = results
    api, prof = data["model_api"], bench.PROFILES["smoke"]
    kinds = ["sequential", "functional", "subclassed"]
    step, b1 = api["step"], api["batch1"]
    assert [step[k] for k in ("N", "T", "C", "H")] == list(prof.model_api_train)
    assert [b1[k] for k in ("T", "C", "H")] == list(prof.model_api_small) and b1["N"] == 1
    assert b1["kernels"]["median_s"] > 0 and b1["kernels"]["repeats"] == prof.model_api_repeats
    for rec, whats in ((step, ("train", "predict")), (b1, ("predict", "call"))):
        for what in whats:
            assert list(rec[what]) == kinds
            for k, s in rec[what].items():
                assert s["median_s"] > 0 and s["median_us"] > 0 and s["ratio_to_sequential"] > 0, (what, k)
                assert s["ratio_to_sequential_paired"] > 0, (what, k)
                assert s["repeats"] == len(s["samples_s"]) == prof.model_api_repeats
                assert s["cyclic_garbage"] >= 0
                if rec is b1:
                    assert s["overhead_us"] == pytest.approx((s["median_s"] - b1["kernels"]["median_s"]) * 1e6)
                    # every model predicted what the kernels did
                    assert s["max_abs_diff_vs_kernels"] < 1e-5, (what, k)
                else:
                    # identical weights: the same first loss and prediction as Sequential's
                    assert s["max_abs_diff_vs_sequential"] < 1e-5, (what, k)
            assert rec[what]["sequential"]["ratio_to_sequential"] == 1.0
    assert b1["predict"]["sequential"]["overhead_minus_sequential_us"] == 0.0
    assert step["predict_before_timing_max_abs_diff"] < 1e-5
    lead = api["leading_padding"]
    assert [lead[k] for k in ("N", "T", "C", "H")] == list(prof.model_api_train)
    assert sorted(lead["cases"]) == ["inference last", "inference sequences", "train last", "train sequences"]
    for r in lead["cases"].values():
        assert r["ratio"] == pytest.approx(r["left"]["median_s"] / r["right"]["median_s"]) and r["ratio_paired"] > 0
    assert "model_api" in data["sections"]


def test_only_model_api(tmp_path):
    out = bench.run(bench.parse_args(["--smoke", "--threads", "1", "--only", "model_api", "--json",
                                      str(tmp_path / "only.json")]))
    assert out["sections"] == ["model_api"] and out["model_api"]
    assert out["results"] == out["streaming"] == out["memory"] == out["gemm"] == []
    assert [t["name"] for t in out["targets"]] and all(
        "model API" in t["name"] or "batch-1" in t["name"] or "leading padding" in t["name"] for t in out["targets"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nothing"])


def test_targets(results):
    data, _ = results
    names = [t["name"] for t in data["targets"]]
    assert any("NumPy reference" in n for n in names) and any("variable-length" in n for n in names)
    assert any("model API training step" in n for n in names)
    assert sum("batch-1" in n and "overhead" in n for n in names) == 2
    for t in data["targets"]:
        assert t["met"] in (True, False, None) and isinstance(t["detail"], str)
        if t["met"] is True:
            assert not t["not_measured"]
        for v in t["values"].values():
            assert v >= 0


def test_timing_counts_the_page_faults_of_each_peer():
    # one peer maps and touches 256 fresh pages on every call, the other touches memory it already has
    import mmap

    pages, size = 256, 256 * mmap.PAGESIZE
    kept = bytearray(size)

    def fresh():
        m = mmap.mmap(-1, size)
        for i in range(pages):
            m[i * mmap.PAGESIZE] = 1
        m.close()

    def reused():
        for i in range(pages):
            kept[i * mmap.PAGESIZE] = 1

    out = interleaved({"fresh": fresh, "reused": reused}, {"fresh": 3, "reused": 3}, min_time=0.0)
    assert all(f >= pages for f in out["fresh"]["minor_faults"]), out["fresh"]["minor_faults"]
    assert all(f < pages / 4 for f in out["reused"]["minor_faults"]), out["reused"]["minor_faults"]
    assert len(out["fresh"]["sys_s"]) == 3 and all(v >= 0 for v in out["fresh"]["sys_s"])


def test_ab_runs_a_second_build_beside_rnnkit(tmp_path):
    # --ab: the installed rnnkit's own package and compiled module imported a second time, under another name,
    # and timed as the peer rnnkit@base in every record; the same kernels, so the same outputs to the bit
    import rnnkit

    core_dir = os.path.dirname(rnnkit._isa.current.__file__)
    args = bench.parse_args(["--smoke", "--threads", "1", "--peers", "rnnkit", "--only", "kernels", "--ab",
                             os.path.dirname(rnnkit.__file__), "--ab-core", core_dir, "--json",
                             str(tmp_path / "ab.json")])
    try:
        out = bench.run(args)
        ab = sys.modules["rnnkit_ab"]
        assert ab is not rnnkit and ab.functional.gru_forward is not rnnkit.functional.gru_forward
        # the same instruction-set variant as the installed build's (_core, _core_avx2 or _core_avx512)
        assert ab._isa.current.__name__ == "rnnkit_ab." + rnnkit._isa.current.__name__.rsplit(".", 1)[1]
    finally:
        for name in [m for m in sys.modules if m == "rnnkit_ab" or m.startswith("rnnkit_ab.")]:
            del sys.modules[name]
    assert out["peers"] == ["rnnkit", "rnnkit@base"]
    assert out["ab"]["core_dir"] == core_dir and out["ab"]["package"] == os.path.dirname(rnnkit.__file__)
    assert {r["variant"] for r in out["results"]} == {"full", "varlen", "padded"}
    for r in out["results"]:
        s = r["peers"]["rnnkit@base"]
        assert s["median_s"] > 0 and s["rnnkit_speedup"] == s["median_s"] / r["peers"]["rnnkit"]["median_s"]
        assert s["max_abs_diff_vs_rnnkit"] == 0.0, (r["mode"], r["label"], r["variant"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--ab-core", core_dir])
    with pytest.raises(ImportError, match="no rnnkit package"):
        bench.run(bench.parse_args(["--smoke", "--only", "kernels", "--ab", str(tmp_path), "--json",
                                    str(tmp_path / "none.json")]))
