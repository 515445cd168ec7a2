"""One adapter per peer. Each builds, for a Problem, a callable that does one unit of work:

- forward(problem)  -> fn() running inference over the whole batch, returning y [T, N, H]
- train(problem)    -> fn() running forward + backward, computing the gradients w.r.t. the input and all weights,
                       returning dx [T, N, C]
- stream(case, xs, block) -> fn() running `block` single steps at batch 1, the state carried from call to call

A method returns None when the peer cannot do that work (e.g. ONNX Runtime has no training); the harness
records it as skipped. Every peer gets the same float32 weights and inputs (PyTorch's layout).
"""

from __future__ import annotations

import io
import time
import warnings

import numpy as np

from benchmarks.cases import stream_weights


def import_rnnkit(attempts: int = 20, delay: float = 3.0):
    """Import rnnkit, retrying for a while: someone may be reinstalling it concurrently."""
    import importlib

    for attempt in range(attempts):
        try:
            rnnkit = importlib.import_module("rnnkit")
            importlib.import_module("rnnkit.functional")
            importlib.import_module("rnnkit.reference")
            return rnnkit
        except ImportError:
            if attempt == attempts - 1:
                raise
            for name in [m for m in list(__import__("sys").modules) if m == "rnnkit" or m.startswith("rnnkit.")]:
                del __import__("sys").modules[name]
            time.sleep(delay)


def import_rnnkit_from(path, name="rnnkit_ab", core_dir=None):
    """Another build of rnnkit, imported from `path` as the package `name` beside `rnnkit` (run.py's --ab).

    path: the root of a checkout (its package in python/rnnkit) or a package directory. Its compiled modules
    (``_core``...) are taken from core_dir if given, else from the package directory if they are there, else
    from the most recently built of path/build/*/ (an editable install leaves them outside the checkout, in
    site-packages and in its build directory). rnnkit imports its own modules relatively only, so the copy runs
    its own Python code and its own kernels. Returns (the package, the directory its compiled modules came from).
    """
    import glob
    import importlib.machinery
    import importlib.util
    import os
    import sys

    path = os.path.abspath(path)
    package = next((d for d in (path, os.path.join(path, "rnnkit"), os.path.join(path, "python", "rnnkit"))
                    if os.path.isfile(os.path.join(d, "__init__.py"))), None)
    if package is None:
        raise ImportError(f"--ab: no rnnkit package at {path!r} (nor in its rnnkit/ or python/rnnkit/)")

    def has_core(d):
        return any(os.path.isfile(os.path.join(d, "_core" + s)) for s in importlib.machinery.EXTENSION_SUFFIXES)

    if core_dir is None:
        built = sorted((d for d in glob.glob(os.path.join(path, "build", "*")) if has_core(d)),
                       key=lambda d: max(os.path.getmtime(f) for f in glob.glob(os.path.join(d, "_core*"))))
        core_dir = package if has_core(package) else built[-1] if built else None
    if core_dir is None or not has_core(os.path.abspath(core_dir)):
        raise ImportError(f"--ab: no compiled module _core for {package!r} (looked in it and in {path}/build/*/)")
    core_dir = os.path.abspath(core_dir)
    if name in sys.modules:
        raise ImportError(f"--ab: a module {name!r} is already imported")
    # the package's modules are looked for in core_dir first, then in the package's own directory
    spec = importlib.util.spec_from_file_location(name, os.path.join(package, "__init__.py"),
                                                  submodule_search_locations=[core_dir, package])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        importlib.import_module(f"{name}.functional")
    except BaseException:
        for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[m]
        raise
    return module, core_dir


class Peer:
    name = "peer"
    can_train = True

    def version(self) -> str:
        return ""

    def set_threads(self, n: int) -> None:
        pass

    def forward(self, problem):
        return None

    def train(self, problem):
        return None

    def stream(self, case, xs, block):
        return None


