"""rnnkit.optimizers against hand transcriptions of Keras 3's documented rules, and against torch.optim."""

import json
import math

import numpy as np
import pytest

from rnnkit import optimizers
from rnnkit.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

SHAPES = [(3, 4), (5,)]  # two variables, so global clipping sees more than one
STEPS = 6


# ---------------------------------------------------------------------------------------------
# NumPy transcriptions of the documented rules: one step on one variable, state in a dict
# ---------------------------------------------------------------------------------------------

def ref_sgd(w, g, s, lr, t, hp):
    if hp["momentum"] == 0:
        return w - lr * g
    s["v"] = hp["momentum"] * s.get("v", 0.0) - lr * g
    if hp["nesterov"]:
        return w + hp["momentum"] * s["v"] - lr * g
    return w + s["v"]


def ref_adam(w, g, s, lr, t, hp):
    b1, b2 = hp["beta_1"], hp["beta_2"]
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
    v = s["v"]
    if hp["amsgrad"]:
        s["v_hat"] = v = np.maximum(s.get("v_hat", 0.0), v)
    return w - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * s["m"] / (np.sqrt(v) + hp["epsilon"])


def ref_rmsprop(w, g, s, lr, t, hp):
    rho = hp["rho"]
    s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g ** 2
    if hp["centered"]:
        s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
        increment = lr * g / np.sqrt(s["v"] - s["a"] ** 2 + hp["epsilon"])
    else:
        increment = lr * g / np.sqrt(s["v"] + hp["epsilon"])
    if hp["momentum"] > 0:
        s["p"] = hp["momentum"] * s.get("p", 0.0) + increment
        return w - s["p"]
    return w - increment


def ref_adagrad(w, g, s, lr, t, hp):
    s["acc"] = s.get("acc", hp["initial_accumulator_value"]) + g ** 2
    return w - lr * g / np.sqrt(s["acc"] + hp["epsilon"])


REFERENCE = {SGD: ref_sgd, Adam: ref_adam, AdamW: ref_adam, RMSprop: ref_rmsprop, Adagrad: ref_adagrad}


