"""The snnTorch GRSN neuron: same outputs as GRSNNode, snnTorch state conventions."""
import importlib
import sys

import pytest
import torch
import torch.nn as nn

from grsn_sj import GRSNNode
from grsn_sj.snntorch import GRSN, reset_net


def _x(T=12, N=5, F=4, seed=0):
    return torch.randn(T, N, F, generator=torch.Generator().manual_seed(seed)) * 2.0


def _neuron(**kw):
    torch.manual_seed(0)
    neuron = GRSN(4, 8, **kw)
    with torch.no_grad():
        neuron.fc.bias[8:].add_(1.0)  # make it fire
    return neuron


@pytest.mark.parametrize("reset_mechanism, v_reset", [("subtract", None), ("zero", 0.0)])
def test_outputs_equal_grsnnode(reset_mechanism, v_reset):
    neuron = _neuron(reset_mechanism=reset_mechanism, tau=3.0)
    x = _x()
    v, c = neuron.reset_mem()
    spikes = []
    for t in range(x.shape[0]):
        spk, (v, c) = neuron(x[t], (v, c))
        spikes.append(spk)
    spikes = torch.stack(spikes)
    node = GRSNNode(tau=3.0, v_reset=v_reset, step_mode="m")
    ref = node(neuron.fc(x))
    assert spikes.sum() > 0
    assert torch.equal(spikes, ref)
    torch.testing.assert_close(v, node.v)
    torch.testing.assert_close(c, node.c)


def test_init_hidden_equals_explicit_state_and_reset_mem():
    explicit = _neuron()
    hidden = _neuron(init_hidden=True)
    x = _x()
    state = explicit.reset_mem()
    for t in range(x.shape[0]):
        spk, state = explicit(x[t], state)
        assert torch.equal(hidden(x[t]), spk)
    torch.testing.assert_close(hidden.v, state[0])
    assert hidden.c.abs().sum() > 0
    v, c = hidden.reset_mem()
    assert v.numel() == 0 and c.numel() == 0
    # after the reset the neuron behaves like a fresh one
    assert torch.equal(hidden(x[0]), _neuron()(x[0], None)[0])


def test_output_flag_returns_the_state_too():
    neuron = _neuron(init_hidden=True, output=True)
    spk, (v, c) = neuron(_x()[0])
    assert spk.shape == v.shape == c.shape == (5, 8)


def test_gradients_reach_weights_and_learned_beta():
    neuron = _neuron(learn_beta=True, tau=2.0)
    torch.testing.assert_close(neuron.beta, torch.full((8,), 0.5))
    state = neuron.reset_mem()
    loss = 0
    for x in _x():
        spk, state = neuron(x, state)
        loss = loss + spk.sum()
    loss.backward()
    assert neuron.fc.weight.grad.abs().sum() > 0 and neuron.w.grad.abs().sum() > 0


def test_reset_net_reaches_nested_neurons():
    import snntorch

    net = nn.Sequential(nn.Sequential(_neuron(init_hidden=True)),
                        snntorch.Leaky(beta=0.5, init_hidden=True))
    net[0][0](_x()[0])
    net[1](torch.ones(5, 8))
    assert net[0][0].v.numel() > 0
    reset_net(net)
    assert net[0][0].v.numel() == 0 and net[0][0].c.numel() == 0
    assert torch.count_nonzero(net[1].mem) == 0


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(reset_mechanism="none"), ValueError, "subtract' or 'zero"),
    (dict(threshold=0.0), ValueError, "v_threshold"),
    (dict(tau=0.5), ValueError, "tau must be"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        GRSN(4, 8, **kwargs)


def test_bad_calls():
    with pytest.raises(ValueError, match="input_size=4"):
        GRSN(4, 8)(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="init_hidden=True"):
        GRSN(4, 8, init_hidden=True)(torch.zeros(5, 4), (torch.zeros(5, 8), torch.zeros(5, 8)))
    with pytest.raises(ValueError, match="call reset_mem"):
        GRSN(4, 8)(torch.zeros(5, 4), (torch.zeros(3, 8), torch.zeros(3, 8)))
    with pytest.raises(TypeError, match="tuple \\(v, c\\)"):
        GRSN(4, 8)(torch.zeros(5, 4), torch.zeros(5, 8))
    with pytest.raises(ValueError, match="hidden_size"):
        GRSN(4, 0)


def test_import_without_snntorch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "snntorch", None)
    monkeypatch.delitem(sys.modules, "grsn_sj.snntorch")
    with pytest.raises(ImportError, match=r"pip install 'grsn_sj\[snntorch\]'"):
        importlib.import_module("grsn_sj.snntorch")
