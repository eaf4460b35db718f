"""The symexp value head of the spiking policies (policies.value_head)."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO

import policies
from policies import GRSNPolicy
from policies.value_head import SYMEXP_MAX_LOG, SymExpValueHead, symexp


def test_symexp_values_gradient_and_clamp():
    y = torch.tensor([-2.0, -1.0, 0.0, 0.5, 3.0], requires_grad=True)  # slope 1 at 0
    v = symexp(y)
    expected = [-(math.e ** 2 - 1), -(math.e - 1), 0.0, math.exp(0.5) - 1, math.e ** 3 - 1]
    torch.testing.assert_close(v, torch.tensor(expected))
    v.sum().backward()
    torch.testing.assert_close(y.grad, torch.exp(y.detach().abs()))
    # a diverging head gives a large finite value, not inf
    big = symexp(torch.tensor([1e4, -1e4]))
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, torch.tensor([1.0, -1.0]) * math.expm1(SYMEXP_MAX_LOG))


def _policy(**kw):
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    return GRSNPolicy(space, gym.spaces.Discrete(2), lambda _: 1e-3, normalize_obs=False,
                      grsn_hidden_size=16, **kw)


def test_symexp_value_head_is_the_default_linear_head_through_symexp():
    torch.manual_seed(0)
    sym = _policy(value_head="symexp")
    torch.manual_seed(0)
    lin = _policy()  # the default: SB3's linear head
    assert type(sym.value_net) is SymExpValueHead and isinstance(sym.value_net, torch.nn.Linear)
    assert type(lin.value_net) is torch.nn.Linear
    # same parameters, same state-dict keys, same (orthogonal) initial weights
    assert sym.state_dict().keys() == lin.state_dict().keys()
    for (k, a), b in zip(sym.state_dict().items(), lin.state_dict().values()):
        assert torch.equal(a, b), k
    x = torch.randn(5, 64)
    torch.testing.assert_close(sym.value_net(x), symexp(lin.value_net(x)))
    # the head is in the optimizer (a replaced module must not be left out of training)
    opt_params = {id(p) for g in sym.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in opt_params for p in sym.value_net.parameters())
    with pytest.raises(ValueError, match="value_head must be one of"):
        _policy(value_head="log")


def _explained_variance_after_fitting(value_head: str) -> float:
    """Fit the critic (the policy's own optimizer, RecurrentPPO's global clip of 0.5) to
    state-dependent returns of about 60 +- 10, as CartPole's discounted +1 rewards reach."""
    torch.manual_seed(0)
    pol = _policy(value_head=value_head)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 2, generator=g)
    returns = 60 + 10 * torch.tanh(2 * x[:, :1])
    hidden = pol.lstm_actor.hidden_size
    state = (torch.zeros(1, 256, hidden), torch.zeros(1, 256, hidden))
    starts = torch.ones(256)
    for _ in range(200):
        loss = 0.5 * ((pol.predict_values(x, state, starts) - returns) ** 2).mean()
        pol.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pol.parameters(), 0.5)
        pol.optimizer.step()
    with torch.no_grad():
        values = pol.predict_values(x, state, starts)
    return float(1 - (returns - values).var() / returns.var())


def test_symexp_head_follows_large_returns_where_a_linear_head_saturates():
    """The failure this head fixes: a linear head on a tanh MLP reaches returns of 60 only by
    saturating the MLP, after which the value is one constant (explained variance ~0)."""
    assert _explained_variance_after_fitting("linear") < 0.1
    assert _explained_variance_after_fitting("symexp") > 0.8


def test_value_head_is_saved_loaded_and_counted_as_a_linear(tmp_path):
    from policies.energy import estimate_energy

    env = policies.make_env("CartPole-P-v0", 2, 0)
    counts = {}
    for head, cls in (("symexp", SymExpValueHead), ("linear", torch.nn.Linear)):
        model = RecurrentPPO(GRSNPolicy, env, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                             policy_kwargs=dict(grsn_hidden_size=8, value_head=head))
        model.learn(32)
        model.save(tmp_path / head)
        loaded = RecurrentPPO.load(tmp_path / head)
        assert type(loaded.policy.value_net) is cls
        obs = torch.as_tensor(np.random.default_rng(0).normal(size=(3, 2)), dtype=torch.float32)
        state = (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
        with torch.no_grad():
            torch.testing.assert_close(loaded.policy.predict_values(obs, state, torch.ones(3)),
                                       model.policy.predict_values(obs, state, torch.ones(3)))
        report = estimate_energy(model.policy, np.zeros((4, 2, 2), dtype=np.float32))
        counts[head] = (report.agent.macs, report.agent_with_critic.macs)
    assert counts["symexp"] == counts["linear"]  # the head's one Linear, counted either way
