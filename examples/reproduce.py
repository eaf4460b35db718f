"""The measured reproduction: every policy on every task, several seeds, equal budgets.

    python examples/reproduce.py --quick            # smoke run: tiny budgets, 1 seed (minutes)
    python examples/reproduce.py                    # the full protocol (many CPU hours)
    python examples/reproduce.py --tasks CartPole-V-v0 CueRecall-v0 --policies grsn lstm
    python examples/reproduce.py --plots-only       # redraw plots / tables from the CSV
    python examples/reproduce.py --normalize --tasks CartPole-P-v0 --out runs/reproduce_norm
    python examples/reproduce.py --jobs 16          # 16 runs at a time on local Ray, 1 core each
    python examples/reproduce.py --address auto     # on a Ray cluster (pip install -e '.[sweep]')

Tasks: the POMDP suite (CartPole-P/-V, Pendulum-P/-V, LunarLander-P/-V, CueRecall with gap 15)
and spread-PO (mpe2 simple_spread_v3, N=3, partially observed; parameter-shared). Policies:
grsn, lif (LIF under TAP), notap (spiking without TAP), lstm, gru, mlp. Budgets and
hyperparameters: ``policies/zoo.py``'s table, the same for every policy of a task. The runner
is ``policies.training`` (``run_one`` per run, ``run_matrix`` for the CSV). Every finished
(task, policy, seed) is one row of ``<out>/results.csv``: final evaluation return (20 episodes,
100 team episodes for spread-PO; deterministic, and again with sampled actions), training
steps/s, firing rate of the readout layer, and energy per decision from ``policies.energy``
(whole actor, and recurrent core alone). ``--normalize`` trains every policy of the gymnasium
tasks under RL Zoo's ``normalize: true`` (``VecNormalize`` of observations and rewards) and
evaluates on the task's raw returns; the CSV's ``normalize`` column and the summary say so.
Runs already in the CSV are skipped, so the script resumes. Learning curves (episode returns
seen during training) go to ``<out>/curves/``; the plots (``learning_curves.png``, ``energy.png``,
``return_vs_energy.png``) and ``summary.md`` (the tables used by docs/RESULTS.md) are rebuilt at
the end from everything in the CSV. Runs run one after the other in this process, or with
``--jobs`` / ``--address`` as Ray tasks (``policies.training.run_all``); a run that fails is
reported with its arguments at the end (exit status 1) and the others' rows are kept.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

from policies.training import (
    CSV_FIELDS,
    MARL_TASKS,
    POLICIES,
    POMDP_TASKS,
    add_sweep_options,
    add_threads_option,
    budget_conflict,
    check_sweep_options,
    load_rows,
    positive_int,
    run_jobs,
    run_one,
    set_threads,
    smooth_curve,
)

# ------------------------------------------------------------------------------ reporting

def summary_table(rows: list[dict]) -> str:
    """Markdown: mean +- std of the final deterministic return over seeds and the mean sampled
    return, and energy per decision."""
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (POMDP_TASKS + MARL_TASKS).index(t)
                   if t in POMDP_TASKS + MARL_TASKS else 99)
    pols = [p for p in POLICIES if any(r["policy"] == p for r in rows)]
    lines = ["| task | " + " | ".join(pols) + " |", "|---|" + "---|" * len(pols)]
    for task in tasks:
        cells = []
        for pol in pols:
            vals = [float(r["eval_return"]) for r in rows if r["task"] == task
                    and r["policy"] == pol]
            if not vals:
                cells.append("–")
            else:
                sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
                cell = f"{statistics.mean(vals):.1f} ± {sd:.1f} (n={len(vals)})"
                sampled = [float(r["eval_return_sampled"]) for r in rows if r["task"] == task
                           and r["policy"] == pol and r.get("eval_return_sampled")]
                if len(sampled) == len(vals):  # CSVs of earlier versions have no sampled column
                    cell += f"; sampled {statistics.mean(sampled):.1f}"
                cells.append(cell)
        normalized = any(r.get("normalize") == "True" for r in rows if r["task"] == task)
        label = f"{task} (VecNormalize)" if normalized else task
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Energy per decision (nJ, whole actor / recurrent core), mean over runs:", "",
              "| policy | agent | core | firing rate | steps/s |", "|---|---|---|---|---|"]
    for pol in pols:
        sel = [r for r in rows if r["policy"] == pol]
        agent = statistics.mean(float(r["energy_agent_nj"]) for r in sel)
        core = statistics.mean(float(r["energy_core_nj"]) for r in sel)
        rates = [float(r["firing_rate"]) for r in sel if r["firing_rate"] not in ("", "nan")]
        rate = f"{statistics.mean(rates):.3f}" if rates else "–"
        sps = statistics.mean(float(r["steps_per_s"]) for r in sel)
        lines.append(f"| {pol} | {agent:.2f} | {core:.2f} | {rate} | {sps:.0f} |")
    return "\n".join(lines) + "\n"


def _save(fig, out: str, name: str, made: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    made.append(path)
    plt.close(fig)


def plots(rows: list[dict], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    tasks = sorted({r["task"] for r in rows})
    pols = [p for p in POLICIES if any(r["policy"] == p for r in rows)]
    ncol = min(4, len(tasks))
    nrow = (len(tasks) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    colors = {pol: f"C{i}" for i, pol in enumerate(pols)}  # one colour per policy on every panel
    for ax, task in zip(axes.flat, tasks):
        for pol in pols:
            curves = []
            for r in rows:
                if r["task"] == task and r["policy"] == pol:
                    path = os.path.join(out, "curves", f"{task}_{pol}_{r['seed']}.json")
                    if os.path.exists(path):
                        with open(path) as f:
                            pts = json.load(f)
                        if pts:
                            curves.append(np.array(pts, dtype=float))
            if not curves:
                continue
            horizon = min(c[-1, 0] for c in curves)
            grid = np.linspace(0, horizon, 50)
            s = np.array([smooth_curve(c, grid) for c in curves])
            ax.plot(grid, s.mean(0), label=pol, color=colors[pol])
            ax.fill_between(grid, s.min(0), s.max(0), alpha=0.2, color=colors[pol])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = {}  # one legend for every policy, from whichever panels drew it
    for ax in axes.flat:
        for line in ax.get_lines():
            handles.setdefault(line.get_label(), line)
    axes.flat[0].legend(list(handles.values()), list(handles), fontsize=7)
    _save(fig, out, "learning_curves.png", made)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    agent = [statistics.mean(float(r["energy_agent_nj"]) for r in rows if r["policy"] == p)
             for p in pols]
    core = [statistics.mean(float(r["energy_core_nj"]) for r in rows if r["policy"] == p)
            for p in pols]
    x = np.arange(len(pols))
    ax.bar(x - 0.2, agent, 0.4, label="whole actor")
    ax.bar(x + 0.2, core, 0.4, label="recurrent core")
    ax.set_xticks(x, pols)
    ax.set_ylabel("nJ per decision")
    ax.legend(fontsize=8)
    _save(fig, out, "energy.png", made)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for pol in pols:
        sel = [r for r in rows if r["policy"] == pol]
        # normalise returns per task to [0, 1] across policies so tasks can share an axis
        xs, ys = [], []
        for r in sel:
            task_vals = [float(q["eval_return"]) for q in rows if q["task"] == r["task"]]
            lo, hi = min(task_vals), max(task_vals)
            ys.append((float(r["eval_return"]) - lo) / (hi - lo) if hi > lo else 1.0)
            xs.append(float(r["energy_agent_nj"]))
        ax.scatter(xs, ys, label=pol, s=14, color=colors[pol])
    ax.set_xlabel("energy per decision, whole actor (nJ)")
    ax.set_ylabel("return, normalised per task")
    ax.legend(fontsize=8)
    _save(fig, out, "return_vs_energy.png", made)
    return made


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=POMDP_TASKS + MARL_TASKS,
                   choices=POMDP_TASKS + MARL_TASKS)
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budgets and one seed (smoke run)")
    p.add_argument("--out", default=None, help="output folder (default runs/reproduce[_quick])")
    p.add_argument("--plots-only", action="store_true")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="budget of every run instead of the table's (one budget per --out)")
    p.add_argument("--normalize", action="store_true",
                   help="train every policy on VecNormalize'd observations and rewards (RL "
                        "Zoo's normalize: true, rewards discounted with the task's gamma); "
                        "evaluation and energy use the training statistics, frozen, and raw "
                        "returns (the gymnasium tasks; one setting per --out)")
    add_sweep_options(p)
    add_threads_option(p)
    args = p.parse_args(argv)
    check_sweep_options(p, args)
    set_threads(args.threads)
    out = args.out or ("runs/reproduce_quick" if args.quick else "runs/reproduce")
    seeds = args.seeds[:1] if args.quick else args.seeds
    marl = [t for t in args.tasks if t in MARL_TASKS]
    if args.normalize and marl:
        p.error(f"--normalize wraps the gymnasium tasks in VecNormalize; {marl} are PettingZoo "
                f"tasks: leave them out of --tasks (or run them without --normalize)")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")

    failed = None
    if not args.plots_only:
        rows = load_rows(path)
        for task in args.tasks:
            conflict = budget_conflict(rows, path, task, args.quick, args.timesteps,
                                       args.normalize)
            if conflict:
                p.error(conflict)
        jobs = [dict(task=task, policy=policy, seed=seed, quick=args.quick, out=out,
                     timesteps=args.timesteps, normalize=args.normalize or None)
                for task in args.tasks for policy in args.policies for seed in seeds]
        failed = run_jobs(path, jobs, CSV_FIELDS, ("task", "policy", "seed"), run_one, args,
                          lambda row: f"{row['task']:<17} {row['policy']:<6} seed {row['seed']}: "
                                      f"return {row['eval_return']:9.1f}  "
                                      f"{row['energy_agent_nj']:8.2f} nJ/decision ")

    rows = load_rows(path)
    if not rows:
        print("no results yet")
    else:
        table = summary_table(rows)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(table)
        print("\n" + table)
        for made in plots(rows, out):
            print("wrote", made)
    if failed is not None:  # the finished runs are in the CSV; a rerun runs only the failed
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
