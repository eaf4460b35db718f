"""SMAX through PettingZooVecEnv: the copies stepped as one vmapped JAX call
(``SMAXParallelEnv.step_batch``, what the in-process backend does) against one JAX call per
copy, measured side by side in one run: env steps alone (random actions), and RecurrentPPO
training with GRSNPolicy (rollouts + PPO updates, the map's settings in ``policies/zoo.py``,
built by ``policies.training.build_model``).

    OMP_NUM_THREADS=1 python examples/bench_smax.py             # 3s_vs_5z, 8 copies
    OMP_NUM_THREADS=1 python examples/bench_smax.py --map 2s3z --copies 16 --repeats 3

Needs the ``smax`` extra. Each number is the median over ``--repeats`` alternated runs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from policies import PettingZooVecEnv, make_smax, zoo
from policies.training import build_model, set_threads

#: the SMAX maps with an entry in policies/zoo.py
MAPS = sorted(task[len("smax-"):] for task in zoo.marl_hyperparams if task.startswith("smax-"))


def _venv(map_name: str, copies: int, batched: bool) -> PettingZooVecEnv:
    venv = PettingZooVecEnv(lambda: make_smax(map_name), n_copies=copies)
    if not batched:  # the same backend stepping its copies one by one
        venv._backend._step_batch = None
    return venv


def env_steps_per_second(map_name: str, copies: int, batched: bool, steps: int) -> float:
    venv = _venv(map_name, copies, batched)
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    n_actions = venv.action_space.n
    for _ in range(20):  # compiles
        venv.step(rng.integers(0, n_actions, size=venv.num_envs))
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(0, n_actions, size=venv.num_envs))
    venv.close()
    return steps * venv.num_envs / (time.perf_counter() - t0)


def train_steps_per_second(map_name: str, copies: int, batched: bool, rollouts: int) -> float:
    venv = _venv(map_name, copies, batched)
    cfg = zoo.config_for(f"smax-{map_name}")
    model = build_model("grsn", venv, cfg, seed=0, device="cpu")
    rollout = cfg["n_steps"] * venv.num_envs
    model.learn(rollout)  # compiles the numba kernels and the batched step
    t0 = time.perf_counter()
    model.learn(rollouts * rollout, reset_num_timesteps=False)
    venv.close()
    return rollouts * rollout / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", default="3s_vs_5z", choices=MAPS)
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--env-steps", type=int, default=300, help="vector steps per env measurement")
    p.add_argument("--rollouts", type=int, default=4, help="rollouts per training measurement")
    args = p.parse_args()
    set_threads(1)
    print(f"SMAX {args.map}, {args.copies} copies, torch {torch.__version__}, 1 thread; "
          f"agent-steps/s, median of {args.repeats}")
    print(f"{'measurement':<26} {'batched':>9} {'one by one':>11} {'ratio':>7}")
    for label, fn, size in (("env steps (random actions)", env_steps_per_second, args.env_steps),
                            ("RecurrentPPO + GRSNPolicy", train_steps_per_second,
                             args.rollouts)):
        runs: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.repeats):
            for batched in ((True, False) if i % 2 == 0 else (False, True)):
                runs[batched].append(fn(args.map, args.copies, batched, size))
        fast, slow = statistics.median(runs[True]), statistics.median(runs[False])
        print(f"{label:<26} {fast:>9.0f} {slow:>11.0f} {fast / slow:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
