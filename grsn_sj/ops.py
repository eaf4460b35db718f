"""The fused multi-step GRSN op, registered with ``torch.library``.

``grsn_sj::multi_step_forward`` / ``grsn_sj::multi_step_backward`` are custom ops with a fake
(meta) kernel and an autograd formula, so ``torch.compile`` traces a model that uses them without
a graph break. Their CPU kernel is the numba loop in :mod:`grsn_sj._numba_kernels`; a CUDA kernel
(CuPy) registers itself on the same ops from :mod:`grsn_sj._cupy_backend` when cupy is
importable. The plain torch autograd reference is
:func:`grsn_sj.functional.grsn_multi_step_reference`.

Public entry point: :func:`grsn_multi_step`, which validates the arguments, picks a backend and
returns a :class:`~grsn_sj.functional.GRSNSequence`.

Backends:

* ``'torch'``: the reference loop (any device, any surrogate, any dtype).
* ``'numba'``: the fused CPU op (float32 and float64; float16/bfloat16 are computed in float32,
  as on CUDA).
* ``'cupy'``: the fused CUDA op.
* ``'auto'``: ``'numba'`` for CPU tensors, ``'cupy'`` for CUDA tensors when cupy imports, and the
  torch reference otherwise -- in particular for a surrogate function the kernels do not
  implement (only SpikingJelly's ``ATan`` and ``Sigmoid`` are fused); that fallback is logged
  once per surrogate class.

An explicitly requested backend that cannot run raises a ``ValueError`` / ``RuntimeError``
saying why and what to use instead.
"""
from __future__ import annotations

import logging
from typing import Optional, Union

import torch
from torch import Tensor

from .functional import (
    FiniteCheck,
    GRSNSequence,
    check_episode_starts,
    check_gate_dim,
    check_state_dtype,
    check_threshold,
    check_v_reset,
    finite_check,
    grsn_multi_step_reference,
    surrogate_spec,
)

__all__ = [
    "grsn_multi_step", "BACKENDS", "check_backend", "resolve_backend", "cupy_available",
]

logger = logging.getLogger("grsn_sj")

BACKENDS = ("auto", "torch", "numba", "cupy")


# --------------------------------------------------------------------------------------------
# the custom ops
# --------------------------------------------------------------------------------------------

def _flat(t: Tensor, *lead: int) -> Tensor:
    """``t`` as a C-contiguous numpy array ``[*lead, M, last]`` (no copy for contiguous ``t``)."""
    return t.reshape(*lead, -1, t.shape[-1]).numpy()


