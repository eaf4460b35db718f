"""The measured reproduction: every policy on every task, several seeds, equal budgets.

    python examples/reproduce.py --quick            # smoke run: tiny budgets, 1 seed (minutes)
    python examples/reproduce.py                    # the full protocol (many CPU hours)
    python examples/reproduce.py --tasks CartPole-V-v0 CueRecall-v0 --policies grsn lstm
    python examples/reproduce.py --plots-only       # redraw plots / tables from the CSV
    python examples/reproduce.py --jobs 16          # 16 runs at a time (one core each)

Tasks: the POMDP suite (CartPole-P/-V, Pendulum-P/-V, LunarLander-P/-V, CueRecall with gap 15)
and spread-PO (mpe2 simple_spread_v3, N=3, partially observed; parameter-shared). Policies:
grsn, lif (LIF under TAP), notap (spiking without TAP), lstm, mlp. Budgets and hyperparameters:
``examples/train_pomdp.py``'s table (``train_marl.py``'s for spread-PO), the same for every
policy of a task. Every finished (task, policy, seed) is one row of ``<out>/results.csv``:
final evaluation return (deterministic, 20 episodes; 100 team episodes for spread-PO), training
steps/s, firing rate of the readout layer, and energy per decision from
:mod:`grsn_sj.energy` (whole actor, and recurrent core alone). Runs already in the CSV are
skipped, so the script resumes. Learning curves (episode returns seen during training) go to
``<out>/curves/``; the plots (``learning_curves.png``, ``energy.png``,
``return_vs_energy.png``) and ``summary.md`` (the tables used by docs/RESULTS.md) are rebuilt at
the end from everything in the CSV.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import policies  # noqa: E402
import train_pomdp  # noqa: E402

POMDP_TASKS = ["CartPole-P-v0", "CartPole-V-v0", "Pendulum-P-v0", "Pendulum-V-v0",
               "LunarLander-P-v0", "LunarLander-V-v0", "CueRecall-v0"]
MARL_TASKS = ["spread-PO"]
POLICIES = ["grsn", "lif", "notap", "lstm", "mlp"]
TASK_KWARGS = {"CueRecall-v0": dict(gap=15)}
FIELDS = ["task", "policy", "seed", "timesteps", "eval_return", "eval_std", "steps_per_s",
          "firing_rate", "energy_agent_nj", "energy_core_nj", "macs_agent", "acs_agent"]


class CurveCallback(BaseCallback):
    """Collects (timestep, episode return) pairs during training: Monitor's per-episode infos,
    or for the MARL adapter the team return of each finished copy-episode."""

    def __init__(self, marl: bool):
        super().__init__()
        self.marl = marl
        self.points: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        if self.marl:
            for team in policies.marl.team_episodes(infos):
                self.points.append((self.num_timesteps, float(team["r"])))
        else:
            for info in infos:
                if "episode" in info:
                    self.points.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def energy_of(model, env_id: str, marl: bool, seed: int, env_kwargs: dict) -> dict:
    """Energy per decision from real rollout observations of the trained model."""
    from grsn_sj import energy

    if marl:
        import train_marl

        env = train_marl.make_venv(env_id, 2, seed + 20_000)
    else:
        env = policies.make_env(env_id, 4, seed + 20_000, **env_kwargs)
    obs, starts = energy.collect_observations(model, env, n_steps=128)
    report = energy.estimate_energy(model.policy, obs, starts)
    env.close()
    core = report.core.energy_nj if report.core is not None else 0.0  # MLP: no memory core
    return dict(energy_agent_nj=round(report.agent.energy_nj, 4), energy_core_nj=round(core, 4),
                macs_agent=round(report.agent.macs, 1), acs_agent=round(report.agent.acs, 1))


def task_config(task: str, quick: bool, timesteps: int | None = None) -> dict:
    """The task's hyperparameters (train_pomdp's or train_marl's table), shrunk for ``quick``;
    ``timesteps`` replaces the budget."""
    if task in MARL_TASKS:
        import train_marl

        cfg = dict(train_marl.HYPERPARAMS)
        if quick:
            cfg.update(timesteps=3000, copies=2, n_steps=64, batch_size=128)
    else:
        cfg = train_pomdp.config_for(task)
        if quick:
            cfg.update(timesteps=2048, n_envs=4, n_steps=64, batch_size=128)
    if timesteps is not None:
        cfg["timesteps"] = timesteps
    return cfg


class Trained(NamedTuple):
    """What :func:`train_one` returns: the trained model, the task's config, the training
    episodes' ``(timestep, return)`` points, the training speed, and the env arguments used."""

    model: Any
    cfg: dict
    curve: list
    steps_per_s: float
    env_kwargs: dict


