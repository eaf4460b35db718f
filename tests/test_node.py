"""GRSNNode (SpikingJelly node) and the GRSN block."""
import math

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, surrogate

from grsn_sj import GRSN, GRSNNode, grsn_step

BACKENDS = ["torch", "numba"]


def _x(T=12, N=4, H=8, seed=0, extra=()):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, *extra, 2 * H, generator=g) * 2.0
    x[..., H:] += 1.0
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v_reset", [None, 0.0, -0.5])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_single_step_loop_equals_multi_step(backend, v_reset, detach_reset):
    x = _x(extra=(3,))
    kw = dict(v_reset=v_reset, detach_reset=detach_reset, backend=backend)
    multi = GRSNNode(step_mode="m", **kw)
    single = GRSNNode(step_mode="s", **kw)
    xm, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_m = multi(xm)
    y_s = torch.stack([single(xs[t]) for t in range(x.shape[0])])
    assert y_m.shape == (12, 4, 3, 8) and y_m.sum() > 0
    assert torch.equal(y_m, y_s)
    torch.testing.assert_close(multi.v, single.v)
    torch.testing.assert_close(multi.c, single.c)
    g = torch.randn_like(y_m)
    (y_m * g).sum().backward()
    (y_s * g).sum().backward()
    torch.testing.assert_close(xm.grad, xs.grad, rtol=1e-4, atol=1e-5)


def test_node_step_is_the_functional_step():
    x = _x(T=1)[0]
    node = GRSNNode(tau=3.0, v_threshold=0.7, v_reset=0.1)
    s = node(x)
    z = torch.zeros(4, 8)
    s_ref, v_ref, c_ref = grsn_step(x[:, :8], x[:, 8:], z + 0.1, z, 1 - 1 / 3.0, 0.7, 0.1)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(node.v, v_ref)
    torch.testing.assert_close(node.c, c_ref)


