"""Bad input to the grsn_sj modules gets a ValueError that names it (issue 15, items 1 and 5):
non-finite input in every backend and step mode, and shape messages that quote the shape the
user passed."""
import math

import pytest
import torch

from grsn_sj import GRSN, GRSNNode, RecurrentGRSN, grsn_multi_step
from grsn_sj.ops import cupy_available

BACKENDS = ["torch", "numba"] + (["cupy"] if torch.cuda.is_available()
                                 and cupy_available()[0] else [])
DEVICE = {"torch": "cpu", "numba": "cpu", "cupy": "cuda"}


def _issue_input(bad=math.nan, where=(0, 0, 0)):
    """The issue's example: neurons 0, 1 get current 10; one NaN at x[0, 0, 0]."""
    x = torch.zeros(6, 1, 4)
    x[..., 2:] = 10
    x[where] = bad
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_node_multi_step_refuses_non_finite_input(backend, bad):
    x = _issue_input(bad, (3, 0, 1)).to(DEVICE[backend])
    with pytest.raises(ValueError, match=r"GRSNNode got a non-finite input: x\[3, 0, 1\] = "
                                         + ("nan" if math.isnan(bad) else str(bad))):
        GRSNNode(step_mode="m", backend=backend)(x)


def test_the_issue_example_raises_instead_of_silencing_a_neuron():
    with pytest.raises(ValueError, match=r"x\[0, 0, 0\] = nan.*nan_to_num"):
        GRSNNode(step_mode="m")(_issue_input())


def test_node_single_step_refuses_non_finite_input():
    node = GRSNNode()
    x = torch.zeros(2, 6)
    x[1, 4] = math.nan
    with pytest.raises(ValueError, match=r"GRSNNode got a non-finite input: x\[1, 4\] = nan"):
        node(x)
    assert isinstance(node.v, float)  # nothing was stored: the state is still the initial one


def test_subclass_with_its_own_step_is_checked_too():
    class MyNode(GRSNNode):
        def single_step_functional_forward(self, inputs, states, **kwargs):
            return super().single_step_functional_forward(inputs, states, **kwargs)

    with pytest.raises(ValueError, match=r"x\[0, 0, 0\] = nan"):
        MyNode(step_mode="m")(_issue_input())


@pytest.mark.parametrize("backend", BACKENDS + ["cupy", "auto"])
def test_fused_op_checks_before_choosing_a_backend(backend):
    """Every backend, the CuPy launcher included, sees the check first: a CPU tensor with a NaN
    and backend='cupy' gets the NaN error, not the device error."""
    x = torch.zeros(3, 2, 8)
    x[2, 1, 7] = math.nan
    with pytest.raises(ValueError, match=r"grsn_multi_step got a non-finite input: "
                                         r"x_seq\[2, 1, 7\] = nan"):
        grsn_multi_step(x, torch.zeros(2, 4), torch.zeros(2, 4), 0.5, backend=backend)


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("spike_recurrence", [False, True])
def test_block_names_the_users_tensor(step_mode, spike_recurrence):
    block = GRSN(4, 3, step_mode=step_mode, spike_recurrence=spike_recurrence)
    x = _issue_input() if step_mode == "m" else _issue_input()[0]
    where = "0, 0, 0" if step_mode == "m" else "0, 0"
    with pytest.raises(ValueError, match=rf"GRSN got a non-finite input: x\[{where}\] = nan"):
        block(x)


@pytest.mark.parametrize("kw", [{}, dict(spike_recurrence=True), dict(num_layers=2),
                                dict(backend="torch")])
def test_recurrent_grsn_refuses_non_finite_input(kw):
    core = RecurrentGRSN(4, 3, **kw)
    x = _issue_input(math.inf, (5, 0, 3))
    with pytest.raises(ValueError, match=r"RecurrentGRSN got a non-finite input: "
                                         r"input\[5, 0, 3\] = inf"):
        core(x)
    with pytest.raises(ValueError, match="non-finite"):
        core.forward_sequence(x)