def train_one(task: str, policy: str, seed: int, quick: bool,
              policy_kwargs: dict | None = None, env_kwargs: dict | None = None,
              timesteps: int | None = None) -> Trained:
    """Train one (task, policy, seed) with the table's config; ``policy_kwargs`` /
    ``env_kwargs`` (POMDP tasks only) change it, ``timesteps`` replaces the budget."""
    marl = task in MARL_TASKS
    if marl and (policy_kwargs or env_kwargs):
        raise ValueError("policy_kwargs / env_kwargs are supported for the POMDP tasks only")
    env_kwargs = {**TASK_KWARGS.get(task, {}), **(env_kwargs or {})}
    cfg = task_config(task, quick, timesteps)
    torch.manual_seed(seed)
    if marl:
        import train_marl

        env = train_marl.make_venv(task, cfg["copies"], seed)
        model = train_marl.build_model(policy, env, cfg, seed, "cpu")
    else:
        env = train_pomdp.make_train_env(task, cfg, seed, **env_kwargs)
        model = train_pomdp.build_model(policy, env, cfg, seed, "cpu",
                                        policy_kwargs=policy_kwargs)
    curve = CurveCallback(marl)
    t0 = time.time()
    model.learn(cfg["timesteps"], callback=curve)
    sps = cfg["timesteps"] / (time.time() - t0)
    env.close()
    return Trained(model, cfg, curve.points, sps, env_kwargs)


def run_one(task: str, policy: str, seed: int, quick: bool, out: str,
            policy_kwargs: dict | None = None, env_kwargs: dict | None = None,
            name: str | None = None, timesteps: int | None = None) -> dict:
    """Train (:func:`train_one`), evaluate and measure one (task, policy, seed); returns its
    CSV row and writes its learning curve.

    ``policy_kwargs`` / ``env_kwargs`` (POMDP tasks only) change the configuration, as
    ``examples/levers.py`` does; ``name`` labels the learning curve file (default: the policy);
    ``timesteps`` replaces the table's budget.
    """
    marl = task in MARL_TASKS
    model, cfg, points, sps, env_kwargs = train_one(task, policy, seed, quick, policy_kwargs,
                                                    env_kwargs, timesteps)

    spiking = hasattr(model.policy, "cores")
    if spiking:
        model.policy.lstm_actor.reset_firing_stats()
    if marl:
        import train_marl

        eval_env = train_marl.make_venv(task, cfg["copies"], seed + 10_000)
        mean, std, _ = policies.marl.evaluate_team(model, eval_env, 10 if quick else 100)
        eval_env.close()
    else:
        from stable_baselines3.common.evaluation import evaluate_policy

        eval_env = policies.make_env(task, 4, seed + 10_000, **env_kwargs)
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=5 if quick else 20,
                                    deterministic=True)
    rate = model.policy.lstm_actor.firing_rate() if spiking else float("nan")
    row = dict(task=task, policy=policy, seed=seed, timesteps=cfg["timesteps"],
               eval_return=round(float(mean), 3), eval_std=round(float(std), 3),
               steps_per_s=round(sps, 1), firing_rate=round(rate, 4))
    row.update(energy_of(model, task, marl, seed, env_kwargs))
    os.makedirs(os.path.join(out, "curves"), exist_ok=True)
    with open(os.path.join(out, "curves", f"{task}_{name or policy}_{seed}.json"), "w") as f:
        json.dump(points, f)
    return row


def _timed_run(fn: Callable[..., dict], job: dict) -> tuple[dict, dict, float]:
    t0 = time.time()
    row = fn(**job)
    return job, row, time.time() - t0


def _single_thread() -> None:
    # numba's parallel kernels spin their worker threads; several processes that each keep
    # numba's default thread count on a shared CPU ran 12x slower in this project's runs
    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(1)


