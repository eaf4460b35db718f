"""The fused multi-step op (numba CPU kernel) against the plain torch autograd reference."""
import logging
import math

import pytest
import torch
from spikingjelly.activation_based import surrogate

from grsn_sj import grsn_multi_step, grsn_multi_step_reference
from grsn_sj import ops
from grsn_sj.ops import multi_step_forward, resolve_backend

SURROGATES = {"atan": lambda: surrogate.ATan(), "sigmoid": lambda: surrogate.Sigmoid(alpha=3.0)}
RESETS = {"soft": None, "hard0": 0.0, "hard-0.3": -0.3}


def _inputs(T=9, N=5, H=6, dtype=torch.float32, seed=0, mask_p=0.2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, 2 * H, generator=g, dtype=dtype) * 2.0
    x[..., H:] += 1.0  # make the input current positive often enough to fire
    v = torch.rand(N, H, generator=g, dtype=dtype)
    c = torch.rand(N, H, generator=g, dtype=dtype)
    beta = 0.2 + 0.6 * torch.rand(H, generator=g, dtype=dtype)
    mask = (torch.rand(T, N, generator=g) < mask_p).to(dtype) if mask_p else None
    return x, v, c, beta, mask


def _run(fn, x, v, c, beta, weights, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (x, v, c, beta)]
    out = fn(*leaves, **kw)
    loss = sum((o * w).sum() for o, w in zip(out, weights))
    loss.backward()
    return out, [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", list(RESETS))
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("sg", list(SURROGATES))
@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_matches_reference(dtype, reset, detach_reset, sg, with_mask):
    x, v, c, beta, mask = _inputs(dtype=dtype, mask_p=0.25 if with_mask else 0)
    T, N, H = x.shape[0], x.shape[1], x.shape[2] // 2
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(T, N, H, generator=g, dtype=dtype) for _ in range(3)] + [
        torch.randn(N, H, generator=g, dtype=dtype) for _ in range(2)]
    kw = dict(v_threshold=1.0, v_reset=RESETS[reset], surrogate_function=SURROGATES[sg](),
              detach_reset=detach_reset, reset_mask=mask)
    out_f, grads_f = _run(grsn_multi_step, x, v, c, beta, weights, backend="numba", **kw)
    out_r, grads_r = _run(grsn_multi_step_reference, x, v, c, beta, weights, **kw)
    assert out_f.spike_seq.sum() > 0, "test inputs should make neurons fire"
    assert torch.equal(out_f.spike_seq, out_r.spike_seq)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(out_f, out_r):
        torch.testing.assert_close(a, b, **tol)
    gtol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("x", "v", "c", "beta"), grads_f, grads_r):
        torch.testing.assert_close(a, b, **gtol, msg=lambda m: f"grad {name}: {m}")


def test_reset_mask_changes_the_result_and_blocks_gradients():
    x, v, c, beta, _ = _inputs(mask_p=0)
    mask = torch.zeros(x.shape[:2])
    mask[4, 2] = 1.0
    vv = v.clone().requires_grad_()
    out = grsn_multi_step(x, vv, c, beta, reset_mask=mask, backend="numba")
    plain = grsn_multi_step(x, v, c, beta, backend="numba")
    # the reset row differs from step 4 on, the other rows do not
    assert not torch.equal(out.h_seq[4:, 2], plain.h_seq[4:, 2])
    torch.testing.assert_close(out.h_seq[:, [0, 1, 3, 4]], plain.h_seq[:, [0, 1, 3, 4]])
    torch.testing.assert_close(out.h_seq[:4], plain.h_seq[:4])
    # after the reset, nothing from the initial state reaches row 2
    out.h_seq[4:, 2].sum().backward()
    assert torch.count_nonzero(vv.grad[2]) == 0
    # the segment after the reset equals a fresh run from the initial state
    fresh = grsn_multi_step(x[4:, 2:3], torch.zeros(1, 6), torch.zeros(1, 6), beta,
                            backend="numba")
    torch.testing.assert_close(out.h_seq[4:, 2:3], fresh.h_seq)


def test_bool_mask_equals_float_mask():
    x, v, c, beta, mask = _inputs(mask_p=0.3)
    a = grsn_multi_step(x, v, c, beta, reset_mask=mask, backend="numba")
    b = grsn_multi_step(x, v, c, beta, reset_mask=mask.bool(), backend="numba")
    r = grsn_multi_step(x, v, c, beta, reset_mask=mask.bool(), backend="torch")
    for p, q, s in zip(a, b, r):
        assert torch.equal(p, q)
        torch.testing.assert_close(p, s)


