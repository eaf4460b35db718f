"""Benchmark of the GRSN neuron: fused op vs torch reference loop, and the GRSN layer vs
torch.nn.LSTM / GRU and SpikingJelly's LIFNode. Forward + backward, measured side by side in one
run; prints a table and the ratios the project targets.

    python examples/bench_neuron.py            # CPU sizes of the issue
    python examples/bench_neuron.py --quick    # fewer repetitions

Targets (issue 2): fused >= 8x the reference loop at the RL size (T=64, N=8 rows x 64 neurons),
never slower at T=128, N=256 x 512; the GRSN layer (gates + recurrence) <= 0.5x the LSTM's time.
Issue 15: the non-finite input check costs < 5% at the RL size (T=128, N=8, H=64); measured
with the check on and off, interleaved.
When CUDA and cupy are present the CUDA section (examples/bench_cuda.py) runs too.
"""
from __future__ import annotations

import argparse
import contextlib
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


@contextlib.contextmanager
def finite_check_off():
    """The non-finite input check replaced by a no-op, to measure what it costs: the host-side
    check (``functional.check_finite``: one sum of the input, on the torch and CUDA paths and in
    single-step mode), the reaction to the fused CPU op's probe, and the probe itself (the numba
    kernel compiled without it)."""
    import grsn_sj._numba_kernels as nk
    import grsn_sj.functional
    import grsn_sj.ops

    forward_kernel = nk.forward_kernel
    patches = [(grsn_sj.functional, "check_finite", lambda *args, **kwargs: None),
               (grsn_sj.ops, "_after_probe", lambda *args, **kwargs: None),
               (nk, "forward_kernel", lambda *config: forward_kernel(*config, probing=False))]
    saved = [(m, name, getattr(m, name)) for m, name, _ in patches]
    for m, name, f in patches:
        setattr(m, name, f)
    try:
        yield
    finally:
        for m, name, f in saved:
            setattr(m, name, f)


def check_cost(fn, reps: int) -> tuple[float, float, float]:
    """Median ms of ``fn()`` with and without the finite check and the median of the paired
    ratios on/off - 1: runs interleaved in pairs (alternating which runs first), so a change of
    machine speed between pairs cancels in each pair's ratio."""
    on, off = [], []
    for _ in range(3):
        fn()
    for i in range(reps):
        for check in ((True, False) if i % 2 else (False, True)):  # alternate which runs first
            with contextlib.nullcontext() if check else finite_check_off():
                t0 = time.perf_counter()
                fn()
                (on if check else off).append(time.perf_counter() - t0)
    cost = statistics.median(a / b - 1 for a, b in zip(on, off))
    return statistics.median(on) * 1e3, statistics.median(off) * 1e3, cost


def finite_check_section(reps: int) -> None:
    from grsn_sj import GRSN, GRSNNode

    T, N, H = 128, 8, 64
    torch.manual_seed(0)
    x_in = torch.randn(T, N, H)
    x_gate = torch.randn(T, N, 2 * H)
    rnn = RecurrentGRSN(H, H)
    node = GRSNNode(step_mode="m")
    block = GRSN(H, H, step_mode="m")
    x_grad = x_in.clone().requires_grad_()

    def rnn_fwd_bwd():
        rnn.zero_grad(set_to_none=True)
        x_grad.grad = None
        rnn(x_grad)[0].sum().backward()

    def rnn_fwd():
        with torch.no_grad():
            rnn(x_in)

    def node_fwd():
        node.reset()
        with torch.no_grad():
            node(x_gate)

    def block_fwd():
        block.node.reset()
        with torch.no_grad():
            block(x_in)

    def rnn_one_step():  # what predict() runs per env step: T = 1
        with torch.no_grad():
            rnn(x_in[:1])

    print(f"\n## Non-finite input check (T={T}, N={N}, H={H}; median ms, check on / off; cost: "
          "median of the paired ratios)")
    print(f"{'call':<34} {'on':>8} {'off':>8} {'cost':>7}")
    for label, fn in (("RecurrentGRSN forward + backward", rnn_fwd_bwd),
                      ("RecurrentGRSN forward", rnn_fwd), ("GRSNNode forward ('m')", node_fwd),
                      ("GRSN forward ('m')", block_fwd),
                      ("RecurrentGRSN forward, T = 1", rnn_one_step)):
        on, off, cost = check_cost(fn, reps)
        print(f"{label:<34} {on:>8.3f} {off:>8.3f} {100 * cost:>6.1f}%")


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

    finite_check_section(reps_small * 2)

    if torch.cuda.is_available():  # the CUDA section is its own command line: run it, not import it
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "bench_cuda.py")], check=True)


if __name__ == "__main__":
    main()