def run_all(jobs: list[dict], n_parallel: int = 1, fn: Callable[..., dict] = run_one):
    """Yield ``(job, row, seconds)`` for every ``row = fn(**job)`` (default :func:`run_one`): in
    this process, in order, when ``n_parallel`` is 1; else in ``n_parallel`` spawned processes
    (one torch thread each), as they finish. ``fn`` must be importable by name (a module-level
    function) for the spawned processes."""
    if n_parallel == 1:
        for job in jobs:
            yield _timed_run(fn, job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(n_parallel, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_thread) as pool:
        futures = [pool.submit(_timed_run, fn, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()


def append_row(path: str, row: dict, fields: list[str]) -> None:
    """Append one row to the CSV at ``path`` (header first if the file is new)."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        w.writerow(row)


def budget_conflict(rows: list[dict], path: str, task: str, quick: bool,
                    timesteps: int | None) -> str | None:
    """The error message when the CSV ``path`` (read into ``rows``) holds ``task`` runs of
    another budget than this run's, else ``None``: one CSV keeps one budget per task."""
    budget = task_config(task, quick, timesteps)["timesteps"]
    other = {int(r["timesteps"]) for r in rows if r["task"] == task} - {budget}
    if other:
        return (f"{path} has {task} runs of {sorted(other)} steps, this run asks for {budget}: "
                "give a different budget its own --out folder")
    return None


class Diagnostic(NamedTuple):
    """A per-(task, policy, seed) study on top of :func:`train_one` (``eval_modes.py``,
    ``probe_velocity.py``), run by :func:`run_diagnostic`: ``fn(task, policy, seed, quick,
    timesteps)`` returns one CSV row with the ``fields``; ``summary(rows)`` is the Markdown table;
    ``describe(row)`` the line printed per finished run."""

    name: str
    fn: Callable[..., dict]
    fields: list[str]
    summary: Callable[[list[dict]], str]
    describe: Callable[[dict], str]
    envs: list[str]
    default_env: str
    policies: list[str]


def run_diagnostic(diag: Diagnostic, argv, description: str) -> int:
    """The command line of a :class:`Diagnostic`: one task (``--env``), ``--policies``,
    ``--seeds``, ``--quick``, ``--timesteps``, ``--jobs`` and a resumable ``--out`` folder
    (``results.csv``, ``summary.md``), as :func:`main` does for the reproduction."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=diag.default_env, choices=diag.envs)
    p.add_argument("--policies", nargs="+", default=list(diag.policies), choices=diag.policies)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budgets and one seed (smoke run)")
    p.add_argument("--timesteps", type=int, default=None,
                   help="budget of every run instead of the table's (one budget per --out)")
    p.add_argument("--out", default=None,
                   help=f"output folder (default runs/{diag.name}[_quick])")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (see reproduce.py)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.timesteps is not None and args.timesteps < 1:
        p.error("--timesteps must be >= 1")
    out = args.out or f"runs/{diag.name}" + ("_quick" if args.quick else "")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")
    rows = load_rows(path)
    conflict = budget_conflict(rows, path, args.env, args.quick, args.timesteps)
    if conflict:
        p.error(conflict)
    done = {(r["task"], r["policy"], int(r["seed"])) for r in rows}
    seeds = args.seeds[:1] if args.quick else args.seeds
    jobs = [dict(task=args.env, policy=pol, seed=seed, quick=args.quick, timesteps=args.timesteps)
            for pol in args.policies for seed in seeds if (args.env, pol, seed) not in done]
    t_start = time.time()
    for _, row, secs in run_all(jobs, args.jobs, fn=diag.fn):
        append_row(path, row, diag.fields)
        print(f"{diag.describe(row)} ({secs:.0f} s)", flush=True)
    print(f"wall time {time.time() - t_start:.0f} s")
    table = diag.summary(load_rows(path))
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(table)
    print("\n" + table)
    return 0


# ------------------------------------------------------------------------------ reporting

def load_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def summary_table(rows: list[dict]) -> str:
    """Markdown: mean +- std of the final return over seeds, and energy per decision."""
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
                cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f} (n={len(vals)})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
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
            smoothed = []
            for c in curves:
                k = max(1, len(c) // 20)
                # moving average over the samples that exist (no zero padding at the edges)
                window = np.ones(k)
                ret = (np.convolve(c[:, 1], window, mode="same")
                       / np.convolve(np.ones(len(c)), window, mode="same"))
                smoothed.append(np.interp(grid, c[:, 0], ret))
            s = np.array(smoothed)
            ax.plot(grid, s.mean(0), label=pol)
            ax.fill_between(grid, s.min(0), s.max(0), alpha=0.2)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
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
        ax.scatter(xs, ys, label=pol, s=14)
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
    p.add_argument("--policies", nargs="+", default=POLICIES, choices=POLICIES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budgets and one seed (smoke run)")
    p.add_argument("--out", default=None, help="output folder (default runs/reproduce[_quick])")
    p.add_argument("--plots-only", action="store_true")
    p.add_argument("--timesteps", type=int, default=None,
                   help="budget of every run instead of the table's (one budget per --out)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel, one process each with one torch thread (default 1)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.timesteps is not None and args.timesteps < 1:
        p.error("--timesteps must be >= 1")
    out = args.out or ("runs/reproduce_quick" if args.quick else "runs/reproduce")
    seeds = args.seeds[:1] if args.quick else args.seeds
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")

    if not args.plots_only:
        rows = load_rows(path)
        for task in args.tasks:
            conflict = budget_conflict(rows, path, task, args.quick, args.timesteps)
            if conflict:
                p.error(conflict)
        done = {(r["task"], r["policy"], int(r["seed"])) for r in rows}
        pending = [dict(task=task, policy=policy, seed=seed, quick=args.quick, out=out,
                        timesteps=args.timesteps)
                   for task in args.tasks for policy in args.policies for seed in seeds
                   if (task, policy, seed) not in done]
        t_start = time.time()
        for _, row, secs in run_all(pending, args.jobs):
            append_row(path, row, FIELDS)
            print(f"{row['task']:<17} {row['policy']:<6} seed {row['seed']}: return "
                  f"{row['eval_return']:9.1f}  {row['energy_agent_nj']:8.2f} nJ/decision  "
                  f"({secs:.0f} s)", flush=True)
        print(f"wall time {time.time() - t_start:.0f} s")

    rows = load_rows(path)
    if not rows:
        print("no results yet")
        return 0
    table = summary_table(rows)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(table)
    print("\n" + table)
    for made in plots(rows, out):
        print("wrote", made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
