"""RecurrentPPO training throughput on the CPU: GRSNPolicy vs sb3-contrib's MlpLstmPolicy
(same hidden size, same env, same hyperparameters), measured side by side in one run.

    python examples/bench_policy.py                  # CartPole-P, hidden 64, 3 repeats
    python examples/bench_policy.py --hidden 128 --steps 20000

Each measurement is a full ``learn()`` (rollouts + PPO updates) after a short warm-up learn
that compiles the numba kernels; the median of the repeats is reported. Target (issue 4):
GRSNPolicy >= 1.3x the LSTM's steps/s.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import policies
from policies.training import build_model

#: RecurrentPPO settings of the measurement (RL Zoo's names, see policies/zoo.py)
SETTINGS = dict(n_steps=128, batch_size=256, n_epochs=4)


def steps_per_second(policy: str, env_id: str, hidden: int, steps: int, n_envs: int,
                     seed: int) -> float:
    """``learn()`` steps per second of ``policy`` (a name of ``policies.training.POLICIES``)."""
    env = policies.make_env(env_id, n_envs, seed)
    cfg = dict(SETTINGS, policy_kwargs=dict(lstm_hidden_size=hidden))
    model = build_model(policy, env, cfg, seed)
    model.learn(n_envs * 128)  # warm-up (kernel compilation, allocator)
    start = model.num_timesteps
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    # learn() runs whole rollouts (n_envs x n_steps): count the steps that ran
    return (model.num_timesteps - start) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-P-v0")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=8192)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads; "
          f"{args.env}, hidden {args.hidden}, {args.n_envs} envs, n_steps 128, batch 256, "
          f"4 epochs, {args.steps} steps x {args.repeats}")
    results = {}
    for name, policy in (("GRSNPolicy", "grsn"), ("MlpLstmPolicy", "lstm")):
        runs = [steps_per_second(policy, args.env, args.hidden, args.steps, args.n_envs, s)
                for s in range(args.repeats)]
        results[name] = statistics.median(runs)
        print(f"{name:<14} {results[name]:8.0f} steps/s  (runs: "
              f"{', '.join(f'{r:.0f}' for r in runs)})")
    print(f"GRSNPolicy / MlpLstmPolicy steps/s ratio: "
          f"{results['GRSNPolicy'] / results['MlpLstmPolicy']:.2f}x (target >= 1.3x)")


if __name__ == "__main__":
    main()