def ref_clip(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    if clipnorm is not None:
        return [g * clipnorm / max(np.linalg.norm(g), clipnorm) for g in grads]
    if global_clipnorm is not None:
        norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
        return [g * global_clipnorm / max(norm, global_clipnorm) for g in grads]
    if clipvalue is not None:
        return [np.minimum(np.maximum(g, -clipvalue), clipvalue) for g in grads]
    return grads


def ref_trajectory(opt_class, hp, weights, grad_steps, schedule=None):
    """Weights after every step of the documented rule (hp: the optimizer's get_config())."""
    weights, states, out = [w.copy() for w in weights], [{} for _ in weights], []
    for t, grads in enumerate(grad_steps, start=1):
        grads = ref_clip(grads, hp["clipnorm"], hp["clipvalue"], hp["global_clipnorm"])
        lr = schedule(t - 1) if schedule else hp["learning_rate"]
        for i, (g, s) in enumerate(zip(grads, states)):
            if hp["weight_decay"] is not None:
                weights[i] = weights[i] - weights[i] * hp["weight_decay"] * lr
            weights[i] = REFERENCE[opt_class](weights[i], g, s, lr, t, hp)
        out.append([w.copy() for w in weights])
    return out


def run(opt, weights, grad_steps):
    weights, out = [w.copy() for w in weights], []
    for grads in grad_steps:
        opt.apply_gradients(zip(grads, weights))
        out.append([w.copy() for w in weights])
    return out


@pytest.fixture
def problem(rng):
    weights = [rng.standard_normal(shape) for shape in SHAPES]
    grad_steps = [[rng.standard_normal(shape) for shape in SHAPES] for _ in range(STEPS)]
    return weights, grad_steps


CONFIGS = [
    (SGD, {}),
    (SGD, {"learning_rate": 0.1, "momentum": 0.9}),
    (SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    (Adam, {}),
    (Adam, {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-3, "amsgrad": True}),
    (AdamW, {}),
    (AdamW, {"learning_rate": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    (RMSprop, {}),
    (RMSprop, {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5}),
    (RMSprop, {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    (Adagrad, {}),
    (Adagrad, {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-3}),
    (SGD, {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.01}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for cls, kw in CONFIGS]


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS, ids=IDS)
def test_update_matches_documented_rule(cls, kwargs, problem):
    weights, grad_steps = problem
    opt = cls(**kwargs)
    got = run(opt, weights, grad_steps)
    expected = ref_trajectory(cls, opt.get_config(), weights, grad_steps)
    for step_got, step_expected in zip(got, expected):
        for w_got, w_expected in zip(step_got, step_expected):
            np.testing.assert_allclose(w_got, w_expected, rtol=1e-12, atol=1e-14)
    assert opt.iterations == STEPS
    assert not np.allclose(got[-1][0], weights[0])  # the variables really moved


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"clipvalue": 0.3}, {"global_clipnorm": 0.7}],
                         ids=lambda c: next(iter(c)))
@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop])
def test_clipping_variants_match_documented_rule(cls, clip, problem):
    weights, grad_steps = problem
    opt = cls(**clip)
    got = run(opt, weights, grad_steps)
    expected = ref_trajectory(cls, opt.get_config(), weights, grad_steps)
    for w_got, w_expected in zip(got[-1], expected[-1]):
        np.testing.assert_allclose(w_got, w_expected, rtol=1e-12, atol=1e-14)


def test_clip_gradients_values():
    g = [np.array([3.0, 4.0]), np.array([0.3, 0.4])]  # norms 5 and 0.5
    by_norm = optimizers.clip_gradients(g, clipnorm=1.0)
    np.testing.assert_allclose(by_norm[0], [0.6, 0.8], rtol=1e-15)
    np.testing.assert_array_equal(by_norm[1], g[1])  # below the threshold: unchanged
    by_global = optimizers.clip_gradients(g, global_clipnorm=1.0)
    assert math.isclose(math.sqrt(sum(np.sum(x ** 2) for x in by_global)), 1.0, rel_tol=1e-14)
    np.testing.assert_allclose(by_global[0] / g[0], by_global[1] / g[1], rtol=1e-15)  # one common scale
    np.testing.assert_array_equal(optimizers.clip_gradients(g, global_clipnorm=100.0)[0], g[0])
    np.testing.assert_array_equal(optimizers.clip_gradients(g, clipvalue=0.35)[1], [0.3, 0.35])
    zero = optimizers.clip_gradients([np.zeros(3)], clipnorm=1.0)[0]
    np.testing.assert_array_equal(zero, np.zeros(3))
    nonfinite = optimizers.clip_gradients([np.array([np.inf, 1.0]), np.ones(2)], global_clipnorm=1.0)
    assert np.isnan(nonfinite[1]).all()  # as Keras: a non-finite global norm poisons every gradient
    assert g[0][0] == 3.0  # inputs untouched


def test_only_one_clipping_option():
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipnorm must be > 0"):
        SGD(clipnorm=0.0)


# ---------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "step", "expected"), [
    (optimizers.ExponentialDecay(0.1, 10, 0.5), 0, 0.1),
    (optimizers.ExponentialDecay(0.1, 10, 0.5), 5, 0.1 * 0.5 ** 0.5),
    (optimizers.ExponentialDecay(0.1, 10, 0.5, staircase=True), 15, 0.05),
    (optimizers.InverseTimeDecay(0.1, 10, 0.5), 20, 0.05),
    (optimizers.InverseTimeDecay(0.1, 10, 0.5, staircase=True), 15, 0.1 / 1.5),
    (optimizers.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 10, 1.0),
    (optimizers.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 11, 0.5),
    (optimizers.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 20, 0.5),
    (optimizers.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 21, 0.1),
    (optimizers.CosineDecay(1.0, 10, alpha=0.1), 0, 1.0),
    (optimizers.CosineDecay(1.0, 10, alpha=0.1), 5, 0.55),
    (optimizers.CosineDecay(1.0, 10, alpha=0.1), 10, 0.1),
    (optimizers.CosineDecay(1.0, 10, alpha=0.1), 25, 0.1),
    (optimizers.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=5), 2, 0.4),
    (optimizers.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=5), 5, 1.0),
    (optimizers.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=5), 10, 0.5),
])
def test_schedule_values(schedule, step, expected):
    assert math.isclose(schedule(step), expected, rel_tol=1e-14, abs_tol=1e-15)


def test_schedule_drives_the_optimizer(problem):
    weights, grad_steps = problem
    schedule = optimizers.ExponentialDecay(0.1, 2, 0.5)
    opt = SGD(learning_rate=schedule, momentum=0.5)
    assert opt.learning_rate == 0.1
    got = run(opt, weights, grad_steps)
    assert opt.learning_rate == schedule(STEPS)
    expected = ref_trajectory(SGD, opt.get_config(), weights, grad_steps, schedule=schedule)
    for w_got, w_expected in zip(got[-1], expected[-1]):
        np.testing.assert_allclose(w_got, w_expected, rtol=1e-12)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        opt.learning_rate = 0.5


