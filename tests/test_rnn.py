"""RecurrentGRSN: the nn.LSTM-like multi-layer module with explicit state and episode starts."""
import pytest
import torch

from grsn_sj import GRSNNode, RecurrentGRSN, ops


def _core(backend="numba", seed=0, **kw):
    torch.manual_seed(seed)
    core = RecurrentGRSN(5, 16, backend=backend, **kw)
    with torch.no_grad():  # larger weights so that every layer fires
        for layer in core.layers:
            layer.fc.weight.mul_(4.0)
            layer.fc.bias[16:].add_(1.0)
    return core


def _x(T=10, N=6, seed=1):
    return torch.randn(T, N, 5, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_attributes():
    core = _core(num_layers=3)
    out, (v, c) = core(_x())
    assert out.shape == (10, 6, 16)
    assert v.shape == c.shape == (3, 6, 16)
    assert (core.input_size, core.hidden_size, core.num_layers) == (5, 16, 3)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_layers_compose_spikes_of_the_layer_below():
    core = _core(num_layers=2)
    x = _x()
    out, (v, c) = core(x)
    nodes = [GRSNNode(step_mode="m") for _ in range(2)]
    h1 = nodes[0](core.layers[0].fc(x))
    assert h1.sum() > 0
    h2 = nodes[1](core.layers[1].fc(h1))
    assert torch.equal(out, h2)
    torch.testing.assert_close(v[1], nodes[1].v)
    torch.testing.assert_close(c[0], nodes[0].c)


def test_state_threading_equals_one_call():
    core = _core(num_layers=2)
    x = _x(T=12)
    out, state = core(x)
    a, s1 = core(x[:5])
    b, s2 = core(x[5:], s1)
    assert torch.equal(out, torch.cat([a, b]))
    for p, q in zip(state, s2):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("v_reset", [None, -0.25])
def test_episode_starts_equal_fresh_runs(v_reset):
    core = _core(num_layers=2, v_reset=v_reset)
    x = _x(T=10, N=4)
    _, warm = core(_x(T=3, N=4, seed=5))  # a non-trivial incoming state
    starts = torch.zeros(10, 4)
    starts[0, 0] = 1
    starts[6, 2] = 1
    out, _ = core(x, warm, episode_starts=starts)
    fresh0, _ = core(x[:, 0:1])
    assert torch.equal(out[:, 0:1], fresh0)
    fresh2, _ = core(x[6:, 2:3])
    assert torch.equal(out[6:, 2:3], fresh2)
    no_reset, _ = core(x, warm)
    assert torch.equal(out[:, [1, 3]], no_reset[:, [1, 3]])
    assert not torch.equal(out[:, 0], no_reset[:, 0])


def test_initial_state_follows_the_reset_mode():
    v, c = RecurrentGRSN(3, 4, num_layers=2, v_reset=-0.5).initial_state(7)
    assert v.shape == (2, 7, 4) and torch.all(v == -0.5) and torch.all(c == 0)


def test_episode_starts_stay_inside_the_fused_op(monkeypatch):
    """With a fused backend the reference loop (the per-step Python path) is never entered."""
    def boom(*a, **k):
        raise AssertionError("per-step reference loop called")

    monkeypatch.setattr(ops, "grsn_multi_step_reference", boom)
    starts = torch.zeros(10, 6)
    starts[3] = 1
    out, _ = _core(num_layers=2)(_x(), episode_starts=starts)
    assert out.shape == (10, 6, 16)


@pytest.mark.parametrize("learnable_tau", [False, True])
def test_numba_and_torch_backends_agree_with_gradients(learnable_tau):
    x = _x()
    starts = (torch.rand(10, 6, generator=torch.Generator().manual_seed(2)) < 0.2).float()
    results = []
    for backend in ("numba", "torch"):
        core = _core(backend=backend, num_layers=2, learnable_tau=learnable_tau)
        xx = x.clone().requires_grad_()
        out, (v, c) = core(xx, episode_starts=starts)
        (out.sum() + 0.5 * v.sum() + 0.25 * c.sum()).backward()
        results.append((out, v, c, xx.grad, [p.grad for p in core.parameters()]))
    (o1, v1, c1, g1, p1), (o2, v2, c2, g2, p2) = results
    assert torch.equal(o1, o2)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_keeps_no_state_between_calls():
    core = _core()
    x = _x()
    a, _ = core(x)
    b, _ = core(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("call, err, match", [
    (lambda m: m(torch.zeros(4, 5)), ValueError, "\\[T, N, input_size=5\\]"),
    (lambda m: m(torch.zeros(4, 2, 6)), ValueError, "input_size=5"),
    (lambda m: m(torch.zeros(0, 2, 5)), ValueError, "T = 0"),
    (lambda m: m(torch.zeros(4, 2, 5), (torch.zeros(2, 2, 16), torch.zeros(2, 2, 16))),
     ValueError, "num_layers, N, hidden_size"),
    (lambda m: m(torch.zeros(4, 2, 5), torch.zeros(1, 2, 16)), TypeError, "tuple \\(v, c\\)"),
    (lambda m: m(torch.zeros(4, 2, 5), episode_starts=torch.zeros(4, 3)), ValueError,
     "episode_starts must have shape \\[T, N\\]"),
    (lambda m: m([[0.0]]), TypeError, "torch.Tensor"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call(RecurrentGRSN(5, 16))


def test_bad_construction():
    with pytest.raises(ValueError, match="num_layers"):
        RecurrentGRSN(5, 16, num_layers=0)
    with pytest.raises(ValueError, match="unknown backend"):
        RecurrentGRSN(5, 16, backend="fast")


# ------------------------------------------------------------------- spike recurrence variant

def _recurrent_core(seed=0, **kw):
    return _core(seed=seed, num_layers=2, spike_recurrence=True, **kw)


def test_spike_recurrence_with_zero_u_equals_the_plain_grsn():
    plain = _core(num_layers=2)
    rec = _recurrent_core()
    assert all(torch.count_nonzero(layer.recurrent.weight) == 0 for layer in rec.layers)
    x = _x()
    starts = torch.zeros(10, 6)
    starts[4, 1] = 1
    a, _ = plain(x, episode_starts=starts)
    b, _ = rec(x, episode_starts=starts)
    assert torch.equal(a, b) and a.sum() > 0


def test_spike_recurrence_feeds_previous_spikes_into_the_gates():
    rec = _recurrent_core()
    with torch.no_grad():
        for layer in rec.layers:
            layer.recurrent.weight.normal_(0.0, 2.0)
    x = _x()
    out, _ = rec(x)
    # by hand: layer 1, step by step, gates = W x_t + U o_{t-1}
    layer = rec.layers[0]
    h = torch.zeros(6, 16)
    c = torch.zeros(6, 16)
    o = torch.zeros(6, 16)
    v = torch.zeros(6, 16)
    from grsn_sj import grsn_step
    spikes = []
    for t in range(10):
        pre = layer.fc(x[t]) + layer.recurrent(o)
        o, v, c = grsn_step(pre[:, :16], pre[:, 16:], v, c)
        spikes.append(o)
    first = torch.stack(spikes)
    seq = layer.multi_step_sequence(x, torch.zeros(6, 16), torch.zeros(6, 16))
    out1, h1 = seq.spike_seq, seq.h_seq
    assert torch.equal(out1, first)
    assert torch.equal(out1, (h1 >= 1.0).to(out1.dtype))
    assert not torch.equal(out, _core(num_layers=2)(x)[0])
    out.sum().backward()
    assert rec.layers[0].recurrent.weight.grad.abs().sum() > 0


def test_spike_recurrence_state_is_lossless_across_calls():
    rec = _recurrent_core(v_reset=-0.3)
    with torch.no_grad():
        for layer in rec.layers:
            layer.recurrent.weight.normal_(0.0, 2.0)
    x = _x(T=12)
    starts = torch.zeros(12, 6)
    starts[7, 2] = 1
    whole, s_whole = rec(x, episode_starts=starts)
    a, s1 = rec(x[:5], episode_starts=starts[:5])
    b, s2 = rec(x[5:], s1, episode_starts=starts[5:])
    assert torch.equal(whole, torch.cat([a, b]))
    for p, q in zip(s_whole, s2):
        torch.testing.assert_close(p, q)
    fresh, _ = rec(x[7:, 2:3])
    assert torch.equal(whole[7:, 2:3], fresh)


@pytest.mark.parametrize("spike_recurrence", [False, True])
def test_forward_sequence_adds_the_last_layers_membrane(spike_recurrence):
    core = _core(num_layers=2, spike_recurrence=spike_recurrence)
    x = _x(T=8, N=3)
    starts = torch.zeros(8, 3)
    starts[5, 2] = 1
    out = core.forward_sequence(x, episode_starts=starts)
    spikes, state = core(x, episode_starts=starts)
    assert torch.equal(out.output, spikes)
    for p, q in zip(out.state, state):
        assert torch.equal(p, q)
    assert out.membrane.shape == (8, 3, 16)
    # the membrane before reset: the last layer's spikes are where it reaches the threshold
    assert torch.equal(spikes, (out.membrane >= 1.0).to(spikes.dtype))
    assert 0 < spikes.mean() < 1
    if not spike_recurrence:
        # the last layer's membrane, recomputed by its node from the layer below's spikes
        below, _ = _one_layer_copy(core)(x, episode_starts=starts)
        seq = core.layers[1].node.multi_step_sequence(
            core.layers[1].fc(below), torch.zeros(3, 16), torch.zeros(3, 16), starts)
        torch.testing.assert_close(out.membrane, seq.h_seq)
    # a real-valued readout: gradients reach the first layer through the membrane alone
    core.zero_grad()
    out.membrane.sum().backward()
    assert core.layers[0].fc.weight.grad.abs().sum() > 0


def _one_layer_copy(core):
    """A RecurrentGRSN holding the first layer of ``core`` (same parameters)."""
    one = RecurrentGRSN(core.input_size, core.hidden_size, 1,
                        spike_recurrence=core.spike_recurrence)
    one.layers = torch.nn.ModuleList([core.layers[0]])
    return one