def test_state_carries_across_calls_in_both_modes():
    x = _x(T=10)
    whole = GRSNNode(step_mode="m")
    y = whole(x)
    parts = GRSNNode(step_mode="m")
    y2 = torch.cat([parts(x[:4]), parts(x[4:])])
    assert torch.equal(y, y2)
    torch.testing.assert_close(whole.c, parts.c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_episode_starts_equal_fresh_segments(backend):
    x = _x(T=10, N=3)
    starts = torch.zeros(10, 3)
    starts[6, 1] = 1
    node = GRSNNode(step_mode="m", backend=backend)
    y = node(x, starts)
    fresh = GRSNNode(step_mode="m", backend=backend)
    assert torch.equal(y[6:, 1:2], fresh(x[6:, 1:2]))
    # same thing step by step
    single = GRSNNode()
    y_s = torch.stack([single(x[t], starts[t]) for t in range(10)])
    assert torch.equal(y, y_s)


def test_reset_net_and_no_leak_past_reset():
    x = _x()
    net = nn.Sequential(nn.Identity(), GRSNNode(step_mode="m", v_reset=-0.2))
    first = net(x)
    node = net[1]
    assert node.v.abs().sum() > 0 and node.c.abs().sum() > 0
    functional.reset_net(net)
    assert node.v == -0.2 and node.c == 0.0  # back to the registered reset values
    assert torch.equal(net(x), first)


def test_detach_net_cuts_the_graph():
    x = _x().requires_grad_()
    node = GRSNNode(step_mode="m")
    node(x)
    assert node.v.grad_fn is not None and node.c.grad_fn is not None
    functional.detach_net(node)
    assert node.v.grad_fn is None and node.c.grad_fn is None
    # a second chunk trains without reaching into the first (TBPTT)
    x2 = _x(seed=1).requires_grad_()
    node(x2).sum().backward()
    assert x.grad is None and x2.grad is not None


def test_batch_size_change_starts_from_the_initial_state():
    node = GRSNNode(step_mode="m")
    node(_x(N=4))
    y = node(_x(N=2, seed=3))
    assert torch.equal(y, GRSNNode(step_mode="m")(_x(N=2, seed=3)))


def test_subclass_overriding_the_step_is_not_bypassed():
    class DoubledInput(GRSNNode):
        def single_step_functional_forward(self, inputs, states, **kwargs):
            return super().single_step_functional_forward((inputs[0] * 2.0, *inputs[1:]), states)

    x = _x()
    y_sub = DoubledInput(step_mode="m", backend="numba")(x)
    single = GRSNNode()
    y_ref = torch.stack([single(x[t] * 2.0) for t in range(x.shape[0])])
    assert torch.equal(y_sub, y_ref)
    assert not torch.equal(y_sub, GRSNNode(step_mode="m")(x))
    # the whole-sequence call would bypass the override: refused, with the way out
    with pytest.raises(TypeError, match="multi_step_functional_forward"):
        DoubledInput(step_mode="m").multi_step_sequence(x, torch.zeros(x.shape[1:-1] + (8,)),
                                                        torch.zeros(x.shape[1:-1] + (8,)))


def test_multi_step_sequence_returns_the_reference_sequence_and_resets():
    from grsn_sj import grsn_multi_step_reference

    node = GRSNNode(step_mode="m", backend="numba", v_reset=-0.25)
    x = _x()
    T, N, H = x.shape[0], x.shape[1], x.shape[-1] // 2
    v0, c0 = torch.full((N, H), 0.3), torch.full((N, H), 0.2)
    starts = torch.zeros(T, N)
    starts[4, 1] = 1
    seq = node.multi_step_sequence(x, v0, c0, starts)
    ref = grsn_multi_step_reference(x, v0, c0, node.beta, node.v_threshold, node.v_reset,
                                    reset_mask=starts)
    for got, want in zip(seq, ref):
        torch.testing.assert_close(got, want)
    # the spikes are the membrane before reset crossing the threshold
    assert torch.equal(seq.spike_seq, (seq.h_seq >= node.v_threshold).to(x.dtype))
    # and the module's multi-step call gives the same spikes and final state
    (spikes,), (v, c) = node.multi_step_functional_forward((x, starts), (v0, c0))
    assert torch.equal(spikes, seq.spike_seq) and torch.equal(v, seq.v) and torch.equal(c, seq.c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learnable_tau(backend):
    node = GRSNNode(tau=4.0, learnable_tau=True, size=8, step_mode="m", backend=backend)
    torch.testing.assert_close(node.beta, torch.full((8,), 0.75))
    assert [n for n, _ in node.named_parameters()] == ["w"]
    node(_x()).sum().backward()
    assert node.w.grad is not None and node.w.grad.abs().sum() > 0


def test_learnable_tau_gradient_same_on_every_backend():
    grads = []
    for backend in BACKENDS:
        node = GRSNNode(learnable_tau=True, size=8, step_mode="m", backend=backend)
        with torch.no_grad():
            node.w.copy_(torch.linspace(-1, 2, 8))
        node(_x()).sum().backward()
        grads.append(node.w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_extra_repr_shows_the_options():
    r = repr(GRSNNode(tau=3.0, v_reset=0.0, learnable_tau=True, size=4, backend="torch"))
    for part in ("tau=3.0", "v_threshold=1.0", "v_reset=0.0", "learnable_tau=True", "size=4",
                 "ATan(alpha=2.0)", "step_mode=s", "backend=torch", "detach_reset=False"):
        assert part in r


def test_other_surrogate_runs_through_the_reference():
    x = _x()
    node = GRSNNode(step_mode="m", surrogate_function=surrogate.PiecewiseQuadratic())
    single = GRSNNode(surrogate_function=surrogate.PiecewiseQuadratic())
    assert torch.equal(node(x), torch.stack([single(x[t]) for t in range(12)]))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(tau=0.0), ValueError, "tau must be"),
    (dict(tau=-2.0), ValueError, "tau must be"),
    (dict(tau=0.5), ValueError, "tau must be"),
    (dict(tau=math.nan), ValueError, "tau must be"),
    (dict(v_threshold=0.0), ValueError, "v_threshold"),
    (dict(v_threshold=math.nan), ValueError, "v_threshold"),
    (dict(backend="gpu"), ValueError, "unknown backend"),
    (dict(learnable_tau=True), ValueError, "needs size"),
    (dict(size=0), ValueError, "size"),
    (dict(detach_reset=1), TypeError, "detach_reset"),
    (dict(surrogate_function="atan"), TypeError, "surrogate"),
])
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        GRSNNode(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2\\*H > 0"):
        GRSNNode()(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="expects a last dimension of 8"):
        GRSNNode(size=4)(torch.zeros(4, 10))
    with pytest.raises(ValueError, match="T >= 1"):
        GRSNNode(step_mode="m")(torch.zeros(0, 3, 8))
    with pytest.raises(ValueError, match="episode_starts must have shape"):
        GRSNNode(step_mode="m")(torch.zeros(5, 3, 8), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="episode_starts must have shape"):
        GRSNNode()(torch.zeros(3, 8), torch.zeros(4))


# ------------------------------------------------------------------------------------ GRSN block

def test_block_is_linear_plus_node():
    block = GRSN(5, 8, forget_bias=1.5, step_mode="m", tau=3.0)
    assert torch.equal(block.fc.bias[:8], torch.full((8,), 1.5))
    x = torch.randn(6, 2, 5)
    y = block(x)
    node = GRSNNode(tau=3.0, step_mode="m")
    assert torch.equal(y, node(block.fc(x)))


def test_forget_bias_range_gives_each_neuron_its_memory_time_scale():
    block = GRSN(3, 4, forget_bias=(0.0, 3.0), step_mode="m")
    assert torch.equal(block.fc.bias[:4], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert torch.equal(GRSN(3, 1, forget_bias=[0.5, 2.0]).fc.bias[:1], torch.tensor([0.5]))
    # with a constant input the gated current's difference between two histories shrinks by
    # sigmoid(bias) per step: neuron j keeps sigmoid(b_j) ** 15 of it after 15 steps
    x = torch.zeros(16, 2, 3)
    x[0, 0] = 1.0
    c = block.multi_step_sequence(x, torch.zeros(2, 4), torch.zeros(2, 4)).c
    with torch.no_grad():
        gates = block.fc(x[0])
        written = (1 - torch.sigmoid(gates[:, :4])) * torch.relu(gates[:, 4:])  # c after step 0
        expected = (written[0] - written[1]) * torch.sigmoid(block.fc.bias[:4]) ** 15
    torch.testing.assert_close(c[0] - c[1], expected)


@pytest.mark.parametrize("forget_bias, err, match", [
    ("2", TypeError, "forget_bias must be a float or a \\(low, high\\) pair.*'2'"),
    ((0.0, 1.0, 2.0), ValueError, "a \\(low, high\\) pair, got \\(0.0, 1.0, 2.0\\)"),
    ((0.0, float("nan")), ValueError, "must be finite"),
    (True, TypeError, "got True"),
])
def test_forget_bias_bad_values_are_named(forget_bias, err, match):
    with pytest.raises(err, match=match):
        GRSN(3, 4, forget_bias=forget_bias)


def test_block_in_sequential_single_and_multi_step():
    torch.manual_seed(0)
    net = nn.Sequential(GRSN(4, 16), nn.Linear(16, 2))
    x = torch.randn(7, 3, 4)
    y_s = torch.stack([net(x[t]) for t in range(7)])
    functional.reset_net(net)
    functional.set_step_mode(net, "m")
    assert net[0].step_mode == "m"
    torch.testing.assert_close(net(x), y_s)


def test_block_bad_input():
    with pytest.raises(ValueError, match="expects 4 features"):
        GRSN(4, 8)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="hidden_features"):
        GRSN(4, 0)


def test_torch_compile_of_a_model_with_the_node_has_no_graph_break():
    torch.manual_seed(0)
    net = nn.Sequential(GRSN(4, 16, step_mode="m"), nn.Linear(16, 2))
    x = torch.randn(9, 3, 4)

    def run(x):
        functional.reset_net(net)
        return net(x)

    explain = torch._dynamo.explain(run)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    eager = run(x)
    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), eager)