def _forget_gate(x: Tensor) -> Tensor:
    """Forget gate ``sigmoid(a_f)``, contiguous ``[T, *batch, H]`` (torch's vectorised kernel: the
    same values as the reference's; the kernels take ``relu(a_i)`` from ``x`` themselves)."""
    return torch.sigmoid(x[..., :x.shape[-1] // 2])


def _kernel_mask(reset_mask, x: Tensor, T: int) -> Tensor:
    """The ``[T, M]`` reset mask the kernels read, or a dummy ``[1, 1]`` when there is none."""
    if reset_mask is None:
        return torch.zeros((1, 1), dtype=x.dtype)
    return reset_mask.reshape(T, -1)


def _numba_forward(x, v0, c0, beta, reset_mask, v_threshold, v_reset, hard_reset, surrogate_id,
                   alpha, spiking):
    from . import _numba_kernels as nk

    T = x.shape[0]
    fg = _forget_gate(x)
    np_dtype = x.numpy().dtype.type
    spike = x.new_empty((*x.shape[:-1], x.shape[-1] // 2))
    h_seq = torch.empty_like(spike)
    c_seq = torch.empty_like(spike)
    v_out = torch.empty_like(v0)
    c_out = torch.empty_like(c0)
    probe = x.new_empty((1,))
    mask = _kernel_mask(reset_mask, x, T)
    kernel = nk.forward_kernel(reset_mask is not None, hard_reset, surrogate_id, spiking)
    kernel(
        _flat(fg, T), _flat(x, T), _flat(v0), _flat(c0), beta.numpy(), mask.numpy(),
        np_dtype(v_threshold), np_dtype(v_reset), np_dtype(alpha),
        _flat(spike, T), _flat(h_seq, T), _flat(c_seq, T), _flat(v_out), _flat(c_out),
        probe.numpy(),
    )
    return spike, h_seq, c_seq, v_out, c_out, probe


def _numba_backward(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, reset_mask, h_seq, c_seq,
                    v_threshold, v_reset, hard_reset, detach_reset, surrogate_id, alpha, spiking):
    from . import _numba_kernels as nk

    T = x.shape[0]
    fg = _forget_gate(x)
    np_dtype = x.numpy().dtype.type
    gx = torch.empty_like(x)
    gv0 = torch.empty_like(v0)
    gc0 = torch.empty_like(c0)
    gbeta = torch.empty_like(v0)
    mask = _kernel_mask(reset_mask, x, T)
    kernel = nk.backward_kernel(reset_mask is not None, hard_reset, detach_reset, surrogate_id,
                                spiking)
    kernel(
        _flat(g_spike, T), _flat(g_h, T), _flat(g_c, T), _flat(g_v), _flat(g_cT), _flat(fg, T),
        _flat(x, T), _flat(v0), _flat(c0), beta.numpy(), mask.numpy(), _flat(h_seq, T),
        _flat(c_seq, T), np_dtype(v_threshold), np_dtype(v_reset), np_dtype(alpha),
        _flat(gx, T), _flat(gv0), _flat(gc0), _flat(gbeta),
    )
    return gx, gv0, gc0, gbeta.reshape(-1, gbeta.shape[-1]).sum(0)


@torch.library.custom_op("grsn_sj::multi_step_forward", mutates_args=(), device_types="cpu")
def multi_step_forward(
    x: Tensor,
    v0: Tensor,
    c0: Tensor,
    beta: Tensor,
    reset_mask: Optional[Tensor],
    v_threshold: float,
    v_reset: float,
    hard_reset: bool,
    detach_reset: bool,
    surrogate_id: int,
    alpha: float,
    spiking: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fused forward. ``x [T, *batch, 2H]``, ``v0, c0 [*batch, H]``, ``beta [H]``,
    ``reset_mask [T, *batch]`` or None; all contiguous and of one dtype (``*batch`` may be
    several dimensions: the kernels see them flattened to one row index ``M``). Returns
    ``(spike, h_seq, c_seq, v, c, probe)`` shaped ``[T, *batch, H]``, ``[*batch, H]`` and
    ``[1]``: ``probe`` is 0 when every pre-activation the kernel read was finite and NaN when one
    was NaN or infinite (the CUDA kernel does not look: always NaN, "check on the host").
    ``detach_reset`` only matters for the backward; it is an argument so autograd sees it."""
    return _numba_forward(x, v0, c0, beta, reset_mask, v_threshold, v_reset, hard_reset,
                          surrogate_id, alpha, spiking)


@multi_step_forward.register_fake
def _(x, v0, c0, beta, reset_mask, v_threshold, v_reset, hard_reset, detach_reset, surrogate_id,
      alpha, spiking):
    seq = x.new_empty((*x.shape[:-1], x.shape[-1] // 2))
    state = torch.empty_like(v0)
    return (seq, torch.empty_like(seq), torch.empty_like(seq), state, torch.empty_like(state),
            x.new_empty((1,)))


@torch.library.custom_op("grsn_sj::multi_step_backward", mutates_args=(), device_types="cpu")
def multi_step_backward(
    g_spike: Tensor,
    g_h: Tensor,
    g_c: Tensor,
    g_v: Tensor,
    g_cT: Tensor,
    x: Tensor,
    v0: Tensor,
    c0: Tensor,
    beta: Tensor,
    reset_mask: Optional[Tensor],
    h_seq: Tensor,
    c_seq: Tensor,
    v_threshold: float,
    v_reset: float,
    hard_reset: bool,
    detach_reset: bool,
    surrogate_id: int,
    alpha: float,
    spiking: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Hand-derived BPTT of :func:`multi_step_forward`. Returns ``(grad_x, grad_v0, grad_c0,
    grad_beta)``; ``grad_beta [H]`` is written per element and reduced over rows with torch
    (deterministic)."""
    return _numba_backward(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, reset_mask, h_seq,
                           c_seq, v_threshold, v_reset, hard_reset, detach_reset, surrogate_id,
                           alpha, spiking)


@multi_step_backward.register_fake
def _(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, reset_mask, h_seq, c_seq, v_threshold,
      v_reset, hard_reset, detach_reset, surrogate_id, alpha, spiking):
    return (torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0),
            torch.empty_like(beta))


def _setup_context(ctx, inputs, output):
    (x, v0, c0, beta, reset_mask, v_threshold, v_reset, hard_reset, detach_reset, surrogate_id,
     alpha, spiking) = inputs
    _, h_seq, c_seq, _, _, _ = output
    ctx.save_for_backward(x, v0, c0, beta, reset_mask, h_seq, c_seq)
    ctx.config = (v_threshold, v_reset, hard_reset, detach_reset, surrogate_id, alpha, spiking)


def _backward(ctx, g_spike, g_h, g_c, g_v, g_cT, _g_probe):
    x, v0, c0, beta, reset_mask, h_seq, c_seq = ctx.saved_tensors
    grads = [g_spike, g_h, g_c]
    grads = [torch.zeros_like(h_seq) if g is None else g.contiguous() for g in grads]
    g_v = torch.zeros_like(v0) if g_v is None else g_v.contiguous()
    g_cT = torch.zeros_like(c0) if g_cT is None else g_cT.contiguous()
    gx, gv0, gc0, gbeta = multi_step_backward(
        *grads, g_v, g_cT, x, v0, c0, beta, reset_mask, h_seq, c_seq, *ctx.config
    )
    return gx, gv0, gc0, gbeta, None, None, None, None, None, None, None, None


multi_step_forward.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# backend selection
# --------------------------------------------------------------------------------------------

_logged_fallbacks: set = set()
_cupy_state: dict = {}


def cupy_available() -> tuple[bool, str]:
    """``(True, '')`` when the CuPy CUDA backend imports and registered its kernel, else
    ``(False, reason)`` with the real import error."""
    if "ok" not in _cupy_state:
        try:
            from . import _cupy_backend  # noqa: F401  (registers the CUDA kernel)
        except Exception as exc:  # ImportError, or cupy failing to find a driver
            _cupy_state["ok"] = False
            _cupy_state["why"] = f"{type(exc).__name__}: {exc}"
        else:
            _cupy_state["ok"] = True
            _cupy_state["why"] = ""
    return _cupy_state["ok"], _cupy_state["why"]


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError listing them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def resolve_backend(backend: str, device: torch.device, surrogate_function) -> str:
    """The backend that will run: ``'torch'``, ``'numba'`` or ``'cupy'``."""
    if check_backend(backend) == "torch":
        return "torch"
    spec = surrogate_spec(surrogate_function)
    if backend == "auto":
        if spec is None:
            key = type(surrogate_function).__name__
            if key not in _logged_fallbacks:
                _logged_fallbacks.add(key)
                logger.warning(
                    "grsn_sj: surrogate %s has no fused kernel (ATan and Sigmoid do); "
                    "using the torch reference loop", key)
            return "torch"
        if device.type == "cpu":
            return "numba"
        if device.type == "cuda" and cupy_available()[0]:
            return "cupy"
        return "torch"
    if spec is None:
        raise ValueError(
            f"backend={backend!r} implements only surrogate.ATan and surrogate.Sigmoid, got "
            f"{type(surrogate_function).__name__}; use backend='torch' or 'auto' for other "
            "surrogate functions")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(
            f"backend='numba' runs on CPU tensors, got a tensor on {device}; use backend='cupy' "
            "for CUDA or backend='auto'")
    if backend == "cupy":
        if device.type != "cuda":
            raise ValueError(
                f"backend='cupy' runs on CUDA tensors, got a tensor on {device}; use "
                "backend='numba' on the CPU or backend='auto'")
        ok, why = cupy_available()
        if not ok:
            raise RuntimeError(
                f"backend='cupy' cannot run: {why}. Install it with pip install "
                "'grsn_sj[cuda]' (cupy for CUDA 12), or use backend='torch' / 'auto'")
    return backend


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------

def _check_sequence_args(x_seq, v, c, reset_mask):
    if not isinstance(x_seq, Tensor):
        raise TypeError(f"x_seq must be a torch.Tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(
            f"x_seq must be [T, *batch, 2H] (time first), got shape {tuple(x_seq.shape)}")
    if not x_seq.is_floating_point():
        raise TypeError(f"x_seq must be a floating point tensor, got {x_seq.dtype}")
    if x_seq.shape[0] == 0:
        raise ValueError("x_seq has T = 0 time steps; pass at least one step")
    state_shape = (*x_seq.shape[1:-1], check_gate_dim(x_seq, "x_seq"))
    for name, s in (("v", v), ("c", c)):
        if not isinstance(s, Tensor):
            raise TypeError(f"state {name} must be a torch.Tensor, got {type(s).__name__}")
        if tuple(s.shape) != state_shape:
            raise ValueError(
                f"state {name} has shape {tuple(s.shape)} but x_seq {tuple(x_seq.shape)} needs "
                f"{state_shape}; reset the state (functional.reset_net) or pass matching states")
        check_state_dtype(s, name, x_seq)
    if reset_mask is not None:
        check_episode_starts(reset_mask, x_seq.shape[:-1], "[T, *batch]")


def _check_beta(beta, hidden: int) -> None:
    """beta: a float, a one-element tensor or an ``[H]`` tensor."""
    if isinstance(beta, Tensor):
        if beta.numel() != 1 and tuple(beta.shape) != (hidden,):
            raise ValueError(f"beta must be a float, a scalar or an [H] = [{hidden}] tensor, got "
                             f"shape {tuple(beta.shape)}")
        if not beta.is_floating_point():
            raise TypeError(f"beta must be a floating-point tensor, got {beta.dtype}")
    elif isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a float or a tensor, got {type(beta).__name__}")


def _beta_vector(beta, hidden: int, like: Tensor) -> Tensor:
    if isinstance(beta, Tensor):
        if beta.numel() == 1:
            return beta.reshape(1).to(like.dtype).expand(hidden).contiguous()
        return beta.to(like.dtype).contiguous()
    return torch.full((hidden,), float(beta), dtype=like.dtype, device=like.device)


def grsn_multi_step(
    x_seq: Tensor,
    v: Tensor,
    c: Tensor,
    beta,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = None,
    surrogate_function=None,
    detach_reset: bool = False,
    reset_mask: Optional[Tensor] = None,
    backend: str = "auto",
    check_input: Union[bool, FiniteCheck, None] = True,
) -> GRSNSequence:
    """Run the GRSN over ``T`` steps with explicit state.

    :param x_seq: ``[T, *batch, 2H]`` gate pre-activations ``[forget | input]``.
    :param v: ``[*batch, H]`` membrane after reset (initial state).
    :param c: ``[*batch, H]`` gated current (initial state).
    :param beta: membrane decay ``1 - 1/tau``: a float, or an ``[H]`` tensor (learnable tau).
    :param v_threshold: firing threshold (> 0).
    :param v_reset: ``None`` for soft reset, a float for hard reset to that value.
    :param surrogate_function: SpikingJelly surrogate (default ``surrogate.ATan()``).
    :param detach_reset: detach the spike used in the reset from the graph.
    :param reset_mask: ``None`` or ``[T, *batch]``; 1 resets the row's state before step t.
    :param backend: ``'auto'``, ``'torch'``, ``'numba'`` or ``'cupy'``.
    :param check_input: ``True``: raise a ValueError naming the first NaN / inf of ``x_seq``;
        ``False`` for a caller that checked the tensor it was given; a
        :class:`~grsn_sj.functional.FiniteCheck` of the caller's own input (e.g. ``GRSN``'s,
        before its Linear), raised in its name. On the fused CPU op the kernel probes the
        pre-activations inside its loop (a few percent of the call, ``bench_neuron.py``) and the
        tensor is searched only when the probe finds a NaN / inf. The torch reference and
        the CUDA op check the tensor with one sum first.
    :returns: :class:`~grsn_sj.functional.GRSNSequence` ``(spike_seq, h_seq, c_seq, v, c)``.
    """
    if surrogate_function is None:
        from spikingjelly.activation_based import surrogate

        surrogate_function = surrogate.ATan()
    if not callable(surrogate_function):
        raise TypeError(f"surrogate_function must be a SpikingJelly surrogate module, e.g. "
                        f"surrogate.ATan(), got {type(surrogate_function).__name__}")
    v_threshold = check_threshold(v_threshold)
    v_reset = check_v_reset(v_reset)
    _check_sequence_args(x_seq, v, c, reset_mask)
    _check_beta(beta, x_seq.shape[-1] // 2)
    check = finite_check(check_input, x_seq, "grsn_multi_step", "x_seq")
    try:
        chosen = resolve_backend(backend, x_seq.device, surrogate_function)
    except (ValueError, RuntimeError):
        if check is not None:
            check()  # a NaN in the input is named before a backend that cannot run
        raise
    if chosen != "numba" and check is not None:
        check()  # the reference and the CUDA op do not probe: one sum first
    if chosen == "torch":
        return grsn_multi_step_reference(x_seq, v, c, beta, v_threshold, v_reset,
                                         surrogate_function, detach_reset, reset_mask)

    sid, alpha, spiking = surrogate_spec(surrogate_function)
    out_dtype = x_seq.dtype
    compute_dtype = out_dtype
    if out_dtype not in (torch.float32, torch.float64):  # the fused kernels: f32 / f64
        compute_dtype = torch.float32
    x = x_seq.to(compute_dtype).contiguous()
    v0 = v.to(compute_dtype).contiguous()
    c0 = c.to(compute_dtype).contiguous()
    beta_vec = _beta_vector(beta, x.shape[-1] // 2, x)
    mask = None
    if reset_mask is not None:
        mask = (reset_mask != 0).to(dtype=compute_dtype, device=x.device).contiguous()
    out = multi_step_forward(
        x, v0, c0, beta_vec, mask, v_threshold, 0.0 if v_reset is None else v_reset,
        v_reset is not None, bool(detach_reset), sid, alpha, spiking)
    if chosen == "numba":
        _after_probe(out[5], check, x_seq)
    return GRSNSequence(*(t.to(out_dtype) for t in out[:5]))


def _after_probe(probe: Tensor, check: Optional[FiniteCheck], x_seq: Tensor) -> None:
    """When the CPU kernel's ``probe`` saw a NaN / inf pre-activation: run ``check``, which
    raises naming the first bad element of the caller's tensor; if that tensor is finite (a
    module's Linear made the NaN / inf: diverged weights, an overflow), name the first bad gate
    pre-activation instead. Skipped while ``torch.compile`` traces, as
    :func:`~grsn_sj.functional.check_finite` is."""
    if check is None or torch.compiler.is_compiling() or probe.item() == 0.0:
        return  # the probe is 0, or NaN if a pre-activation was NaN / inf
    check.with_gates(x_seq)