class FunctionalPeer(Peer):
    """rnnkit.functional and rnnkit.reference: the same signatures, one adapter.

    Multi-layer = stacked calls layer by layer; backward in reverse order, each layer's dx the dy of the one below.
    """

    def __init__(self, name, module, threads_setter=None, version=""):
        self.name = name
        self.module = module
        self._threads_setter = threads_setter
        self._version = version

    def version(self):
        return self._version

    def set_threads(self, n):
        if self._threads_setter is not None:
            self._threads_setter(n)

    def _fns(self, cell):
        return getattr(self.module, f"{cell}_forward"), getattr(self.module, f"{cell}_backward")

    def forward(self, problem):
        fwd, _ = self._fns(problem.case.cell)
        x, layers, lengths = problem.x, problem.layers, problem.lengths

        def run():
            h = x
            for weights in layers:  # inference: no cache kept for a backward pass, as under torch.no_grad()
                h = fwd(h, *weights, lengths=lengths, return_cache=False)[0]
            return h

        return run

    def train(self, problem):
        fwd, bwd = self._fns(problem.case.cell)
        x, layers, lengths, dy = problem.x, problem.layers, problem.lengths, problem.dy

        def run():
            h, caches = x, []
            for weights in layers:
                out = fwd(h, *weights, lengths=lengths)  # (y, h_n[, c_n], cache)
                h = out[0]
                caches.append(out[-1])
            d = dy
            for cache in reversed(caches):
                d = bwd(cache, d)[0]  # (dx, dh0[, dc0], dW_ih, dW_hh, db_ih, db_hh): dx is dy of the layer below
            return d  # dx of the first layer, like torch's x.grad

        return run

    def stream(self, case, xs, block):
        fwd, _ = self._fns(case.cell)
        weights = stream_weights(case)
        n_states = 2 if case.cell == "lstm" else 1
        state = [tuple(np.zeros((1, case.H), np.float32) for _ in range(n_states))]
        pos = [0]
        S = len(xs)

        def run():
            s, i = state[0], pos[0]
            for _ in range(block):
                # lstm_forward(x, W.., h0, c0) -> y, h_n, c_n, cache; gru/rnn_forward(x, W.., h0) -> y, h_n, cache
                out = fwd(xs[i], *weights, *s, return_cache=False)
                s = out[1:1 + n_states]
                i = i + 1 if i + 1 < S else 0
            state[0], pos[0] = s, i
            return s

        return run


class TorchPeer(Peer):
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def version(self):
        return self.torch.__version__

    def set_threads(self, n):
        self.torch.set_num_threads(n)

    def module(self, case, layers):
        """nn.LSTM / nn.GRU / nn.RNN(tanh) with num_layers=L holding the given weights."""
        torch = self.torch
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[case.cell]
        m = cls(case.C, case.H, num_layers=case.L)
        with torch.no_grad():
            for layer, weights in enumerate(layers):
                for pname, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weights):
                    getattr(m, f"{pname}_l{layer}").copy_(torch.from_numpy(w))
        return m.float()

    def _run_module(self, m, x, lengths, T):
        """y [T, N, H]; with lengths, packing and unpacking are part of the work (a user pays them)."""
        if lengths is None:
            return m(x)[0]
        pack = self.torch.nn.utils.rnn
        packed = pack.pack_padded_sequence(x, lengths, enforce_sorted=False)
        return pack.pad_packed_sequence(m(packed)[0], total_length=T)[0]

    def forward(self, problem):
        torch = self.torch
        m = self.module(problem.case, problem.layers)
        x = torch.from_numpy(problem.x)
        lengths = None if problem.lengths is None else torch.from_numpy(problem.lengths)
        T = problem.case.T

        def run():
            with torch.no_grad():
                return self._run_module(m, x, lengths, T)

        return run

    def train(self, problem):
        torch = self.torch
        m = self.module(problem.case, problem.layers)
        x = torch.from_numpy(problem.x).requires_grad_(True)
        dy = torch.from_numpy(problem.dy)
        lengths = None if problem.lengths is None else torch.from_numpy(problem.lengths)
        T = problem.case.T

        def run():
            m.zero_grad(set_to_none=True)
            x.grad = None
            y = self._run_module(m, x, lengths, T)
            y.backward(dy)  # gradients w.r.t. x and every weight, like rnnkit's backward
            return x.grad

        return run

    def stream(self, case, xs, block):
        torch = self.torch
        cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[case.cell]
        cell = cls(case.C, case.H)
        with torch.no_grad():
            for pname, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), stream_weights(case)):
                getattr(cell, pname).copy_(torch.from_numpy(w))
        xt = [torch.from_numpy(x[0]) for x in xs]  # each [1, C]
        is_lstm = case.cell == "lstm"
        zeros = torch.zeros(1, case.H)
        state = [(zeros, zeros.clone()) if is_lstm else zeros]
        pos = [0]
        S = len(xt)

        def run():
            s, i = state[0], pos[0]
            with torch.no_grad():
                for _ in range(block):
                    s = cell(xt[i], s)  # LSTMCell: (h, c) -> (h, c); GRUCell / RNNCell: h -> h
                    i = i + 1 if i + 1 < S else 0
            state[0], pos[0] = s, i
            return s

        return run