def test_schedule_validation():
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        optimizers.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="one more entry"):
        optimizers.PiecewiseConstantDecay([1, 2], [1.0, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        optimizers.PiecewiseConstantDecay([2, 1], [1.0, 0.5, 0.1])


# ---------------------------------------------------------------------------------------------
# state, configuration, lookup
# ---------------------------------------------------------------------------------------------

STATE_CONFIGS = [
    (SGD, {"momentum": 0.9, "nesterov": True}),
    (SGD, {}),
    (Adam, {"amsgrad": True, "clipnorm": 1.0}),
    (AdamW, {"learning_rate": optimizers.CosineDecay(0.01, 4)}),
    (RMSprop, {"momentum": 0.5, "centered": True}),
    (Adagrad, {"global_clipnorm": 1.0}),
]


@pytest.mark.parametrize(("cls", "kwargs"), STATE_CONFIGS, ids=[c.__name__ for c, _ in STATE_CONFIGS])
def test_state_round_trip_resumes_bitwise(cls, kwargs, problem):
    weights, grad_steps = problem
    weights = [w.astype(np.float32) for w in weights]
    straight = run(cls(**kwargs), weights, grad_steps)[-1]

    first = cls(**kwargs)
    halfway = run(first, weights, grad_steps[:3])[-1]
    state = first.get_state()
    config = json.loads(json.dumps(optimizers.serialize(first)))  # plain JSON data
    run(first, halfway, grad_steps[3:])  # keeps training: the saved state must be a copy

    resumed = optimizers.deserialize(config)
    resumed.set_state(state)
    assert resumed.iterations == 3
    for got, expected in zip(run(resumed, halfway, grad_steps[3:])[-1], straight):
        assert got.dtype == np.float32
        assert got.tobytes() == expected.tobytes()


def test_state_layout_and_dtypes(problem):
    weights, grad_steps = problem
    weights = [w.astype(np.float32) for w in weights]
    opt = Adam(amsgrad=True)
    assert set(opt.get_state()) == {"iterations"}
    run(opt, weights, grad_steps[:2])
    state = opt.get_state()
    assert set(state) == {"iterations"} | {f"{i}/{n}" for i in range(2) for n in ("momentum", "velocity", "velocity_hat")}
    assert state["iterations"].dtype == np.int64 and int(state["iterations"]) == 2
    assert all(state[f"{i}/momentum"].dtype == np.float32 and state[f"{i}/momentum"].shape == SHAPES[i]
               for i in range(2))


def test_set_state_rejects_foreign_state(problem):
    weights, grad_steps = problem
    adam = Adam()
    run(adam, weights, grad_steps[:1])
    with pytest.raises(ValueError, match="do not match"):
        RMSprop().set_state(adam.get_state())
    with pytest.raises(ValueError, match="do not match"):
        Adam().set_state({"0/momentum": np.zeros(2)})
    other = Adam()
    other.set_state(adam.get_state())
    with pytest.raises(ValueError, match=r"slot '0/momentum' has shape \(3, 4\)"):
        other.apply_gradients([(np.zeros(2), np.zeros(2)), (np.zeros(5), np.zeros(5))])


def test_keras_defaults():
    assert SGD().get_config() == {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": None,
                                  "clipnorm": None, "clipvalue": None, "global_clipnorm": None}
    adam = Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.001, 0.9, 0.999, 1e-7, False)
    assert (AdamW().weight_decay, AdamW().learning_rate) == (0.004, 0.001)
    rms = RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    ada = Adagrad()
    assert (ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) == (0.001, 0.1, 1e-7)


def test_get_by_name_config_and_instance():
    assert isinstance(optimizers.get("adam"), Adam)
    assert isinstance(optimizers.get("RMSprop"), RMSprop)
    opt = SGD(momentum=0.5)
    assert optimizers.get(opt) is opt
    rebuilt = optimizers.get(optimizers.serialize(opt))
    assert isinstance(rebuilt, SGD) and rebuilt.get_config() == opt.get_config()
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamax'; known names: \['adagrad', 'adam', 'adamw', "
                                         r"'rmsprop', 'sgd'\]"):
        optimizers.get("adamax")
    with pytest.raises(TypeError, match="optimizer must be"):
        optimizers.get(3)
    with pytest.raises(ValueError, match="not a optimizer"):
        optimizers.get(optimizers.serialize(optimizers.ExponentialDecay(0.1, 1, 0.5)))


