"""The one registry of the kernels' cells: what each is called, its gates, states, options, weights, parameters
of its own, activations, and the gate orders of Keras and ONNX. ``functional``, ``reference``, the layers,
``convert``, the benchmarks and the tests read a cell's facts here.

Shape legend: C = input features, H = hidden units, G = gates.
"""

from __future__ import annotations

from typing import NamedTuple

from . import activations as _activations

__all__ = ["CellSpec", "CELLS", "spec", "WEIGHTS", "cell_options", "options_valid"]

# the weights every cell has, in the kernels' order (PyTorch's layout)
WEIGHTS = ("W_ih", "W_hh", "b_ih", "b_hh")  # [G*H, C], [G*H, H], [G*H], [G*H]


class CellSpec(NamedTuple):
    name: str  # the prefix of the functional kernels: <name>_forward / <name>_backward
    gates: str  # one letter per gate block of W_ih, in the kernels' order
    states: tuple  # the states a sequence carries: ("h",) or ("h", "c")
    options: tuple  # the cell's own flags, (name, default)
    activations: tuple  # (role, default Keras name, the gates it acts on), in the kernels' (and ONNX's) order
    keras_activations: dict  # Keras argument -> the roles it sets
    keras_gates: str  # Keras' gate order (its kernel's column blocks)
    onnx_gates: str  # ONNX's gate order
    params: tuple  # the cell's own parameters: (argument name, vectors of H, their gates in order, ONNX's order)

    @property
    def G(self):
        return len(self.gates)

    def keras_order(self):
        """Keras' gate block k is the kernels' block keras_order()[k]."""
        return [self.gates.index(g) for g in self.keras_gates]

    def onnx_order(self):
        """ONNX's gate block k is the kernels' block onnx_order()[k]."""
        return [self.gates.index(g) for g in self.onnx_gates]


CELLS = {
    "rnn": CellSpec(
        name="rnn", gates="h", states=("h",), options=(),
        activations=(("f", "tanh", "h"),),
        keras_activations={"activation": ("f",)},
        keras_gates="h", onnx_gates="h", params=()),
    "lstm": CellSpec(
        name="lstm", gates="ifgo", states=("h", "c"), options=(),
        # f: the gates i, f, o; g: the cell input; h: on c_t for h_t = o * h(c_t)
        activations=(("f", "sigmoid", "ifo"), ("g", "tanh", "g"), ("h", "tanh", "")),
        keras_activations={"recurrent_activation": ("f",), "activation": ("g", "h")},
        keras_gates="ifgo", onnx_gates="iofg",
        params=(("peepholes", 3, "ifo", "iof"),)),
    "gru": CellSpec(
        name="gru", gates="rzn", states=("h",), options=(("reset_after", True),),
        activations=(("f", "sigmoid", "rz"), ("g", "tanh", "n")),
        keras_activations={"recurrent_activation": ("f",), "activation": ("g",)},
        keras_gates="zrn", onnx_gates="zrn", params=()),
}


def spec(name):
    """The CellSpec of ``name`` ("rnn", "lstm" or "gru")."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {name!r}") from None


def cell_options(cell, activations=None, clip=None, **flags):
    """The options the kernels of ``cell`` take: its flags, and ``activations`` / ``clip`` when they are not
    the defaults (so the default cell keeps its fused path). ValueError naming the argument otherwise."""
    spec = CELLS[cell]
    options = {name: bool(value) for name, value in flags.items()}
    if activations is not None:
        if isinstance(activations, str) or not hasattr(activations, "__len__"):
            raise ValueError(f"activations: expected a list of {len(spec.activations)} activations, got {activations!r}")
        if len(activations) != len(spec.activations):
            raise ValueError(f"activations: {cell} takes {len(spec.activations)} activations "
                             f"({', '.join(r for r, *_ in spec.activations)}), got {len(activations)}")
        triples = tuple(_activations.keras(a, "activations") if isinstance(a, str)
                        else _activations.check(a, "activations") for a in activations)
        if triples != tuple(_activations.KERAS[d] for _, d, _ in spec.activations):
            options["activations"] = triples
    if clip is not None:
        clip = float(clip)
        if not clip > 0 or clip == float("inf"):
            raise ValueError(f"clip: expected a positive finite number or None, got {clip}")
        options["clip"] = clip
    return options


def options_valid(options):
    """Whether a cache's options are as cell_options makes them."""
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        return False
    for key, value in options.items():
        if key == "activations":
            if not isinstance(value, tuple) or not all(isinstance(t, tuple) and len(t) == 3 for t in value):
                return False
        elif key == "clip":
            if not isinstance(value, float):
                return False
        elif not isinstance(value, bool):
            return False
    return True