class OnnxRuntimePeer(Peer):
    """Inference only: a model exported by torch.onnx.export from the same torch module (same weights)."""

    name = "onnxruntime"
    can_train = False

    def __init__(self, torch_peer: TorchPeer):
        import onnxruntime

        self.ort = onnxruntime
        self.torch_peer = torch_peer
        self.threads = 1

    def version(self):
        return self.ort.__version__

    def set_threads(self, n):
        self.threads = n

    def _session(self, module, example_inputs, input_names, output_names):
        torch = self.torch_peer.torch
        f = io.BytesIO()
        with warnings.catch_warnings():
            # the legacy (TorchScript) exporter warns that it is deprecated and about batch sizes; it works
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example_inputs, f, dynamo=False, input_names=input_names,
                              output_names=output_names)
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self.ort.InferenceSession(f.getvalue(), opts, providers=["CPUExecutionProvider"])

    def forward(self, problem):
        if problem.lengths is not None:
            return None  # torch.onnx.export cannot export packed sequences
        torch = self.torch_peer.torch
        m = self.torch_peer.module(problem.case, problem.layers)
        sess = self._session(m, (torch.from_numpy(problem.x),), ["x"], ["y"])
        feeds = {"x": problem.x}

        def run():
            return sess.run(["y"], feeds)[0]

        return run

    def stream(self, case, xs, block):
        torch = self.torch_peer.torch
        m = self.torch_peer.module(case, [stream_weights(case)])
        is_lstm = case.cell == "lstm"
        names = ["x", "h0", "c0"] if is_lstm else ["x", "h0"]
        zeros = np.zeros((1, 1, case.H), np.float32)  # [layers, N, H]
        example = (torch.from_numpy(xs[0]), torch.from_numpy(zeros)) if not is_lstm else \
            (torch.from_numpy(xs[0]), (torch.from_numpy(zeros), torch.from_numpy(zeros)))
        out_names = ["y", "h_n", "c_n"] if is_lstm else ["y", "h_n"]
        sess = self._session(m, example, names, out_names)
        state = [[zeros] * (len(names) - 1)]
        pos = [0]
        S = len(xs)

        def run():
            s, i = state[0], pos[0]
            for _ in range(block):
                s = sess.run(out_names[1:], dict(zip(names, (xs[i], *s))))
                i = i + 1 if i + 1 < S else 0
            state[0], pos[0] = s, i
            return s

        return run


def available_peers(include=("rnnkit", "reference", "torch", "onnxruntime")):
    """The peers that are installed, in a fixed order (rnnkit first), and why the others are missing."""
    peers, missing = [], {}
    rnnkit = import_rnnkit()
    if "rnnkit" in include:
        peers.append(FunctionalPeer("rnnkit", rnnkit.functional, rnnkit.set_num_threads, rnnkit.__version__))
    if "reference" in include:
        peers.append(FunctionalPeer("reference", rnnkit.reference, None, "numpy " + np.__version__))
    torch_peer = None
    if "torch" in include or "onnxruntime" in include:
        try:
            torch_peer = TorchPeer()
        except ImportError as e:
            missing["torch"] = str(e)
    if "torch" in include and torch_peer is not None:
        peers.append(torch_peer)
    if "onnxruntime" in include:
        if torch_peer is None:
            missing["onnxruntime"] = "needs torch to export the model"
        else:
            try:
                peers.append(OnnxRuntimePeer(torch_peer))
            except ImportError as e:
                missing["onnxruntime"] = str(e)
    return peers, missing
