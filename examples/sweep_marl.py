"""The multi-agent sweep: parameter-shared policies on PettingZoo team tasks (the SMAX maps,
spread-PO), with and without a centralised critic, several seeds, equal agent-step budgets.

    python examples/sweep_marl.py --quick                        # smoke run (a minute)
    python examples/sweep_marl.py --envs smax-2s3z --timesteps 500000 --jobs 2
    python examples/sweep_marl.py --envs smax-2s3z --policies grsn lstm --critics env
    python examples/sweep_marl.py --plots-only --out runs/sweep_marl

``--critics``: ``none`` (the policy's own critic), ``env`` (a training-only critic that also
reads the env's global state, e.g. SMAX's world state: MAPPO / SMAC's setting) and
``joint_obs`` (it reads the copy's joint observation); default ``none env``.
Every finished (task, policy, critic, seed) is one row of ``<out>/results.csv``
(``policies.training.run_team``): the team return (mean and std over ``--eval-episodes``
deterministic evaluation episodes), the win rate where the env reports one (SMAX), training
agent-steps/s, the readout's firing rate, and the deployed actor's energy per decision.
Runs already in the CSV are skipped, so the script resumes; ``--jobs N`` runs N at a time as
Ray tasks of ``--threads`` CPUs each (``pip install -e '.[sweep]'``). At the end
``summary.md`` (mean +- std over seeds) and ``learning_curves.png`` (training team return and
win rate, mean over seeds with the min-max band) are rebuilt from everything in the CSV.
The PPO MLP baseline has no centralised-critic variant (it runs with ``none`` only).
SMAX needs ``pip install -e '.[smax]'`` (JaxMARL, Python >= 3.11).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

from policies.training import (
    CRITICS,
    POLICIES,
    TEAM_CSV_FIELDS,
    add_sweep_options,
    add_threads_option,
    budget_conflict,
    check_sweep_options,
    load_rows,
    positive_int,
    run_jobs,
    run_team,
    set_threads,
    smooth_curve,
    team_curve_path,
)
from policies.zoo import marl_hyperparams

_STATE_NAMES = {"joint_obs": "joint obs", "env": "env state"}


def _label(policy: str, critic: str) -> str:
    return policy if critic == "none" else f"{policy} + critic ({_STATE_NAMES[critic]})"


def _groups(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(task, policy, critic) in the CSV, in task order of appearance and POLICIES order."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    out = []
    for task in tasks:
        for pol in POLICIES:
            for critic in CRITICS:
                if any(r["task"] == task and r["policy"] == pol and r["critic"] == critic
                       for r in rows):
                    out.append((task, pol, critic))
    return out


def _mean_sd(vals: list[float], fmt: str) -> str:
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}"


def summary_table(rows: list[dict]) -> str:
    """Markdown: per (task, policy, critic), mean +- std over seeds of the final evaluation's
    win rate and team return, the per-seed values, energy per decision and training speed."""
    lines = ["| task | policy | seeds | win rate | team return | per seed (win / return) | "
             "nJ/decision | agent-steps/s |", "|---|---|---|---|---|---|---|---|"]
    for task, pol, critic in _groups(rows):
        sel = sorted((r for r in rows if r["task"] == task and r["policy"] == pol
                      and r["critic"] == critic), key=lambda r: int(r["seed"]))
        rets = [float(r["eval_return"]) for r in sel]
        wins = [float(r["win_rate"]) for r in sel if r["win_rate"] != ""]
        win = _mean_sd(wins, ".2f") if wins else "–"
        per = " / ".join((f"{float(r['win_rate']):.2f}, " if r["win_rate"] != "" else "")
                         + f"{float(r['eval_return']):.2f}" for r in sel)
        energy = statistics.mean(float(r["energy_agent_nj"]) for r in sel)
        sps = statistics.mean(float(r["steps_per_s"]) for r in sel)
        lines.append(f"| {task} | {_label(pol, critic)} | {len(sel)} | {win} | "
                     f"{_mean_sd(rets, '.2f')} | {per} | {energy:.1f} | {sps:.0f} |")
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], out: str) -> str:
    """``learning_curves.png``: per task, the training team return and (where reported) win
    rate, mean over seeds with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.2 * len(tasks)), squeeze=False)
    for (ax_r, ax_w), task in zip(axes, tasks):
        for _, pol, critic in [g for g in _groups(rows) if g[0] == task]:
            curves = []
            for r in rows:
                if r["task"] == task and r["policy"] == pol and r["critic"] == critic:
                    path = team_curve_path(out, task, pol, critic, int(r["seed"]))
                    if os.path.exists(path):
                        with open(path) as f:
                            curves.append(json.load(f))
            for ax, key in ((ax_r, "return"), (ax_w, "win")):
                pts = [c[key] for c in curves if len(c[key]) > 1]
                if not pts:
                    continue
                grid = np.linspace(0, min(p[-1][0] for p in pts), 50)
                s = np.array([smooth_curve(p, grid) for p in pts])
                ax.plot(grid, s.mean(0), label=_label(pol, critic),
                        linestyle="-" if critic == "none" else "--")
                ax.fill_between(grid, s.min(0), s.max(0), alpha=0.15)
        ax_r.set_title(f"{task}: training team return", fontsize=9)
        ax_w.set_title(f"{task}: training win rate", fontsize=9)
        for ax in (ax_r, ax_w):
            ax.set_xlabel("agent-steps", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "learning_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def describe(row: dict) -> str:
    """The line printed when a run finishes."""
    win = f"win {row['win_rate']:.2f}, " if row["win_rate"] != "" else ""
    return (f"{row['task']:<14} {_label(row['policy'], row['critic']):<22} seed {row['seed']}: "
            f"{win}team return {row['eval_return']:.2f}  {row['energy_agent_nj']:.1f} "
            f"nJ/decision ")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["smax-2s3z"], choices=sorted(marl_hyperparams))
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm", "gru", "mlp"],
                   choices=list(POLICIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--critics", nargs="+", default=["none", "env"], choices=CRITICS,
                   help="the recurrent policies' critics: none (their own), env (a centralised "
                        "critic that also reads the env's global state), joint_obs (... the "
                        "copy's joint observation); default: none env")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="agent-steps per run instead of the table's (one budget per --out)")
    p.add_argument("--eval-episodes", type=positive_int, default=32,
                   help="deterministic evaluation team episodes per run (default 32)")
    p.add_argument("--quick", action="store_true", help="tiny budgets and one seed (smoke run)")
    p.add_argument("--out", default=None, help="output folder (default runs/sweep_marl[_quick])")
    p.add_argument("--plots-only", action="store_true")
    add_sweep_options(p)
    add_threads_option(p)
    args = p.parse_args(argv)
    check_sweep_options(p, args)
    set_threads(args.threads)
    out = args.out or ("runs/sweep_marl_quick" if args.quick else "runs/sweep_marl")
    seeds = args.seeds[:1] if args.quick else args.seeds
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")

    failed = None
    if not args.plots_only:
        rows = load_rows(path)
        for task in args.envs:
            conflict = budget_conflict(rows, path, task, args.quick, args.timesteps)
            if conflict:
                p.error(conflict)
        eval_episodes = 4 if args.quick else args.eval_episodes
        jobs = [dict(task=task, policy=pol, critic=critic, seed=seed, out=out,
                     timesteps=args.timesteps, eval_episodes=eval_episodes, quick=args.quick)
                for task in args.envs for pol in args.policies
                for critic in (args.critics if pol != "mlp" else
                               [c for c in args.critics if c == "none"])
                for seed in seeds]
        failed = run_jobs(path, jobs, TEAM_CSV_FIELDS, ("task", "policy", "critic", "seed"),
                          run_team, args, describe)

    rows = load_rows(path)
    if not rows:
        print("no results yet")
    else:
        table = summary_table(rows)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(table)
        print("\n" + table)
        print("wrote", plots(rows, out))
    if failed is not None:  # the finished runs are in the CSV; a rerun runs only the failed
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
