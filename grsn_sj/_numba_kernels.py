"""Numba-compiled CPU kernels of the fused multi-step GRSN op (forward and backward).

They implement, element for element and in the same order of float operations, the math of
:func:`grsn_sj.functional.grsn_multi_step_reference`; ``tests/test_fused_op.py`` checks them
against it (values, gradients, float64 gradcheck).

Layout (all C-contiguous): ``x [T, M, 2H]`` = ``[forget | input]`` pre-activations, states
``[M, H]``, ``beta [H]``, ``mask [T, M]`` (``has_mask`` False: a dummy ``[1, 1]`` array).
Rows run in parallel (``prange``); inside a row, time is the outer loop and the ``H`` neurons
the inner, contiguous loop. Every scalar is passed already cast to the array's dtype so float32
inputs are computed in float32 like the torch reference.

Surrogates (``sid``): 0 = ATan, 1 = Sigmoid (SpikingJelly's definitions). With ``spiking``
False the forward emits the surrogate's primitive function instead of the Heaviside step, as
SpikingJelly's surrogate modules do in non-spiking mode; then the backward is the exact gradient
of the forward, which is what makes a float64 gradcheck of the whole backward possible.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

_CACHE = True
_PI = math.pi


@njit(inline="always", cache=_CACHE)
def _fire(x, sid, alpha, spiking, one, zero, half):
    if spiking:
        return one if x >= zero else zero
    if sid == 0:
        return math.atan(x * (alpha * (_PI / 2.0))) / _PI + half
    return one / (one + math.exp(-(x * alpha)))


@njit(inline="always", cache=_CACHE)
def _fire_grad(x, sid, alpha, one, two):
    if sid == 0:
        a = alpha / two
        ax = a * x * _PI
        return a / (one + ax * ax)
    sg = one / (one + math.exp(-(x * alpha)))
    return (one - sg) * sg * alpha


@njit(parallel=True, cache=_CACHE)
def grsn_forward(x, v0, c0, beta, mask, has_mask, thr, v_reset, hard, sid, alpha, spiking,
                 spike, hseq, cseq, v_out, c_out):
    T, M, H2 = x.shape
    H = H2 // 2
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    half = x.dtype.type(0.5)
    v_init = v_reset if hard else zero
    for n in prange(M):
        for j in range(H):
            v_out[n, j] = v0[n, j]
            c_out[n, j] = c0[n, j]
        for t in range(T):
            if has_mask and mask[t, n] != zero:
                for j in range(H):
                    v_out[n, j] = v_init
                    c_out[n, j] = zero
            for j in range(H):
                f = one / (one + math.exp(-x[t, n, j]))
                ai = x[t, n, H + j]
                i = ai if ai > zero else zero
                c = f * c_out[n, j] + (one - f) * i
                b = beta[j]
                h = b * v_out[n, j] + (one - b) * c
                s = _fire(h - thr, sid, alpha, spiking, one, zero, half)
                if hard:
                    v = (one - s) * h + s * v_reset
                else:
                    v = h - thr * s
                spike[t, n, j] = s
                hseq[t, n, j] = h
                cseq[t, n, j] = c
                v_out[n, j] = v
                c_out[n, j] = c


@njit(parallel=True, cache=_CACHE)
def grsn_backward(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, mask, has_mask, hseq, cseq,
                  thr, v_reset, hard, detach_reset, sid, alpha, spiking,
                  gx, gv0, gc0, gbeta):
    T, M, H2 = x.shape
    H = H2 // 2
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    half = x.dtype.type(0.5)
    two = x.dtype.type(2.0)
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
                    sp = _fire(hp - thr, sid, alpha, spiking, one, zero, half)
                    if hard:
                        vp = (one - sp) * hp + sp * v_reset
                    else:
                        vp = hp - thr * sp
                    cp = cseq[t - 1, n, j]
                s = _fire(h - thr, sid, alpha, spiking, one, zero, half)
                sg = _fire_grad(h - thr, sid, alpha, one, two)
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
                af = x[t, n, j]
                ai = x[t, n, H + j]
                f = one / (one + math.exp(-af))
                i = ai if ai > zero else zero
                gx[t, n, j] = gct * (cp - i) * f * (one - f)
                gx[t, n, H + j] = gct * (one - f) if ai > zero else zero
                if reset:
                    gv0[n, j] = zero
                    gc0[n, j] = zero
                else:
                    gv0[n, j] = gh * b
                    gc0[n, j] = gct * f


def threading_layer() -> str:
    """Numba's active threading layer (after the first parallel call)."""
    try:
        return numba.threading_layer()
    except ValueError:
        return "not initialised"


__all__ = ["grsn_forward", "grsn_backward", "threading_layer", "np"]
