"""Numba-compiled CPU kernels of the fused multi-step GRSN op (forward and backward).

They implement, element for element and in the same order of float operations, the math of
:func:`grsn_sj.functional.grsn_multi_step_reference`; ``tests/test_fused_op.py`` checks them
against it (values, gradients, float64 gradcheck).

Layout (all C-contiguous): the forget gate ``f = sigmoid(a_f)`` as ``[T, M, H]`` (computed by
the caller with torch's vectorised ``sigmoid``: exactly the reference's arithmetic, and no scalar
``exp`` in the loop), the raw pre-activations ``x = [a_f | a_i]`` as ``[T, M, 2H]`` (the loops
take ``i = relu(a_i)`` from them, as ``torch.relu`` does, NaN included), states ``[M, H]``,
``beta [H]``, ``mask [T, M]`` (``has_mask`` False: a dummy ``[1, 1]`` array).

The forward also fills ``probe [1]``: the sum over every element of ``(a_f - a_f) + (a_i - a_i)``,
which is 0 when every pre-activation it read was finite and NaN as soon as one was NaN or
infinite (``inf - inf`` is NaN); it is summed per neuron inside the loop and over rows after it,
so the caller reads one number. It costs the loop the read of ``a_f`` (the loop reads ``f``
otherwise; ``a_i`` it reads anyway), two subtractions and two adds per element, where a separate
check of ``x`` would read the whole tensor once more (``grsn_sj.ops`` raises on a NaN probe by
naming the bad element of the user's tensor).
Rows run in parallel (``prange``); inside a row, time is the outer loop and the ``H`` neurons
the inner, contiguous loop. Every scalar is passed already cast to the array's dtype so float32
inputs are computed in float32 like the torch reference.

The flags (``has_mask``, ``hard``, ``detach_reset``, ``sid``, ``spiking``) are closure
constants of :func:`forward_kernel` / :func:`backward_kernel`: each configuration compiles its
own loop with the branches folded away (about 8x faster than one generic loop), and numba's disk
cache keys closures by their values, so every configuration is compiled once per machine.

Surrogates (``sid``): 0 = ATan, 1 = Sigmoid (SpikingJelly's definitions). With ``spiking``
False the forward emits the surrogate's primitive function instead of the Heaviside step, as
SpikingJelly's surrogate modules do in non-spiking mode; then the backward is the exact gradient
of the forward, which is what makes a float64 gradcheck of the whole backward possible.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

_CACHE = True
_PI = math.pi


@njit(inline="always", cache=_CACHE)
def _fire(x, sid, alpha, spiking, one, zero, half, pi):
    """Spike (Heaviside, fires at x >= 0) or, in non-spiking mode, the surrogate's primitive.
    Every constant is of the array's dtype so float32 stays float32 (vectorisable)."""
    if spiking:
        return one if x >= zero else zero
    if sid == 0:
        return math.atan(x * (alpha * (pi / (one + one)))) / pi + half
    return one / (one + math.exp(-(x * alpha)))


@njit(inline="always", cache=_CACHE)
def _relu(a, zero):
    """``torch.relu``: ``a`` if it is not <= 0 (so a NaN stays NaN), else 0."""
    return zero if a <= zero else a


@njit(inline="always", cache=_CACHE)
def _fire_grad(x, sid, alpha, one, pi):
    """Surrogate derivative: ATan ``a / (1 + (pi a x)^2)`` with ``a = alpha / 2``; Sigmoid
    ``alpha * sg * (1 - sg)`` with ``sg = sigmoid(alpha x)``."""
    if sid == 0:
        a = alpha / (one + one)
        ax = a * x * pi
        return a / (one + ax * ax)
    sg = one / (one + math.exp(-(x * alpha)))
    return (one - sg) * sg * alpha


@functools.lru_cache(maxsize=None)
def forward_kernel(has_mask: bool, hard: bool, sid: int, spiking: bool, probing: bool = True):
    """The forward loop specialised for one configuration (compiled on first use, cached).
    ``probing=False`` sets ``probe`` to 0 (``examples/bench_neuron.py`` times the probe's cost
    with it; the op always probes)."""

    @njit(parallel=True, cache=_CACHE)
    def grsn_forward(fg, x, v0, c0, beta, mask, thr, v_reset, alpha,
                     spike, hseq, cseq, v_out, c_out, probe):
        _forward_body(fg, x, v0, c0, beta, mask, has_mask, thr, v_reset, hard, sid, alpha,
                      spiking, probing, spike, hseq, cseq, v_out, c_out, probe)

    return grsn_forward


