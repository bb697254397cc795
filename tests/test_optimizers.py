"""nc.optimizers against torch.optim: the same parameters and gradients, several steps.

Each test feeds one fixed sequence of gradients to both sides, so it checks the update rule
itself (a whole model's gradients differ by float32 rounding, which Adam and RMSprop amplify for
near-zero gradients; whole-model training is compared with SGD in test_models.py).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nanocnn as nc
from helpers import assert_close, host, randn

SHAPES = [(5,), (16, 3, 3, 3), (33, 7)]
STEPS = 5

# (id, nanocnn optimizer, torch optimizer factory)
CASES = [
    ("sgd", lambda: nc.optimizers.SGD(learning_rate=0.1),
     lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("sgd_momentum", lambda: nc.optimizers.SGD(learning_rate=0.05, momentum=0.9),
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    ("sgd_nesterov", lambda: nc.optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True)),
    ("adam_defaults", lambda: nc.optimizers.Adam(),
     lambda ps: torch.optim.Adam(ps, lr=0.001, betas=(0.9, 0.999), eps=1e-7)),
    ("adam_custom", lambda: nc.optimizers.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.99,
                                               epsilon=1e-5),
     lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-5)),
    ("rmsprop_defaults", lambda: nc.optimizers.RMSprop(),
     lambda ps: torch.optim.RMSprop(ps, lr=0.001, alpha=0.9, eps=1e-7)),
    ("rmsprop_momentum", lambda: nc.optimizers.RMSprop(learning_rate=0.01, rho=0.8, momentum=0.9),
     lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-7, momentum=0.9)),
    ("rmsprop_centered", lambda: nc.optimizers.RMSprop(learning_rate=0.01, centered=True),
     lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7, centered=True)),
    ("rmsprop_centered_momentum",
     lambda: nc.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
     lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5,
                                    centered=True)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_optimizer_matches_torch(case, device, rng):
    _, make, make_torch = case
    params = [randn(rng, s) for s in SHAPES]
    grads = [[randn(rng, s) for s in SHAPES] for _ in range(STEPS)]
    ours = [nc.tensor(p, device=device) for p in params]
    theirs = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    opt, topt = make(), make_torch(theirs)
    for step in range(STEPS):
        opt.apply(ours, [nc.tensor(g, device=device) for g in grads[step]])
        for t, g in zip(theirs, grads[step]):
            t.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            assert_close(p, t.detach().numpy(), "optimizer_step",
                         err_msg=f"param {i} {SHAPES[i]} after step {step + 1}")
    assert opt.iterations == STEPS


def test_keras_defaults():
    sgd, adam, rms = (nc.optimizers.get(n) for n in ("sgd", "adam", "rmsprop"))
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov) == (0.01, 0.0, False)
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == \
        (0.001, 0.9, 0.0, 1e-7, False)


def test_learning_rate_can_change_between_steps(rng):
    p = nc.tensor(np.ones(4, np.float32))
    opt = nc.optimizers.SGD(learning_rate=0.5)
    g = nc.tensor(np.ones(4, np.float32))
    opt.apply([p], [g])
    opt.learning_rate = 0.25
    opt.apply([p], [g])
    np.testing.assert_allclose(host(p), 1 - 0.5 - 0.25)


@pytest.mark.parametrize("make, message", [
    (lambda: nc.optimizers.SGD(learning_rate=-1), "learning_rate must be in"),
    (lambda: nc.optimizers.SGD(momentum=1.5), "momentum must be in"),
    (lambda: nc.optimizers.SGD(nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: nc.optimizers.Adam(beta_1=1.0), r"beta_1 must be in \[0.0, 1.0\)"),
    (lambda: nc.optimizers.Adam(epsilon=float("nan")), "epsilon must be in"),
    (lambda: nc.optimizers.RMSprop(rho=2), "rho must be in"),
    (lambda: nc.optimizers.get("adagrad"), "optimizer must be one of"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_state_is_bound_to_one_parameter_list():
    opt = nc.optimizers.Adam()
    a = [nc.tensor(np.ones(3, np.float32))]
    opt.apply(a, [nc.tensor(np.ones(3, np.float32))])
    b = [nc.tensor(np.ones(3, np.float32)), nc.tensor(np.ones(2, np.float32))]
    with pytest.raises(ValueError, match="already holds state for 1 other parameters, got 2"):
        opt.apply(b, b)


def test_state_round_trip(rng):
    params = [nc.tensor(randn(rng, (4, 3))), nc.tensor(randn(rng, (3,)))]
    grads = [nc.tensor(randn(rng, (4, 3))), nc.tensor(randn(rng, (3,)))]
    opt = nc.optimizers.RMSprop(momentum=0.9, centered=True)
    opt.apply(params, grads)
    state = opt.get_state()
    assert sorted(state) == ["0.mg", "0.momentum", "0.ms", "1.mg", "1.momentum", "1.ms"]
    copy = nc.optimizers.RMSprop(momentum=0.9, centered=True)
    copy_params = [nc.tensor(host(p)) for p in params]
    copy.set_state(state, copy_params)
    opt.apply(params, grads)
    copy.apply(copy_params, grads)
    for a, b in zip(params, copy_params):
        np.testing.assert_array_equal(host(a), host(b))
