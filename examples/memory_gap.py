"""How far back can the policy remember? CueRecall over gaps k, GRSN vs LSTM, several seeds.

A +-1 cue is shown in the first observation only; after k empty steps the action must match it
(+1 right, -1 wrong; a memoryless policy scores 0, a perfect one 1). Every (policy, k, seed) is
trained by RecurrentPPO with the same budget and hyperparameters (issue 7's protocol: 8 envs,
n_steps 64, batch 128, 8 epochs, lr 1e-3, gamma 0.99, ent 0.01, hidden 32, 32-unit MLP head)
and evaluated on 200 episodes with deterministic actions.

    python examples/memory_gap.py                                   # k in 3 7 15 31, 3 seeds
    python examples/memory_gap.py --gaps 15 --grsn-kwargs forget_bias=2.0 --tag fb2
    python examples/memory_gap.py --policies grsn --grsn-kwargs readout=spikes+obs --tag shortcut
    python examples/memory_gap.py --jobs 2                          # 2 runs at a time on Ray

Results are appended to a CSV (default runs/memory_gap.csv, one row per run; finished runs are
skipped, so the script resumes) and printed as a table of mean return per (policy, k).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from stable_baselines3.common.evaluation import evaluate_policy

import policies
from policies.training import (
    add_kwargs_option,
    add_sweep_options,
    add_threads_option,
    build_model,
    check_sweep_options,
    load_rows,
    positive_int,
    run_jobs,
    set_threads,
)

FIELDS = ["policy", "tag", "gap", "seed", "timesteps", "return", "seconds"]

#: issue 7's protocol, the same for every policy (RL Zoo's names, see policies/zoo.py)
PROTOCOL = dict(n_envs=8, n_steps=64, batch_size=128, n_epochs=8, learning_rate=1e-3,
                gamma=0.99, ent_coef=0.01, policy_kwargs=dict(lstm_hidden_size=32, net_arch=[32]))


def run_one(policy: str, tag: str, gap: int, seed: int, timesteps: int,
            grsn_kwargs: dict) -> dict:
    """Train and evaluate one (policy, gap, seed); its CSV row (:data:`FIELDS`).
    ``grsn_kwargs`` go to the GRSN policy only; ``tag`` labels its configuration."""
    t0 = time.time()
    env = policies.make_env("CueRecall-v0", PROTOCOL["n_envs"], seed, gap=gap)
    model = build_model(policy, env, PROTOCOL, seed,
                        policy_kwargs=grsn_kwargs if policy == "grsn" else None)
    model.learn(timesteps)
    eval_env = policies.make_env("CueRecall-v0", 8, seed + 10_000, gap=gap)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=200, deterministic=True)
    return {"policy": policy, "tag": tag, "gap": gap, "seed": seed, "timesteps": timesteps,
            "return": float(mean), "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gaps", type=int, nargs="+", default=[3, 7, 15, 31])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm"], choices=["grsn", "lstm"])
    p.add_argument("--timesteps", type=positive_int, default=30_000)
    add_kwargs_option(p, "--grsn-kwargs",
                      "GRSNPolicy policy_kwargs as key=value (e.g. forget_bias=2.0)")
    p.add_argument("--tag", default="default", help="label of this GRSN configuration")
    p.add_argument("--csv", default="runs/memory_gap.csv")
    add_sweep_options(p)
    add_threads_option(p)
    args = p.parse_args(argv)
    check_sweep_options(p, args)
    set_threads(args.threads)
    grsn_kwargs = args.grsn_kwargs
    try:  # a bad --grsn-kwargs: its message now, not a traceback in the first GRSN run
        if grsn_kwargs and "grsn" in args.policies:
            build_model("grsn", policies.make_env("CueRecall-v0", 1, 0), PROTOCOL, 0,
                        policy_kwargs=grsn_kwargs)
    except (TypeError, ValueError) as err:
        p.error(f"--grsn-kwargs: {err}")

    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    jobs = [dict(policy=policy, tag=args.tag if policy == "grsn" else "lstm", gap=gap,
                 seed=seed, timesteps=args.timesteps, grsn_kwargs=grsn_kwargs)
            for policy in args.policies for gap in args.gaps for seed in args.seeds]
    failed = run_jobs(args.csv, jobs, FIELDS, ("policy", "tag", "gap", "seed", "timesteps"),
                      run_one, args,
                      lambda row: f"{row['policy']:>5} [{row['tag']}] k={row['gap']:<3} "
                                  f"seed={row['seed']} return={row['return']:+.2f}")

    rows = [r for r in load_rows(args.csv) if int(r["timesteps"]) == args.timesteps]
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
    if failed is not None:
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