def test_finite_input_whose_sum_overflows_is_accepted():
    x = torch.full((4, 1, 8), 3e38)  # finite, but the sum is inf in float32
    out = GRSNNode(step_mode="m")(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_node_refuses_non_finite_input_current_too(backend, bad):
    """x[3, 0, 3] is neuron 1's input-gate pre-activation (H = 2): relu(-inf) = 0 would hide
    it from a check of the kernel's currents, so the CPU kernel probes the raw value."""
    x = _issue_input(bad, (3, 0, 3)).to(DEVICE[backend])
    with pytest.raises(ValueError, match=r"GRSNNode got a non-finite input: x\[3, 0, 3\]"):
        GRSNNode(step_mode="m", backend=backend)(x)


def test_numba_op_probes_its_input_and_finite_input_is_not_read_again(monkeypatch):
    """The fused CPU op finds a NaN / inf while its kernel reads the pre-activations (the
    probe): a finite input is not summed a second time (issue 15's cost), a bad one is still
    named."""
    import grsn_sj.neuron
    import grsn_sj.ops
    import grsn_sj.rnn
    from grsn_sj import functional
    from grsn_sj.ops import multi_step_forward

    x = torch.randn(5, 3, 8)
    x[2, 1, 6] = -math.inf
    zeros = torch.zeros(3, 4)
    probe = multi_step_forward(x, zeros, zeros, torch.full((4,), 0.5), None, 1.0, 0.0, False,
                               False, 0, 2.0, True)[5]
    assert probe.shape == (1,) and math.isnan(probe.item())
    x[2, 1, 6] = 1e30  # finite, however large: the probe stays 0
    assert multi_step_forward(x, zeros, zeros, torch.full((4,), 0.5), None, 1.0, 0.0, False,
                              False, 0, 2.0, True)[5].item() == 0.0

    def no_second_read(t, *args, **kwargs):
        raise AssertionError("check_finite read a finite input on the fused CPU path")

    for module in (functional, grsn_sj.ops, grsn_sj.neuron, grsn_sj.rnn):
        monkeypatch.setattr(module, "check_finite", no_second_read, raising=False)
    finite = torch.randn(6, 2, 8)
    finite[..., 0] = 50.0  # a saturated forget gate (sigmoid = 1.0 exactly) is finite input
    core = RecurrentGRSN(8, 4, backend="numba")
    outputs = (GRSNNode(step_mode="m", backend="numba")(finite),
               GRSN(8, 4, step_mode="m", backend="numba")(finite), core(finite)[0],
               grsn_multi_step(finite, torch.zeros(2, 4), torch.zeros(2, 4), 0.5,
                               backend="numba").spike_seq)
    assert all(out.shape == (6, 2, 4) and torch.isfinite(out).all() for out in outputs)
    monkeypatch.undo()
    finite[4, 1, 5] = math.nan
    with pytest.raises(ValueError, match=r"RecurrentGRSN got a non-finite input: "
                                         r"input\[4, 1, 5\] = nan"):
        core(finite)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_diverged_weights_are_named_even_when_the_input_is_finite(step_mode):
    """A NaN weight makes the gate pre-activations NaN from a finite input: the fused CPU op's
    probe (multi-step) or the single step's check sees it and the error says so, instead of a
    neuron that silently stops firing. (In multi-step mode the torch reference and CUDA backends
    check the user's tensor only.)"""
    block = GRSN(4, 3, step_mode=step_mode, backend="numba")
    with torch.no_grad():
        block.fc.weight[2, 1] = math.nan
    x, where = (torch.randn(5, 2, 4), "0, 0, 2") if step_mode == "m" else (torch.randn(2, 4),
                                                                             "0, 2")
    with pytest.raises(ValueError, match=rf"GRSN got a non-finite input: its gate "
                                         rf"pre-activations\[{where}\] = nan"):
        block(x)


# ------------------------------------------------------------------ shapes quoted as passed

def test_node_multi_step_quotes_the_whole_input_shape():
    with pytest.raises(ValueError, match=r"got shape \(4, 2, 7\)"):
        GRSNNode(step_mode="m")(torch.randn(4, 2, 7))
    with pytest.raises(ValueError, match=r"input shape \(3, 2, 10\)"):
        GRSNNode(size=4, step_mode="m")(torch.randn(3, 2, 10))


def test_block_quotes_the_shape_before_its_linear():
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        GRSN(4, 8, step_mode="m")(torch.randn(4))
    with pytest.raises(ValueError, match=r"got shape \(0, 2, 4\)"):
        GRSN(4, 8, step_mode="m")(torch.randn(0, 2, 4))
    with pytest.raises(ValueError, match=r"got shape \(3, 5\)"):
        GRSN(4, 8)(torch.randn(3, 5))


# ------------------------------------------------------------------ dtypes (found by the fuzz test)

def test_integer_bool_and_mismatched_float_inputs_are_type_errors():
    with pytest.raises(TypeError, match="floating-point input, got torch.bool"):
        GRSNNode()(torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point input, got torch.int64"):
        GRSN(4, 3)(torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch.float64 input but its weights are torch.float32"):
        RecurrentGRSN(4, 3)(torch.zeros(2, 1, 4, dtype=torch.float64))
    assert RecurrentGRSN(4, 3).double()(torch.zeros(2, 1, 4, dtype=torch.float64))[0].dtype \
        == torch.float64
    with pytest.raises(TypeError, match="state v is torch.float64"):
        RecurrentGRSN(4, 3)(torch.zeros(2, 1, 4), (torch.zeros(1, 1, 3, dtype=torch.float64),
                                                   torch.zeros(1, 1, 3)))
    with pytest.raises(TypeError, match="surrogate_function"):
        grsn_multi_step(torch.zeros(2, 1, 4), torch.zeros(1, 2), torch.zeros(1, 2), 0.5,
                        surrogate_function="atan", backend="torch")
    with pytest.raises(ValueError, match=r"beta must be .* \[H\] = \[2\]"):
        grsn_multi_step(torch.zeros(2, 1, 4), torch.zeros(1, 2), torch.zeros(1, 2),
                        torch.rand(3), backend="torch")
