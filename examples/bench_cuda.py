"""CUDA section of the neuron benchmark: the cupy fused op vs the torch reference loop at T=128
(forward + backward, median ms), measured side by side. Run on its own or from
examples/bench_neuron.py when CUDA is present. Target (issue 3): >= 10x the reference loop.

    python examples/bench_cuda.py
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from grsn_sj import grsn_multi_step


def _time_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cuda_section(reps: int = 20) -> None:
    from grsn_sj.ops import cupy_available

    ok, why = cupy_available()
    if not torch.cuda.is_available() or not ok:
        print(f"CUDA section skipped: {'no CUDA device' if ok else why}")
        return
    print(f"\n## CUDA ({torch.cuda.get_device_name()}): fused cupy op vs torch reference loop "
          "(forward + backward, ms)")
    print(f"{'T':>4} {'rows x H':>10} {'reference':>10} {'cupy':>10} {'speed-up':>9}")
    for T, rows, H in ((128, 8, 64), (128, 256, 512)):
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(T, rows, 2 * H, generator=g) * 2).cuda().requires_grad_()
        v = torch.zeros(rows, H, device="cuda")
        mask = (torch.rand(T, rows, generator=g) < 0.02).float().cuda()

        def run(backend):
            x.grad = None
            grsn_multi_step(x, v, v, 0.5, reset_mask=mask, backend=backend).spike_seq.sum() \
                .backward()

        t_ref = _time_ms(lambda: run("torch"), reps)
        t_cupy = _time_ms(lambda: run("cupy"), reps)
        print(f"{T:>4} {f'{rows}x{H}':>10} {t_ref:>10.2f} {t_cupy:>10.2f} "
              f"{t_ref / t_cupy:>8.1f}x")


if __name__ == "__main__":
    cuda_section()
    sys.exit(0)
