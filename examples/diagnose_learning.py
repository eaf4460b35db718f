"""Where does the learning signal go? GRSN and the LSTM side by side under RecurrentPPO.

    python examples/diagnose_learning.py --env CartPole-P-v0 --timesteps 50000
    python examples/diagnose_learning.py --env Pendulum-P-v0 --policies grsn lstm gru
    python examples/diagnose_learning.py --env CartPole-P-v0 --policy-kwargs aux_loss=None

Trains each policy with the task's hyperparameters (``policies/zoo.py``) and
:class:`policies.diagnostics.LearningSignalCallback`, which logs once per PPO update: the
gradient norm the actor loss, the entropy bonus, the critic loss and any auxiliary loss send into
the memory core; the share of the whole gradient that ``max_grad_norm`` removes; how many of the
rollout's spikes one update flips; the firing rate; RecurrentPPO's clip fraction and approx-KL,
its critic's explained variance and value loss;
and every ``--probe-every`` updates the cross-validated R^2 of a linear probe from the readout
(what the heads see) to the hidden velocity (CartPole-P, Pendulum-P; else the observation
difference). Per policy: ``<out>/<env>_<policy>_s<seed>.csv`` (one row per update) and
TensorBoard logs under ``<out>/tb`` (``diag/*``); at the end a table of the first and last
quarter of the updates. ``--policy-kwargs`` apply to the spiking policies only; ``--normalize``
trains every policy under ``VecNormalize`` of observations and rewards (RL Zoo's
``normalize: true``).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from policies import zoo
from policies.diagnostics import FIELDS, LearningSignalCallback, hidden_velocity
from policies.training import (
    POLICIES,
    add_kwargs_option,
    add_threads_option,
    build_model,
    make_task_env,
    normalize_env,
    positive_int,
    set_threads,
    task_config,
)

SPIKING = ("grsn", "lif", "notap")
SHOWN = ("grad_core_actor", "grad_core_critic", "grad_core_aux", "clipped_fraction",
         "flip_rate", "firing_rate", "approx_kl", "probe_r2", "explained_variance")


def summarise(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Per metric: the mean over the first and over the last quarter of the updates (NaN-aware:
    the probe runs every few updates only)."""
    q = max(1, len(rows) // 4)
    out = {}
    for key in SHOWN:
        vals = np.array([float(r[key]) for r in rows], dtype=float)

        def mean(v):
            v = v[np.isfinite(v)]
            return float(v.mean()) if len(v) else float("nan")
        out[key] = (mean(vals[:q]), mean(vals[-q:]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-P-v0", choices=sorted(zoo.hyperparams))
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm"],
                   choices=[k for k in POLICIES if k != "mlp"])
    p.add_argument("--timesteps", type=positive_int, help="default: the task's budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-every", type=int, default=5)
    p.add_argument("--out", default="runs/diagnose")
    p.add_argument("--normalize", action="store_true",
                   help="train under RL Zoo's normalize: true (VecNormalize of observations "
                        "and rewards), as reproduce.py --normalize")
    add_kwargs_option(p, "--policy-kwargs", "policy_kwargs of the spiking policies")
    add_threads_option(p)
    args = p.parse_args(argv)
    extra = args.policy_kwargs
    set_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = task_config(args.env, False, normalize=True if args.normalize else None)
    steps = args.timesteps or cfg["n_timesteps"]
    lines = ["| policy | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for name in args.policies:
        path = os.path.join(args.out, f"{args.env}_{name}_s{args.seed}.csv")
        if os.path.exists(path):
            os.remove(path)
        env = normalize_env(make_task_env(args.env, cfg["n_envs"], args.seed), cfg)
        try:
            model = build_model(name, env, cfg, args.seed, device="cpu",
                                tensorboard_log=os.path.join(args.out, "tb"),
                                policy_kwargs=extra if name in SPIKING else None)
        except (TypeError, ValueError) as exc:
            p.exit(2, f"{p.prog}: error: {exc}\n")
        cb = LearningSignalCallback(csv_path=path, probe_every=args.probe_every,
                                    probe_target=hidden_velocity(args.env))
        model.learn(steps, callback=cb, tb_log_name=f"{args.env}_{name}_s{args.seed}")
        env.close()
        with open(path) as f:
            rows = list(csv.DictReader(f))
        s = summarise(rows)
        lines.append(f"| {name} | " + " | ".join(f"{a:.3g} → {b:.3g}" for a, b in s.values())
                     + " |")
        print(f"{name}: {len(rows)} updates, rows in {path}", flush=True)
    table = (f"{args.env}, {steps} steps, seed {args.seed} (first quarter → last quarter of "
             "the updates)\n\n" + "\n".join(lines) + "\n")
    with open(os.path.join(args.out, f"{args.env}_s{args.seed}_summary.md"), "w") as f:
        f.write(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
