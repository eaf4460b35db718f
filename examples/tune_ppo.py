"""Tune RecurrentPPO's settings for GRSN and the LSTM at an equal trial budget, then check
the tuned settings on other seeds (``policies.zoo_optuna.tune``; needs the ``zoo`` extra).

    python examples/tune_ppo.py --task CartPole-P-v0 --policies grsn lstm --trials 12 \\
        --timesteps 50000 --out runs/tune

Each policy gets its own Optuna study (``<out>/studies.db``, study ``<task>-<policy>``; a rerun
resumes it with ``--trials`` more) over :func:`policies.zoo_optuna.sample_recurrent_ppo_params`
(optimisation settings only; architecture and policy defaults as the task's table has them),
every trial trained on seed ``--seed`` (default 100) and scored deterministically. The best
settings of each study go to ``<out>/best_<task>_<policy>.json`` and print as the
``--hyperparams`` of ``examples/quick_levers.py``, which trains them on the reporting seeds::

    python examples/quick_levers.py --task CartPole-P-v0 --policy grsn --seeds 0 1 2 \\
        --hyperparams n_steps=256 learning_rate=0.0011 ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from policies import zoo
from policies.training import (
    RECURRENT_POLICIES,
    add_threads_option,
    positive_int,
    set_threads,
)
from policies.zoo_optuna import tune


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(zoo.hyperparams))
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm"],
                   choices=RECURRENT_POLICIES)
    p.add_argument("--trials", type=positive_int, default=12, help="trials per policy")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="steps per trial (default: the task's table budget)")
    p.add_argument("--seed", type=int, default=100,
                   help="the seed of every trial; keep it apart from the reporting seeds")
    p.add_argument("--out", default="runs/tune")
    add_threads_option(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    storage = f"sqlite:///{os.path.abspath(os.path.join(args.out, 'studies.db'))}"
    timesteps = args.timesteps or zoo.config_for(args.task)["n_timesteps"]
    for policy in args.policies:
        study = tune(args.task, policy, args.trials, timesteps, seed=args.seed, storage=storage,
                     study_name=f"{args.task}-{policy}")
        best = study.best_trial
        row = dict(task=args.task, policy=policy, timesteps=timesteps, seed=args.seed,
                   trials=len(study.trials), best_det=best.value,
                   best_sampled=best.user_attrs["sampled"],
                   hyperparams=best.user_attrs["hyperparams"])
        with open(os.path.join(args.out, f"best_{args.task}_{policy}.json"), "w") as f:
            json.dump(row, f, indent=1)
        print(json.dumps(row), flush=True)
        print("--hyperparams " + " ".join(f"{k}={v}" for k, v in row["hyperparams"].items()),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