@pytest.mark.parametrize("sg", list(SURROGATES))
@pytest.mark.parametrize("reset", ["soft", "hard-0.3"])
def test_gradcheck_float64(sg, reset):
    """With the surrogate in non-spiking mode the forward is smooth and the hand-derived backward
    must be its exact gradient: a float64 gradcheck of every input and every output, including
    the surrogate and reset paths and the episode-start mask. (detach_reset=True deliberately
    departs from the exact gradient; it is checked against the reference below.)"""
    x, v, c, beta, mask = _inputs(T=5, N=3, H=4, dtype=torch.float64, mask_p=0.3)
    fn_sg = SURROGATES[sg]()
    fn_sg.set_spiking_mode(False)

    def f(x, v, c, beta):
        return tuple(grsn_multi_step(x, v, c, beta, v_reset=RESETS[reset],
                                     surrogate_function=fn_sg, reset_mask=mask,
                                     backend="numba"))

    leaves = [t.clone().requires_grad_() for t in (x, v, c, beta)]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("sg", list(SURROGATES))
@pytest.mark.parametrize("reset", ["soft", "hard-0.3"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_smooth_mode_matches_reference(sg, reset, detach_reset):
    x, v, c, beta, mask = _inputs(T=7, N=4, H=5, dtype=torch.float64, mask_p=0.3)
    fn_sg = SURROGATES[sg]()
    fn_sg.set_spiking_mode(False)
    T, N, H = 7, 4, 5
    weights = [torch.randn(T, N, H, dtype=torch.float64) for _ in range(3)] + [
        torch.randn(N, H, dtype=torch.float64) for _ in range(2)]
    kw = dict(v_reset=RESETS[reset], surrogate_function=fn_sg, detach_reset=detach_reset,
              reset_mask=mask)
    out_f, grads_f = _run(grsn_multi_step, x, v, c, beta, weights, backend="numba", **kw)
    out_r, grads_r = _run(grsn_multi_step_reference, x, v, c, beta, weights, **kw)
    for a, b in zip(list(out_f) + grads_f, list(out_r) + grads_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gradcheck_spiking_mode_without_surrogate_paths():
    """Spiking mode, detach_reset: outputs h, c, v_T, c_T do not depend on the surrogate, so
    their gradient is the exact gradient of the (locally constant-spike) forward."""
    x, v, c, beta, mask = _inputs(T=6, N=3, H=4, dtype=torch.float64, mask_p=0.3)

    def f(x, v, c, beta):
        out = grsn_multi_step(x, v, c, beta, detach_reset=True, reset_mask=mask,
                              backend="numba")
        return out.h_seq, out.c_seq, out.v, out.c

    leaves = [t.clone().requires_grad_() for t in (x, v, c, beta)]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_low_precision_inputs_compute_in_float32():
    x, v, c, beta, mask = _inputs(mask_p=0.2)
    xb = x.to(torch.bfloat16)
    out = grsn_multi_step(xb, v.bfloat16(), c.bfloat16(), beta, reset_mask=mask,
                          backend="numba")
    ref = grsn_multi_step_reference(xb.float(), v.bfloat16().float(), c.bfloat16().float(),
                                    beta, reset_mask=mask)
    assert out.spike_seq.dtype == torch.bfloat16
    torch.testing.assert_close(out.h_seq.float(), ref.h_seq.bfloat16().float())


def test_beta_gradient_is_deterministic():
    x, v, c, beta, mask = _inputs(T=20, N=64, H=16, mask_p=0.1)
    grads = []
    for _ in range(2):
        b = beta.clone().requires_grad_()
        grsn_multi_step(x, v, c, b, reset_mask=mask, backend="numba").h_seq.sum().backward()
        grads.append(b.grad)
    assert torch.equal(grads[0], grads[1])


def test_scalar_beta_broadcasts_like_a_vector():
    x, v, c, _, mask = _inputs()
    a = grsn_multi_step(x, v, c, 0.5, reset_mask=mask, backend="numba")
    b = grsn_multi_step(x, v, c, torch.full((6,), 0.5), reset_mask=mask, backend="numba")
    r = grsn_multi_step(x, v, c, 0.5, reset_mask=mask, backend="torch")
    for p, q, s in zip(a, b, r):
        assert torch.equal(p, q)
        torch.testing.assert_close(p, s)


def test_extra_batch_dims_are_flattened_and_restored():
    x, v, c, beta, _ = _inputs(T=4, N=6, H=3)
    x4 = x.reshape(4, 2, 3, 6)
    mask = torch.zeros(4, 2, 3)
    mask[2, 1, 0] = 1
    a = grsn_multi_step(x4, v.reshape(2, 3, 3), c.reshape(2, 3, 3), beta, reset_mask=mask,
                        backend="numba")
    r = grsn_multi_step(x, v, c, beta, reset_mask=mask.reshape(4, 6), backend="torch")
    assert a.spike_seq.shape == (4, 2, 3, 3) and a.v.shape == (2, 3, 3)
    torch.testing.assert_close(a.h_seq.reshape(4, 6, 3), r.h_seq)


def test_non_contiguous_input():
    x, v, c, beta, mask = _inputs()
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert not xt.is_contiguous()
    a = grsn_multi_step(xt, v, c, beta, reset_mask=mask, backend="numba")
    r = grsn_multi_step(x, v, c, beta, reset_mask=mask, backend="torch")
    torch.testing.assert_close(a.h_seq, r.h_seq)


def test_opcheck_schema_fake_and_autograd():
    x, v, c, beta, mask = _inputs(T=3, N=2, H=3)
    args = (x, v, c, beta.requires_grad_(), mask, 1.0, 0.0, False, False, 0, 2.0, True)
    torch.library.opcheck(multi_step_forward, args)


def test_torch_compile_fullgraph_matches_eager():
    x, v, c, beta, mask = _inputs(T=4, N=3, H=4)

    def f(x, v, c):
        out = grsn_multi_step(x, v, c, beta, reset_mask=mask, backend="numba")
        return out.spike_seq.sum() + out.v.sum()

    explain = torch._dynamo.explain(f)(x, v, c)
    assert explain.graph_break_count == 0
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    le, lc = f(xe, v, c), compiled(xc, v, c)
    le.backward()
    lc.backward()
    torch.testing.assert_close(le, lc)
    torch.testing.assert_close(xe.grad, xc.grad)


# ---------------------------------------------------------------------------- backends & errors

def test_auto_falls_back_for_other_surrogates_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_logged_fallbacks", set())
    x, v, c, beta, mask = _inputs()
    sg = surrogate.PiecewiseQuadratic()
    assert resolve_backend("auto", x.device, surrogate.ATan()) == "numba"
    with caplog.at_level(logging.WARNING, logger="grsn_sj"):
        a = grsn_multi_step(x, v, c, beta, surrogate_function=sg, reset_mask=mask)
        grsn_multi_step(x, v, c, beta, surrogate_function=sg, reset_mask=mask)
    assert sum("PiecewiseQuadratic" in r.getMessage() for r in caplog.records) == 1
    r = grsn_multi_step_reference(x, v, c, beta, surrogate_function=sg, reset_mask=mask)
    assert torch.equal(a.spike_seq, r.spike_seq)


def test_subclassed_surrogate_is_not_fused():
    class MyATan(surrogate.ATan):
        pass

    assert resolve_backend("auto", torch.device("cpu"), MyATan()) == "torch"
    with pytest.raises(ValueError, match="ATan and surrogate.Sigmoid"):
        resolve_backend("numba", torch.device("cpu"), MyATan())


def test_explicit_backends_that_cannot_run_raise():
    x, v, c, beta, _ = _inputs()
    with pytest.raises(ValueError, match="unknown backend"):
        grsn_multi_step(x, v, c, beta, backend="cuda")
    with pytest.raises(ValueError, match="CUDA tensors"):
        grsn_multi_step(x, v, c, beta, backend="cupy")
    with pytest.raises(ValueError, match="backend='torch'"):
        grsn_multi_step(x, v, c, beta, surrogate_function=surrogate.SoftSign(), backend="numba")
    with pytest.raises(ValueError, match="CPU tensors"):
        resolve_backend("numba", torch.device("meta"), surrogate.ATan())


@pytest.mark.parametrize("bad, match", [
    (dict(x_seq=torch.zeros(3, 2, 5)), "2\\*H > 0"),
    (dict(x_seq=torch.zeros(3, 2, 0)), "2\\*H > 0"),
    (dict(x_seq=torch.zeros(0, 2, 12)), "T = 0"),
    (dict(x_seq=torch.zeros(12)), "time first"),
    (dict(v=torch.zeros(3, 6)), "state v has shape"),
    (dict(c=torch.zeros(2, 7)), "state c has shape"),
    (dict(v_threshold=0.0), "finite number > 0"),
    (dict(v_threshold=-1.0), "finite number > 0"),
    (dict(v_threshold=math.nan), "finite number > 0"),
    (dict(v_reset=math.inf), "finite"),
    (dict(reset_mask=torch.zeros(3, 3)), "episode_starts must have shape"),
    (dict(beta=torch.zeros(5)), "beta must be"),
])
def test_bad_input_raises_value_error(bad, match):
    args = dict(x_seq=torch.zeros(3, 2, 12), v=torch.zeros(2, 6), c=torch.zeros(2, 6), beta=0.5)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        grsn_multi_step(**args, backend="numba")


@pytest.mark.parametrize("bad, match", [
    (dict(x_seq=[[0.0]]), "torch.Tensor"),
    (dict(x_seq=torch.zeros(3, 2, 12, dtype=torch.long)), "floating point"),
    (dict(v_threshold="1"), "v_threshold must be a float"),
    (dict(v_reset="0"), "v_reset must be None"),
    (dict(v=None), "must be a torch.Tensor"),
])
def test_bad_types_raise_type_error(bad, match):
    args = dict(x_seq=torch.zeros(3, 2, 12), v=torch.zeros(2, 6), c=torch.zeros(2, 6), beta=0.5)
    args.update(bad)
    with pytest.raises(TypeError, match=match):
        grsn_multi_step(**args)



def test_cupy_backend_reports_why_it_cannot_run(monkeypatch):
    monkeypatch.setattr(ops, "_cupy_state", {})
    ok, why = ops.cupy_available()
    if ok:
        pytest.skip("the CUDA backend is available here")
    assert why  # a reason, never an empty message
    with pytest.raises(RuntimeError, match="backend='cupy' cannot run: " + why[:20]):
        resolve_backend("cupy", torch.device("cuda"), surrogate.ATan())
