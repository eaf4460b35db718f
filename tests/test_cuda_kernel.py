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


# ------------------------------------------------- the CuPy launcher, run on the host harness

class _HostCupy:
    """Stand-in for the few cupy names ``grsn_sj._cupy_backend`` uses, backed by the host
    harness. It enforces what real CuPy + torch would: ``asarray`` refuses tensors that require
    grad (torch's ``__cuda_array_interface__`` raises for them) and non-contiguous tensors (a
    raw kernel only gets the data pointer), and kernel scalars must be numpy scalars of the
    kernel's parameter width (CuPy passes a Python int as int64, a float as double)."""

    def __init__(self, lib):
        import types
        from contextlib import nullcontext

        self.lib = lib
        self.compiled = []
        self.module = types.ModuleType("cupy")
        self.module.asarray = self.asarray
        self.module.RawModule = self.raw_module
        self.module.cuda = types.SimpleNamespace(Device=lambda index: nullcontext(),
                                                 ExternalStream=lambda ptr: nullcontext())

    @staticmethod
    def asarray(t):
        if t.requires_grad:
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires "
                               "grad (as torch says)")
        if not t.is_contiguous():
            raise ValueError("a non-contiguous tensor would hand the kernel a strided view")
        return np.uint64(t.data_ptr())

    def raw_module(self, code, options=()):
        import types

        self.compiled.append((code, options))
        return types.SimpleNamespace(get_function=self.function)

    def function(self, name):
        kernel = getattr(self.lib, name)
        to_c = {np.uint64: ctypes.c_void_p, np.int32: ctypes.c_int, np.float32: ctypes.c_float,
                np.float64: ctypes.c_double}

        def launch(grid, block, args, stream=None):
            bad = [type(a).__name__ for a in args if type(a) not in to_c]
            if bad:
                raise TypeError(f"kernel arguments must be numpy scalars, got {bad}")
            c_args = [to_c[type(a)](int(a) if type(a) is np.uint64 else a.item()) for a in args]
            for b in range(grid[0]):
                for t in range(block[0]):
                    self.lib.grsn_set_thread(b, t, block[0])
                    kernel(*c_args)

        return launch


@pytest.fixture
def host_backend(host_lib, monkeypatch):
    """``grsn_sj._cupy_backend`` imported against :class:`_HostCupy`, launching on the CPU.
    (Importing it registers its kernels for the 'cuda' dispatch key, so this runs only where
    CUDA is absent: there nothing dispatches to them, and the real module is tested on GPUs.)"""
    import importlib
    import sys
    import types

    if torch.cuda.is_available():
        pytest.skip("the real cupy backend is tested on this machine")
    fake = _HostCupy(host_lib)
    monkeypatch.setitem(sys.modules, "cupy", fake.module)
    monkeypatch.delitem(sys.modules, "grsn_sj._cupy_backend", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device=None: types.SimpleNamespace(cuda_stream=0))
    backend = importlib.import_module("grsn_sj._cupy_backend")
    yield backend, fake
    # forget the stand-in backend entirely: both the module entry and the package attribute that
    # the import set (``from . import _cupy_backend`` in ops would otherwise find it)
    sys.modules.pop("grsn_sj._cupy_backend", None)
    if hasattr(grsn_sj, "_cupy_backend"):
        delattr(grsn_sj, "_cupy_backend")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, v_reset, detach_reset, sid", [
    ((9, (5,), 6), None, False, 0),        # the usual case
    ((1, (7,), 5), 0.0, True, 1),          # T = 1, odd rows x neurons
    ((6, (2, 3), 4), -0.3, False, 1),      # several batch dimensions
])
def test_cupy_launcher_on_host_matches_reference(host_backend, dtype, shape, v_reset,
                                                 detach_reset, sid):
    """The CuPy backend's own forward/backward functions (argument order, dtypes of the
    scalars, contiguity, grad_beta reduction), launched on the host harness with inputs that
    require grad, as they do inside the custom op during training."""
    backend, fake = host_backend
    T, batch, H = shape
    g = torch.Generator().manual_seed(7)
    x = torch.randn(T, *batch, 2 * H, generator=g, dtype=dtype) * 2.0
    x[..., H:] += 1.0
    x_strided = x.transpose(0, -1).contiguous().transpose(0, -1)  # same values, not contiguous
    v0 = torch.rand(*batch, H, generator=g, dtype=dtype)
    c0 = torch.rand(*batch, H, generator=g, dtype=dtype)
    beta = 0.2 + 0.6 * torch.rand(H, generator=g, dtype=dtype)
    mask = (torch.rand(T, *batch, generator=g) < 0.3).to(dtype)
    weights = [torch.randn(T, *batch, H, generator=g, dtype=dtype) for _ in range(3)] + [
        torch.randn(*batch, H, generator=g, dtype=dtype) for _ in range(2)]
    sg = SURROGATES[sid]()
    alpha = float(sg.alpha)
    hard = v_reset is not None
    vr = 0.0 if v_reset is None else v_reset

    leaves = [t.clone().requires_grad_() for t in (x, v0, c0, beta)]
    ref = grsn_multi_step_reference(*leaves, 1.0, v_reset, sg, detach_reset, mask)
    sum((o * w).sum() for o, w in zip(ref, weights)).backward()

    inputs = [t.clone().requires_grad_() for t in (x_strided, v0, c0, beta)]
    out = backend._forward(*inputs, mask, 1.0, vr, hard, detach_reset, sid, alpha, True)
    assert len(fake.compiled) == 1 and fake.compiled[0][0] == CU.read_text()
    assert out[0].sum() > 0, "test inputs should make neurons fire"
    assert torch.equal(out[0], ref.spike_seq.detach())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, want in zip(out, ref):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want.detach(), **tol)

    grads = backend._backward(*weights, *inputs, mask, out[1], out[2], 1.0, vr, hard,
                              detach_reset, sid, alpha, True)
    gtol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for name, got, leaf in zip(("x", "v0", "c0", "beta"), grads, leaves):
        assert got.shape == leaf.shape
        torch.testing.assert_close(got, leaf.grad, **gtol, msg=lambda m: f"grad {name}: {m}")
