"""The levers of spec §5 (and two more), measured on one task, several seeds, equal budgets.

    python examples/levers.py                                   # CartPole-P, seeds 0 1 2
    python examples/levers.py --levers default learnable_tau --seeds 0
    python examples/levers.py --env CartPole-V-v0 --out runs/levers_v
    python examples/levers.py --quick                           # smoke run (tiny budget)

Each lever is one change to the GRSN policy (or to what it observes) against the default
configuration, with the task's budget and PPO hyperparameters from ``policies/zoo.py``'s table,
and the same training / evaluation / energy measurement as ``examples/reproduce.py``
(``policies.training.run_one``). The LSTM, with and without the previous action and reward,
is run as the reference. One CSV row per (lever, seed) goes to ``<out>/results.csv``; finished rows
are skipped, so the script resumes. At the end it prints a table: return per seed, mean +- std,
firing rate of the readout layer and energy per decision of the deployed actor.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Callable

from spikingjelly.activation_based import surrogate

from policies.training import (
    CSV_FIELDS,
    POMDP_TASKS,
    add_sweep_options,
    add_threads_option,
    budget_conflict,
    check_sweep_options,
    load_rows,
    run_jobs,
    run_one,
    set_threads,
)

#: lever name -> (policy, policy_kwargs factory, env_kwargs, what it changes). Factories,
#: because a surrogate function is a module and every run gets its own.
LEVERS: dict[str, tuple[str, Callable[[], dict], dict, str]] = {
    "default": ("grsn", dict, {}, "GRSNPolicy as shipped (tau 1, ATan alpha 2, input bias 1, "
                "readout spikes + observation shortcut, auxiliary obs_diff loss of weight 30, "
                "a clip per half of the policy)"),
    "v01_default": ("grsn", lambda: dict(readout="spikes", aux_loss=None), {},
                    "the 0.1 default: spikes-only readout, no auxiliary loss"),
    "spikes_aux": ("grsn", lambda: dict(readout="spikes"), {},
                   "the default with a spikes-only readout (auxiliary loss kept)"),
    "shared_critic": ("grsn", lambda: dict(critic_core="shared"), {},
                      "the critic runs the actor's core: the value loss trains the memory too"),
    "aux_coef_1": ("grsn", lambda: dict(aux_coef=1.0), {},
                   "auxiliary loss weight 1 (default 30 since 0.8, 3 before)"),
    "shortcut_64": ("grsn", lambda: dict(shortcut_dim=64), {},
                    "observation embedding of 64 (0.2.0: 32)"),
    "shortcut_64_aux_1": ("grsn", lambda: dict(shortcut_dim=64, aux_coef=1.0), {},
                          "observation embedding of 64 and auxiliary weight 1"),
    "paper_init": ("grsn", lambda: dict(input_bias=0.0), {},
                   "the paper's initialisation (PyTorch's default, input bias 0)"),
    "learnable_tau": ("grsn", lambda: dict(learnable_tau=True, tau=2.0), {},
                      "per-neuron learnable membrane decay, initialised at tau = 2"),
    "surrogate_alpha_1": ("grsn", lambda: dict(surrogate_function=surrogate.ATan(alpha=1.0)),
                          {}, "flatter surrogate gradient (ATan alpha 1; default 2)"),
    "surrogate_alpha_4": ("grsn", lambda: dict(surrogate_function=surrogate.ATan(alpha=4.0)),
                          {}, "steeper surrogate gradient (ATan alpha 4)"),
    "tau_2": ("grsn", lambda: dict(tau=2.0), {}, "the paper's membrane time constant (tau 2; "
              "default 1 since 0.11)"),
    "tau_4": ("grsn", lambda: dict(tau=4.0), {}, "slower membrane (tau 4; paper 2)"),
    "two_layers": ("grsn", lambda: dict(n_grsn_layers=2), {}, "two stacked GRSN layers"),
    "shortcut": ("grsn", lambda: dict(readout="spikes+obs", aux_loss=None), {},
                 "readout = spikes + tanh embedding of the observation, no auxiliary loss (the "
                 "default without its auxiliary loss)"),
    "membrane_readout": ("grsn", lambda: dict(readout="spikes+membrane"), {},
                         "readout = spikes + the membrane before reset (non-spiking, not in "
                         "the paper; the heads cost MACs)"),
    "prev_action_reward": ("grsn", dict, dict(prev_action_reward=True),
                           "previous action and reward appended to the observation"),
    "gru_critic_symexp": ("grsn", lambda: dict(critic_core="gru", value_head="symexp"), {},
                          "a training-only GRU critic with a symlog-scale value head (the "
                          "deployed actor unchanged)"),
    "lstm": ("lstm", dict, {}, "reference: sb3-contrib's MlpLstmPolicy"),
    "lstm_prev_action_reward": ("lstm", dict, dict(prev_action_reward=True),
                                "reference: LSTM with the previous action and reward"),
}
FIELDS = ["lever"] + CSV_FIELDS


def run_lever(lever: str, task: str, seed: int, quick: bool, out: str,
              normalize: bool | None = None) -> dict:
    """One (lever, seed) on ``task``: :func:`policies.training.run_one` with the lever's
    policy, policy_kwargs and env_kwargs (and ``normalize``); its CSV row with the lever's name
    first."""
    policy, make_kwargs, env_kwargs, _ = LEVERS[lever]
    row = run_one(task, policy, seed, quick, out, policy_kwargs=make_kwargs(),
                  env_kwargs=env_kwargs, name=lever, normalize=normalize)
    return {"lever": lever, **row}


def table(rows: list[dict]) -> str:
    """Markdown table of the rows, in LEVERS order."""
    lines = ["| lever | per seed | mean ± std | firing rate | nJ/decision (actor) |",
             "|---|---|---|---|---|"]
    for lever in LEVERS:
        sel = sorted((r for r in rows if r["lever"] == lever), key=lambda r: int(r["seed"]))
        if not sel:
            continue
        vals = [float(r["eval_return"]) for r in sel]
        sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        rates = [float(r["firing_rate"]) for r in sel if r["firing_rate"] not in ("", "nan")]
        rate = f"{statistics.mean(rates):.3f}" if rates else "–"
        energy = statistics.mean(float(r["energy_agent_nj"]) for r in sel)
        lines.append(f"| {lever} | {' / '.join(f'{v:.1f}' for v in vals)} | "
                     f"{statistics.mean(vals):.1f} ± {sd:.1f} | {rate} | {energy:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-P-v0", choices=POMDP_TASKS)
    p.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budget (smoke run)")
    p.add_argument("--out", default=None, help="output folder (default runs/levers[_quick])")
    p.add_argument("--normalize", action="store_true",
                   help="every lever under RL Zoo's normalize: true (VecNormalize of "
                        "observations and rewards), as examples/reproduce.py --normalize")
    add_sweep_options(p)
    add_threads_option(p)
    args = p.parse_args(argv)
    check_sweep_options(p, args)
    set_threads(args.threads)
    out = args.out or ("runs/levers_quick" if args.quick else "runs/levers")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")
    conflict = budget_conflict(load_rows(path), path, args.env, args.quick, None,
                               args.normalize)
    if conflict:
        p.error(conflict)

    jobs = [dict(lever=lever, task=args.env, seed=seed, quick=args.quick, out=out,
                 normalize=args.normalize or None)
            for lever in args.levers for seed in args.seeds]
    failed = run_jobs(path, jobs, FIELDS, ("lever", "task", "seed"), run_lever, args,
                      lambda row: f"{row['lever']:<24} seed {row['seed']}: return "
                                  f"{row['eval_return']:9.1f}")

    rows = [r for r in load_rows(path) if r["task"] == args.env]
    text = table(rows)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(f"{args.env}\n\n" + text)
    print("\n" + text)
    if failed is not None:
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
