"""The CUDA kernel (grsn_sj/cuda/grsn_multi_step.cu), verified without a GPU.

1. nvcc compiles it to PTX (skipped without nvcc).
2. g++ compiles the same file through a host harness (tests/cuda_harness) that defines the CUDA
   keywords and thread indices; every "thread" of a launch is run on the CPU and the forward
   outputs and backward gradients are compared with the torch autograd reference (skipped
   without g++).
3. With CUDA and cupy present, the real cupy backend against the reference.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import surrogate

import grsn_sj
from grsn_sj import grsn_multi_step, grsn_multi_step_reference

CU = Path(grsn_sj.__file__).parent / "cuda" / "grsn_multi_step.cu"
HARNESS = Path(__file__).parent / "cuda_harness"
BLOCK = 32


def test_cuda_source_ships_with_the_package():
    from importlib.resources import files

    source = files("grsn_sj").joinpath("cuda/grsn_multi_step.cu")
    assert source.is_file() and "GRSN_KERNELS(float, f32)" in source.read_text()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_nvcc_compiles_to_ptx(tmp_path):
    out = tmp_path / "grsn.ptx"
    subprocess.run(["nvcc", "--ptx", "-arch=sm_80", str(CU), "-o", str(out)], check=True,
                   capture_output=True)
    ptx = out.read_text()
    for name in ("grsn_forward_f32", "grsn_forward_f64", "grsn_backward_f32",
                 "grsn_backward_f64"):
        assert f".entry {name}" in ptx


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    out = tmp_path_factory.mktemp("harness") / "libgrsn_host.so"
    subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{HARNESS}",
                    f"-I{CU.parent}", str(HARNESS / "harness.cpp"), "-o", str(out)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(out))


def _launch(lib, name, n_threads, args):
    """Run every thread of a 1-D launch of kernel ``name`` on the CPU."""
    fn = getattr(lib, name)
    c_args = []
    for a in args:
        if isinstance(a, np.ndarray):
            c_args.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, (bool, int)):
            c_args.append(ctypes.c_int(int(a)))
        elif isinstance(a, np.float32):
            c_args.append(ctypes.c_float(float(a)))
        else:
            c_args.append(ctypes.c_double(float(a)))
    grid = (n_threads + BLOCK - 1) // BLOCK
    for b in range(grid):
        for t in range(BLOCK):
            lib.grsn_set_thread(b, t, BLOCK)
            fn(*c_args)


SURROGATES = {0: lambda: surrogate.ATan(), 1: lambda: surrogate.Sigmoid(alpha=3.0)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("v_reset", [None, 0.0, -0.3])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("sid", [0, 1])
def test_host_harness_matches_reference(host_lib, dtype, v_reset, detach_reset, sid):
    T, M, H = 9, 5, 6
    g = torch.Generator().manual_seed(3)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    x = torch.randn(T, M, 2 * H, generator=g, dtype=tdtype) * 2.0
    x[..., H:] += 1.0
    v0 = torch.rand(M, H, generator=g, dtype=tdtype)
    c0 = torch.rand(M, H, generator=g, dtype=tdtype)
    beta = 0.2 + 0.6 * torch.rand(H, generator=g, dtype=tdtype)
    mask = (torch.rand(T, M, generator=g) < 0.25).to(tdtype)
    mask[4, 1] = 1.0  # a reset in the middle of a row
    weights = [torch.randn(T, M, H, generator=g, dtype=tdtype) for _ in range(3)] + [
        torch.randn(M, H, generator=g, dtype=tdtype) for _ in range(2)]

    leaves = [t.clone().requires_grad_() for t in (x, v0, c0, beta)]
    ref = grsn_multi_step_reference(*leaves, 1.0, v_reset, SURROGATES[sid](), detach_reset,
                                    mask)
    sum((o * w).sum() for o, w in zip(ref, weights)).backward()

    thr, vr, alpha = dtype(1.0), dtype(0.0 if v_reset is None else v_reset), dtype(
        2.0 if sid == 0 else 3.0)
    arr = {k: t.detach().numpy().astype(dtype).copy() for k, t in
           dict(x=x, v0=v0, c0=c0, beta=beta, mask=mask).items()}
    spike, h_seq, c_seq = (np.empty((T, M, H), dtype) for _ in range(3))
    v_out, c_out = np.empty((M, H), dtype), np.empty((M, H), dtype)
    suffix = "f32" if dtype == np.float32 else "f64"
    _launch(host_lib, f"grsn_forward_{suffix}", M * H, [
        arr["x"], arr["v0"], arr["c0"], arr["beta"], arr["mask"], 1, T, M, H, thr, vr,
        v_reset is not None, sid, alpha, 1, spike, h_seq, c_seq, v_out, c_out])

    assert spike.sum() > 0
    np.testing.assert_array_equal(spike, ref.spike_seq.detach().numpy())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, want in zip((h_seq, c_seq, v_out, c_out), (ref.h_seq, ref.c_seq, ref.v, ref.c)):
        np.testing.assert_allclose(got, want.detach().numpy(), **tol)

    grads = [w.numpy().astype(dtype).copy() for w in weights]
    gx = np.empty((T, M, 2 * H), dtype)
    gv0, gc0, gbeta = (np.empty((M, H), dtype) for _ in range(3))
    _launch(host_lib, f"grsn_backward_{suffix}", M * H, [
        *grads, arr["x"], arr["v0"], arr["c0"], arr["beta"], arr["mask"], 1, h_seq, c_seq, T,
        M, H, thr, vr, v_reset is not None, detach_reset, sid, alpha, 1, gx, gv0, gc0, gbeta])
    gtol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for got, leaf in zip((gx, gv0, gc0, gbeta.sum(0)), leaves):
        np.testing.assert_allclose(got, leaf.grad.numpy(), **gtol)


# ------------------------------------------------------------------ real CUDA (needs a GPU)

def _cupy_ready():
    if not torch.cuda.is_available():
        return False
    from grsn_sj.ops import cupy_available

    return cupy_available()[0]


cuda = pytest.mark.skipif(not _cupy_ready(), reason="needs CUDA and cupy")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("T, M, H", [(1, 3, 5), (17, 7, 33)])
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_cupy_backend_matches_reference(T, M, H, v_reset):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(T, M, 2 * H, generator=g) * 2 + 0.5).cuda()
    x = x.transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous input
    v = torch.rand(M, H, generator=g).cuda()
    c = torch.rand(M, H, generator=g).cuda()
    beta = torch.full((H,), 0.5, device="cuda")
    mask = (torch.rand(T, M, generator=g) < 0.2).float().cuda()
    outs, grads = [], []
    for backend in ("cupy", "torch"):
        leaves = [t.clone().requires_grad_() for t in (x, v, c, beta)]
        out = grsn_multi_step(*leaves, v_reset=v_reset, reset_mask=mask, backend=backend)
        (out.spike_seq.sum() + out.h_seq.pow(2).sum() + out.v.sum()).backward()
        outs.append(out)
        grads.append([t.grad for t in leaves])
    assert torch.equal(outs[0].spike_seq, outs[1].spike_seq)
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@cuda
def test_cupy_backend_half_input():
    x = (torch.randn(8, 4, 16) * 2 + 0.5).cuda().half()
    v = torch.zeros(4, 8, device="cuda", dtype=torch.half)
    out = grsn_multi_step(x, v, v, 0.5, backend="cupy")
    ref = grsn_multi_step_reference(x.float(), v.float(), v.float(), 0.5)
    assert out.spike_seq.dtype == torch.half
    torch.testing.assert_close(out.h_seq.float(), ref.h_seq, rtol=1e-2, atol=1e-2)
