"""How far back can the policy remember? CueRecall over gaps k, GRSN vs LSTM, several seeds.

A +-1 cue is shown in the first observation only; after k empty steps the action must match it
(+1 right, -1 wrong; a memoryless policy scores 0, a perfect one 1). Every (policy, k, seed) is
trained by RecurrentPPO with the same budget and hyperparameters (issue 7's protocol: 8 envs,
n_steps 64, batch 128, 8 epochs, lr 1e-3, gamma 0.99, ent 0.01, hidden 32, 32-unit MLP head)
and evaluated on 200 episodes with deterministic actions.

    python examples/memory_gap.py                                   # k in 3 7 15 31, 3 seeds
    python examples/memory_gap.py --gaps 15 --grsn-kwargs forget_bias=2.0 --tag fb2
    python examples/memory_gap.py --policies grsn --grsn-kwargs readout=spikes+obs --tag shortcut

Results are appended to a CSV (default runs/memory_gap.csv, one row per run; finished runs are
skipped, so the script resumes) and printed as a table of mean return per (policy, k).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.evaluation import evaluate_policy

import policies
from train_pomdp import parse_kwargs

FIELDS = ["policy", "tag", "gap", "seed", "timesteps", "return", "seconds"]


def run_one(policy: str, gap: int, seed: int, timesteps: int, grsn_kwargs: dict) -> float:
    env = policies.make_env("CueRecall-v0", 8, seed, gap=gap)
    common = dict(n_steps=64, batch_size=128, n_epochs=8, learning_rate=1e-3, gamma=0.99,
                  ent_coef=0.01, seed=seed, verbose=0)
    if policy == "lstm":
        model = RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=dict(
            lstm_hidden_size=32, net_arch=[32]), **common)
    else:
        model = RecurrentPPO(policies.GRSNPolicy, env, policy_kwargs=dict(
            grsn_hidden_size=32, net_arch=[32], **grsn_kwargs), **common)
    model.learn(timesteps)
    eval_env = policies.make_env("CueRecall-v0", 8, seed + 10_000, gap=gap)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=200, deterministic=True)
    return float(mean)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gaps", type=int, nargs="+", default=[3, 7, 15, 31])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm"], choices=["grsn", "lstm"])
    p.add_argument("--timesteps", type=int, default=30_000)
    p.add_argument("--grsn-kwargs", nargs="*", default=[],
                   help="GRSNPolicy policy_kwargs as key=value (e.g. forget_bias=2.0)")
    p.add_argument("--tag", default="default", help="label of this GRSN configuration")
    p.add_argument("--csv", default="runs/memory_gap.csv")
    args = p.parse_args()
    grsn_kwargs = parse_kwargs(args.grsn_kwargs)
    torch.set_num_threads(1)

    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    done = set()
    if os.path.exists(args.csv):
        with open(args.csv) as f:
            for row in csv.DictReader(f):
                done.add((row["policy"], row["tag"], int(row["gap"]), int(row["seed"]),
                          int(row["timesteps"])))
    new_file = not os.path.exists(args.csv)
    with open(args.csv, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new_file:
            writer.writeheader()
        for policy in args.policies:
            tag = args.tag if policy == "grsn" else "lstm"
            for gap in args.gaps:
                for seed in args.seeds:
                    key = (policy, tag, gap, seed, args.timesteps)
                    if key in done:
                        continue
                    t0 = time.time()
                    ret = run_one(policy, gap, seed, args.timesteps, grsn_kwargs)
                    writer.writerow(dict(policy=policy, tag=tag, gap=gap, seed=seed,
                                         timesteps=args.timesteps, **{"return": ret},
                                         seconds=round(time.time() - t0, 1)))
                    f.flush()
                    print(f"{policy:>5} [{tag}] k={gap:<3} seed={seed} return={ret:+.2f} "
                          f"({time.time() - t0:.0f} s)", flush=True)

    with open(args.csv) as f:
        rows = [r for r in csv.DictReader(f) if int(r["timesteps"]) == args.timesteps]
    table: dict = {}
    for r in rows:
        table.setdefault((r["policy"], r["tag"]), {}).setdefault(int(r["gap"]), []).append(
            float(r["return"]))
    gaps = sorted({g for per in table.values() for g in per})
    print(f"\nmean return over seeds ({args.timesteps} steps; n = seeds)")
    print(f"{'policy [config]':<28}" + "".join(f"{f'k={g}':>14}" for g in gaps))
    for (policy, tag), per in sorted(table.items()):
        cells = []
        for g in gaps:
            vals = per.get(g, [])
            cells.append(f"{statistics.mean(vals):+.2f} (n={len(vals)})" if vals else "-")
        print(f"{f'{policy} [{tag}]':<28}" + "".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