def test_learning_rate_is_settable_and_in_config():
    opt = Adam()
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    with pytest.raises(ValueError, match="learning_rate must be in"):
        opt.learning_rate = -1.0


def test_argument_validation(problem):
    weights, _ = problem
    with pytest.raises(ValueError, match="momentum must be in"):
        SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_2 must be in"):
        Adam(beta_2=1.0)
    with pytest.raises(ValueError, match="AdamW needs a float weight_decay"):
        AdamW(weight_decay=None)
    opt = SGD()
    with pytest.raises(ValueError, match=r"gradient 1 has shape \(4,\), expected its variable's shape \(5,\)"):
        opt.apply_gradients([(np.zeros((3, 4)), weights[0].copy()), (np.zeros(4), weights[1].copy())])
    with pytest.raises(TypeError, match="variable 0 must be a writable floating numpy array"):
        opt.apply_gradients([(np.zeros(3), np.zeros(3, dtype=np.int64))])
    opt.apply_gradients([(np.zeros(3), np.zeros(3))])
    with pytest.raises(ValueError, match="got 2 variables, but this optimizer was built for 1"):
        opt.apply_gradients([(np.zeros(3), np.zeros(3)), (np.zeros(3), np.zeros(3))])


# ---------------------------------------------------------------------------------------------
# against torch.optim (float64, copied initial weights and gradients)
# ---------------------------------------------------------------------------------------------

def torch_run(torch, make, weights, grad_steps, before_step=None):
    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in weights]
    opt = make(params)
    for t, grads in enumerate(grad_steps, start=1):
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float64)
        if before_step:
            before_step(opt, t)
        opt.step()
    return [p.detach().numpy() for p in params]


def assert_trajectories_equal(got, expected):
    for w_got, w_expected in zip(got, expected):
        np.testing.assert_allclose(w_got, w_expected, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch(problem, nesterov):
    torch = pytest.importorskip("torch")
    weights, grad_steps = problem
    got = run(SGD(0.1, momentum=0.9, nesterov=nesterov), weights, grad_steps)[-1]
    expected = torch_run(torch, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=nesterov),
                         weights, grad_steps)
    assert_trajectories_equal(got, expected)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
def test_adam_matches_torch_with_mapped_epsilon(problem, amsgrad, decoupled):
    """Keras' epsilon equals PyTorch's eps * sqrt(1 - beta_2**t) (see Adam's docstring)."""
    torch = pytest.importorskip("torch")
    weights, grad_steps = problem
    epsilon, beta_2 = 1e-2, 0.99  # large, so a wrong mapping would show
    if decoupled:
        ours = AdamW(0.05, weight_decay=0.1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)
        make = lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1, betas=(0.9, beta_2), amsgrad=amsgrad)
    else:
        ours = Adam(0.05, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)
        make = lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, beta_2), amsgrad=amsgrad)

    def map_epsilon(opt, t):
        opt.param_groups[0]["eps"] = epsilon / math.sqrt(1 - beta_2 ** t)

    got = run(ours, weights, grad_steps)[-1]
    assert_trajectories_equal(got, torch_run(torch, make, weights, grad_steps, map_epsilon))
    if not decoupled:  # the same constant eps in both does not match: the mapping is needed
        unmapped = torch_run(torch, lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, beta_2), eps=epsilon,
                                                               amsgrad=amsgrad), weights, grad_steps)
        assert not np.allclose(got[0], unmapped[0], rtol=1e-6)


@pytest.mark.parametrize(("momentum", "centered"), [(0.0, False), (0.5, False), (0.5, True)])
def test_rmsprop_matches_torch_without_epsilon(problem, momentum, centered):
    torch = pytest.importorskip("torch")
    weights, grad_steps = problem
    got = run(RMSprop(0.01, rho=0.8, momentum=momentum, epsilon=0.0, centered=centered), weights, grad_steps)[-1]
    expected = torch_run(torch, lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.0, momentum=momentum,
                                                              centered=centered), weights, grad_steps)
    assert_trajectories_equal(got, expected)


def test_adagrad_matches_torch_without_epsilon(problem):
    torch = pytest.importorskip("torch")
    weights, grad_steps = problem
    got = run(Adagrad(0.1, initial_accumulator_value=0.1, epsilon=0.0), weights, grad_steps)[-1]
    expected = torch_run(torch, lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1, eps=0.0),
                         weights, grad_steps)
    assert_trajectories_equal(got, expected)
