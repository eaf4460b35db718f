"""CUDA implementation of the fused GRSN op through CuPy.

Imported lazily by :func:`grsn_sj.ops.cupy_available` (so ``import grsn_sj`` never needs cupy);
importing it registers CUDA kernels on the ``grsn_sj::multi_step_forward`` /
``multi_step_backward`` custom ops, next to their numba CPU kernels. The kernels are
``grsn_sj/cuda/grsn_multi_step.cu`` (shipped as package data), compiled once per device with a
``cupy.RawModule`` and launched on torch's current CUDA stream; tensors are handed to CuPy
zero-copy through ``__cuda_array_interface__``. float32 and float64 run natively;
``grsn_multi_step`` computes float16/bfloat16 inputs in float32. The arithmetic is checked
against the torch reference on the CPU through a host harness (``tests/test_cuda_kernel.py``)
and on a GPU by that file's CUDA tests.
"""
from __future__ import annotations

import functools
from importlib.resources import files

import cupy
import numpy as np
import torch

from . import ops

_SOURCE = files(__package__).joinpath("cuda/grsn_multi_step.cu").read_text()
_BLOCK = 128


@functools.lru_cache(maxsize=None)
def _module(device_index: int) -> "cupy.RawModule":
    with cupy.cuda.Device(device_index):
        # -fmad=false: round like torch and numba (no fused multiply-add), so spikes match
        return cupy.RawModule(code=_SOURCE, options=("-std=c++14", "-fmad=false"))


def _suffix_and_scalar(dtype: torch.dtype):
    if dtype == torch.float32:
        return "f32", np.float32
    if dtype == torch.float64:
        return "f64", np.float64
    raise TypeError(f"the CUDA GRSN kernel takes float32 or float64 tensors, got {dtype}; "
                    "grsn_multi_step casts other dtypes to float32 for you")


def _launch(name: str, device: torch.device, n_threads: int, args: tuple) -> None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index):
        kernel = _module(index).get_function(name)
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream)
        grid = (max(n_threads, 1) + _BLOCK - 1) // _BLOCK
        kernel((grid,), (_BLOCK,),
               # detach(): inside a custom op the inputs still carry requires_grad, and torch
               # refuses __cuda_array_interface__ on such tensors (no copy is made).
               tuple(cupy.asarray(a.detach()) if isinstance(a, torch.Tensor) else a
                     for a in args),
               stream=stream)


def _mask(reset_mask, x):
    if reset_mask is None:
        return x.new_zeros(1), np.int32(0)
    return reset_mask.to(x.dtype).contiguous(), np.int32(1)


@ops.multi_step_forward.register_kernel("cuda")
def _forward(x, v0, c0, beta, reset_mask, v_threshold, v_reset, hard_reset, detach_reset,
             surrogate_id, alpha, spiking):
    suffix, sc = _suffix_and_scalar(x.dtype)
    x, v0, c0, beta = (t.contiguous() for t in (x, v0, c0, beta))
    T, hidden = x.shape[0], x.shape[-1] // 2
    rows = v0.numel() // hidden
    spike = x.new_empty((*x.shape[:-1], hidden))
    h_seq, c_seq = torch.empty_like(spike), torch.empty_like(spike)
    v_out, c_out = torch.empty_like(v0), torch.empty_like(c0)
    mask, has_mask = _mask(reset_mask, x)
    _launch(f"grsn_forward_{suffix}", x.device, rows * hidden, (
        x, v0, c0, beta, mask, has_mask, np.int32(T), np.int32(rows), np.int32(hidden),
        sc(v_threshold), sc(v_reset), np.int32(hard_reset), np.int32(surrogate_id), sc(alpha),
        np.int32(spiking), spike, h_seq, c_seq, v_out, c_out))
    # the CUDA kernel does not probe its input for NaN / inf (the CPU kernel does): a NaN
    # probe says "not looked"; grsn_multi_step checks a CUDA input with one sum beforehand
    probe = x.new_full((1,), float("nan"))
    return spike, h_seq, c_seq, v_out, c_out, probe


@ops.multi_step_backward.register_kernel("cuda")
def _backward(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, reset_mask, h_seq, c_seq,
              v_threshold, v_reset, hard_reset, detach_reset, surrogate_id, alpha, spiking):
    suffix, sc = _suffix_and_scalar(x.dtype)
    tensors = [t.contiguous() for t in (g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, h_seq,
                                        c_seq)]
    g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, h_seq, c_seq = tensors
    T, hidden = x.shape[0], x.shape[-1] // 2
    rows = v0.numel() // hidden
    gx = torch.empty_like(x)
    gv0, gc0, gbeta = torch.empty_like(v0), torch.empty_like(c0), torch.empty_like(v0)
    mask, has_mask = _mask(reset_mask, x)
    _launch(f"grsn_backward_{suffix}", x.device, rows * hidden, (
        g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, mask, has_mask, h_seq, c_seq,
        np.int32(T), np.int32(rows), np.int32(hidden), sc(v_threshold), sc(v_reset),
        np.int32(hard_reset), np.int32(detach_reset), np.int32(surrogate_id), sc(alpha),
        np.int32(spiking), gx, gv0, gc0, gbeta))
    return gx, gv0, gc0, gbeta.reshape(-1, hidden).sum(0)
