"""Benchmark of the GRSN neuron: fused op vs torch reference loop, and the GRSN layer vs
torch.nn.LSTM / GRU and SpikingJelly's LIFNode. Forward + backward, measured side by side in one
run; prints a table and the ratios the project targets.

    python examples/bench_neuron.py            # CPU sizes of the issue
    python examples/bench_neuron.py --quick    # fewer repetitions

Targets (issue 2): fused >= 8x the reference loop at the RL size (T=64, N=8 rows x 64 neurons),
never slower at T=128, N=256 x 512; the GRSN layer (gates + recurrence) <= 0.5x the LSTM's time.
When CUDA and cupy are present the CUDA section (examples/bench_cuda.py) runs too.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate

from grsn_sj import RecurrentGRSN, grsn_multi_step


def timeit(fn, reps: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def op_fwd_bwd(backend: str, T: int, rows: int, H: int, device="cpu"):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(T, rows, 2 * H, generator=g) * 2).to(device).requires_grad_()
    v = torch.zeros(rows, H, device=device)
    c = torch.zeros(rows, H, device=device)
    mask = (torch.rand(T, rows, generator=g) < 0.02).float().to(device)
    sg = surrogate.ATan()

    def run():
        x.grad = None
        out = grsn_multi_step(x, v, c, 0.5, surrogate_function=sg, reset_mask=mask,
                              backend=backend)
        out.spike_seq.sum().backward()
        if device != "cpu":
            torch.cuda.synchronize()

    return run


def layer_fwd_bwd(kind: str, T: int, rows: int, H: int):
    torch.manual_seed(0)
    x = torch.randn(T, rows, H).requires_grad_()
    if kind == "grsn":
        mod = RecurrentGRSN(H, H)
        fwd = lambda: mod(x)[0]  # noqa: E731
    elif kind == "lstm":
        mod = nn.LSTM(H, H)
        fwd = lambda: mod(x)[0]  # noqa: E731
    elif kind == "gru":
        mod = nn.GRU(H, H)
        fwd = lambda: mod(x)[0]  # noqa: E731
    elif kind == "lif":  # SpikingJelly's LIFNode, multi-step, on the same [T, N, H] input
        mod = nn.Sequential(nn.Linear(H, H), sj_neuron.LIFNode(step_mode="m", v_reset=None,
                                                               surrogate_function=surrogate.ATan()))

        def fwd():
            mod[1].reset()
            return mod(x)
    else:
        raise ValueError(kind)

    def run():
        x.grad = None
        mod.zero_grad(set_to_none=True)
        fwd().sum().backward()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args()
    reps_small, reps_large = (20, 3) if args.quick else (100, 7)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, python {platform.python_version()}")
    sizes = [("RL size", 64, 8, 64, reps_small), ("large", 128, 256, 512, reps_large)]

    print("\n## Fused multi-step op vs torch reference loop (forward + backward, ms)")
    print(f"{'size':<10} {'T':>4} {'rows x H':>10} {'reference':>10} {'numba':>10} {'speed-up':>9}")
    for name, T, rows, H, reps in sizes:
        t_ref = timeit(op_fwd_bwd("torch", T, rows, H), reps)
        t_fused = timeit(op_fwd_bwd("numba", T, rows, H), reps)
        print(f"{name:<10} {T:>4} {f'{rows}x{H}':>10} {t_ref:>10.2f} {t_fused:>10.2f} "
              f"{t_ref / t_fused:>8.1f}x")

    print("\n## One recurrent layer (gates + recurrence), forward + backward, ms")
    print(f"{'size':<10} {'GRSN':>9} {'LSTM':>9} {'GRU':>9} {'SJ LIF':>9} "
          f"{'GRSN/LSTM':>10} {'GRSN/GRU':>9}")
    for name, T, rows, H, reps in sizes:
        t = {k: timeit(layer_fwd_bwd(k, T, rows, H), reps) for k in ("grsn", "lstm", "gru", "lif")}
        print(f"{name:<10} {t['grsn']:>9.2f} {t['lstm']:>9.2f} {t['gru']:>9.2f} {t['lif']:>9.2f} "
              f"{t['grsn'] / t['lstm']:>10.2f} {t['grsn'] / t['gru']:>9.2f}")

    if torch.cuda.is_available():  # the CUDA section is its own command line: run it, not import it
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "bench_cuda.py")], check=True)


if __name__ == "__main__":
    main()