def test_one_rule_for_tau_above_one_and_one_initial_learnable_decay():
    """learnable_tau (node), learn_beta (snnTorch) and the LIF core share one tau > 1 rule and
    one initial value of the learnable decay."""
    from grsn_sj.functional import decay_logits
    from policies import LIFCore

    for make in (lambda: GRSNNode(learnable_tau=True, size=3, tau=1.0),
                 lambda: LIFCore(2, 4, tau=1.0)):
        with pytest.raises(ValueError, match="needs tau > 1"):
            make()
    node = GRSNNode(learnable_tau=True, size=3, tau=3.0)
    assert torch.equal(node.w.detach(), decay_logits(3.0, 3, "learnable_tau"))
    torch.testing.assert_close(node.beta, torch.full((3,), 1 - 1 / 3.0), rtol=0, atol=1e-7)
    try:
        from grsn_sj.snntorch import GRSN as SnnGRSN
    except ImportError:
        return
    with pytest.raises(ValueError, match="needs tau > 1"):
        SnnGRSN(4, 3, learn_beta=True, tau=1.0)
    assert torch.equal(SnnGRSN(4, 3, learn_beta=True, tau=3.0).w.detach(), node.w.detach())


def test_spike_recurrence_is_a_declared_part_of_the_block():
    """GRSN(spike_recurrence=True) owns its recurrent weight; its stateful SpikingJelly call
    (single- and multi-step, reset_net) equals the explicit-state sequence."""
    torch.manual_seed(0)
    plain = GRSN(3, 5, step_mode="m")
    torch.manual_seed(0)
    block = GRSN(3, 5, step_mode="m", spike_recurrence=True)
    assert plain.recurrent is None and plain.state_names == ("v", "c")
    assert isinstance(block.recurrent, nn.Linear) and block.state_names == ("h", "c")
    assert torch.equal(block.fc.weight, plain.fc.weight)  # zero U draws no random numbers
    assert "recurrent.weight" in block.state_dict()
    with torch.no_grad():
        block.recurrent.weight.normal_(0.0, 2.0)
        block.fc.bias[5:] += 1.0
    x = torch.randn(7, 2, 3) * 2
    starts = torch.zeros(7, 2)
    starts[4, 1] = 1
    seq = block.multi_step_sequence(x, torch.zeros(2, 5), torch.zeros(2, 5), starts)
    assert seq.spike_seq.sum() > 0
    functional.reset_net(block)
    assert torch.equal(block(x, starts), seq.spike_seq)
    assert torch.equal(block.node.v, seq.v) and torch.equal(block.node.c, seq.c)
    functional.reset_net(block)
    block.step_mode = "s"
    steps = torch.stack([block(x[t], starts[t]) for t in range(7)])
    assert torch.equal(steps, seq.spike_seq)
    with pytest.raises(TypeError, match="spike_recurrence must be a bool"):
        GRSN(3, 5, spike_recurrence=1)


def test_installed_version_is_the_package_version():
    """One source of truth: setup.cfg reads grsn_sj.__version__ (0.2.0 shipped a stale
    __version__ of 0.1.0 beside a 0.2.0 distribution)."""
    import importlib.metadata

    import grsn_sj

    assert importlib.metadata.version("grsn_sj") == grsn_sj.__version__