@njit(inline="always", cache=_CACHE)
def _forward_body(fg, x, v0, c0, beta, mask, has_mask, thr, v_reset, hard, sid, alpha, spiking,
                  probing, spike, hseq, cseq, v_out, c_out, probe):
    T, M, H = fg.shape
    one = fg.dtype.type(1.0)
    zero = fg.dtype.type(0.0)
    half = fg.dtype.type(0.5)
    pi = fg.dtype.type(_PI)
    v_init = v_reset if hard else zero
    row_probe = np.empty(M, dtype=fg.dtype)
    for n in prange(M):
        acc = np.zeros(H, dtype=fg.dtype)
        for j in range(H):
            v_out[n, j] = v0[n, j]
            c_out[n, j] = c0[n, j]
        for t in range(T):
            if has_mask and mask[t, n] != zero:
                for j in range(H):
                    v_out[n, j] = v_init
                    c_out[n, j] = zero
            for j in range(H):
                f = fg[t, n, j]
                a_f = x[t, n, j]
                a_i = x[t, n, H + j]
                if probing:
                    acc[j] += (a_f - a_f) + (a_i - a_i)
                c = f * c_out[n, j] + (one - f) * _relu(a_i, zero)
                b = beta[j]
                h = b * v_out[n, j] + (one - b) * c
                s = _fire(h - thr, sid, alpha, spiking, one, zero, half, pi)
                if hard:
                    v = (one - s) * h + s * v_reset
                else:
                    v = h - thr * s
                spike[t, n, j] = s
                hseq[t, n, j] = h
                cseq[t, n, j] = c
                v_out[n, j] = v
                c_out[n, j] = c
        total = zero
        for j in range(H):
            total += acc[j]
        row_probe[n] = total
    total = zero
    for n in range(M):
        total += row_probe[n]
    probe[0] = total


@functools.lru_cache(maxsize=None)
def backward_kernel(has_mask: bool, hard: bool, detach_reset: bool, sid: int, spiking: bool):
    """The backward loop specialised for one configuration (compiled on first use, cached).
    ``gx [T, M, 2H]`` receives the gradients of the pre-activations ``[a_f | a_i]``."""

    @njit(parallel=True, cache=_CACHE)
    def grsn_backward(g_spike, g_h, g_c, g_v, g_cT, fg, x, v0, c0, beta, mask, hseq, cseq,
                      thr, v_reset, alpha, gx, gv0, gc0, gbeta):
        _backward_body(g_spike, g_h, g_c, g_v, g_cT, fg, x, v0, c0, beta, mask, has_mask, hseq,
                       cseq, thr, v_reset, hard, detach_reset, sid, alpha, spiking,
                       gx, gv0, gc0, gbeta)

    return grsn_backward


@njit(inline="always", cache=_CACHE)
def _backward_body(g_spike, g_h, g_c, g_v, g_cT, fg, x, v0, c0, beta, mask, has_mask, hseq,
                   cseq, thr, v_reset, hard, detach_reset, sid, alpha, spiking,
                   gx, gv0, gc0, gbeta):
    T, M, H = fg.shape
    one = fg.dtype.type(1.0)
    zero = fg.dtype.type(0.0)
    half = fg.dtype.type(0.5)
    pi = fg.dtype.type(_PI)
    v_init = v_reset if hard else zero
    for n in prange(M):
        # gv0 / gc0 carry dL/dv_t and dL/dc_t backwards in time; gbeta accumulates over t.
        for j in range(H):
            gv0[n, j] = g_v[n, j]
            gc0[n, j] = g_cT[n, j]
            gbeta[n, j] = zero
        for tt in range(T):
            t = T - 1 - tt
            reset = has_mask and mask[t, n] != zero
            for j in range(H):
                h = hseq[t, n, j]
                c = cseq[t, n, j]
                b = beta[j]
                # state entering step t (after the episode-start reset)
                if reset:
                    vp = v_init
                    cp = zero
                elif t == 0:
                    vp = v0[n, j]
                    cp = c0[n, j]
                else:
                    hp = hseq[t - 1, n, j]
                    sp = _fire(hp - thr, sid, alpha, spiking, one, zero, half, pi)
                    if hard:
                        vp = (one - sp) * hp + sp * v_reset
                    else:
                        vp = hp - thr * sp
                    cp = cseq[t - 1, n, j]
                s = _fire(h - thr, sid, alpha, spiking, one, zero, half, pi)
                sg = _fire_grad(h - thr, sid, alpha, one, pi)
                gv = gv0[n, j]
                if hard:
                    dvdh = one - s
                    dvds = v_reset - h
                else:
                    dvdh = one
                    dvds = -thr
                if detach_reset:
                    dvds = zero
                gs = g_spike[t, n, j] + gv * dvds
                gh = g_h[t, n, j] + gv * dvdh + gs * sg
                gct = g_c[t, n, j] + gc0[n, j] + gh * (one - b)
                gbeta[n, j] += gh * (vp - c)
                f = fg[t, n, j]
                i = _relu(x[t, n, H + j], zero)
                gx[t, n, j] = gct * (cp - i) * f * (one - f)
                gx[t, n, H + j] = gct * (one - f) if i > zero else zero
                if reset:
                    gv0[n, j] = zero
                    gc0[n, j] = zero
                else:
                    gv0[n, j] = gh * b
                    gc0[n, j] = gct * f


__all__ = ["forward_kernel", "backward_kernel"]
