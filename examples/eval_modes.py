"""Deterministic against stochastic evaluation of the same trained policies.

    python examples/eval_modes.py --env LunarLander-P-v0 --policies grsn lif notap lstm mlp \\
        --seeds 0 1 2 --timesteps 200000 --jobs 2
    python examples/eval_modes.py --quick --env CartPole-P-v0 --policies grsn     # smoke run

``examples/reproduce.py`` scores every policy with deterministic actions (SB3's
``evaluate_policy(..., deterministic=True)``: the mode of the action distribution). On
LunarLander-P the spiking policies under TAP score about -1400 that way, while their training
episodes, which sample their actions, end near -150. This script asks whether the evaluation mode
is the cause. It trains each (task, policy, seed) exactly as ``reproduce.py`` does
(``policies.training.train_one``), then plays the same evaluation episodes (same env seeds)
twice: once with the distribution's mode and once with sampled actions. For each mode it records:

- the mean and std of the episode return;
- the mean episode length and the fraction of episodes cut by the time limit;
- how often each discrete action was taken (for a continuous action space: the mean action).

One CSV row per (task, policy, seed) goes to ``--out``/results.csv (resumable: finished runs are
skipped); a per-policy summary (means over seeds) goes to ``--out``/summary.md and stdout.
"""
from __future__ import annotations

import statistics
import sys

import numpy as np

import policies
from policies.rollout import rollout as play
from policies.training import (
    POLICIES,
    POMDP_TASKS,
    Diagnostic,
    frozen_normalization,
    run_diagnostic,
    train_one,
)

MODES = ("det", "sto")
FIELDS = (["task", "policy", "seed", "timesteps", "train_last50"]
          + [f"{m}_{k}" for m in MODES for k in ("return", "std", "len", "timeouts", "actions")])


def rollout(model, env, n_episodes: int, deterministic: bool) -> dict:
    """Play ``n_episodes`` episodes of ``model`` on the VecEnv ``env`` (reset here), spread over
    its copies as SB3's ``evaluate_policy`` spreads them, carrying the recurrent state
    (:func:`policies.rollout.rollout`).

    Returns the episodes' ``returns`` and ``lengths`` (arrays), the fraction cut by the time limit
    (``timeouts``), and ``actions``: for a Discrete space the fraction of decisions that took each
    action, else the mean action per dimension. Only the decisions of a copy's counted episodes
    enter ``actions``.
    """
    if not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    n_envs = env.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    cur_ret, cur_len = np.zeros(n_envs), np.zeros(n_envs, dtype=int)
    returns, lengths, cut, taken = [], [], [], []
    for step in play(model, env, deterministic=deterministic):
        active = counts < targets
        taken.append(step.action[active])
        cur_ret += step.reward
        cur_len += 1
        for i in np.flatnonzero(step.done):
            if active[i]:
                returns.append(cur_ret[i])
                lengths.append(cur_len[i])
                cut.append(bool(step.infos[i].get("TimeLimit.truncated", False)))
                counts[i] += 1
            cur_ret[i], cur_len[i] = 0.0, 0
        if not (counts < targets).any():
            break
    acts = np.concatenate(taken)
    if hasattr(env.action_space, "n"):
        freq = np.bincount(acts.astype(int).ravel(), minlength=int(env.action_space.n))
        actions = freq / freq.sum()
    else:
        actions = acts.reshape(len(acts), -1).mean(0)
    return dict(returns=np.array(returns), lengths=np.array(lengths),
                timeouts=float(np.mean(cut)), actions=actions)


def eval_one(task: str, policy: str, seed: int, quick: bool,
             timesteps: int | None = None) -> dict:
    """Train one (task, policy, seed) as reproduce.py does; evaluate it in both modes."""
    model, cfg, curve, _, env_kwargs, _ = train_one(task, policy, seed, quick,
                                                    timesteps=timesteps)
    last = [r for _, r in curve[-50:]]
    row = dict(task=task, policy=policy, seed=seed, timesteps=cfg["n_timesteps"],
               train_last50=round(statistics.mean(last), 3) if last else "")
    for mode in MODES:
        env = frozen_normalization(model.get_vec_normalize_env(),
                                   policies.make_env(task, 4, seed + 10_000, **env_kwargs))
        res = rollout(model, env, 4 if quick else 20, deterministic=mode == "det")
        env.close()
        row.update({f"{mode}_return": round(float(res["returns"].mean()), 3),
                    f"{mode}_std": round(float(res["returns"].std()), 3),
                    f"{mode}_len": round(float(res["lengths"].mean()), 1),
                    f"{mode}_timeouts": round(res["timeouts"], 3),
                    f"{mode}_actions": "/".join(f"{a:.3f}" for a in res["actions"])})
    return row


def summary(rows: list[dict]) -> str:
    """Markdown: per (task, policy), means over seeds of both modes' figures."""
    lines = ["| task | policy | n | train (last 50) | det return | sto return | det len | "
             "sto len | det timeouts | det actions | sto actions |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["task"], r["policy"]) for r in rows},
                  key=lambda k: (k[0], list(POLICIES).index(k[1])))
    for task, pol in keys:
        sel = [r for r in rows if r["task"] == task and r["policy"] == pol]

        def mean(field: str) -> float:
            vals = [float(r[field]) for r in sel if r[field] != ""]
            return statistics.mean(vals) if vals else float("nan")

        def mean_actions(field: str) -> str:
            vecs = np.array([[float(a) for a in r[field].split("/")] for r in sel])
            return "/".join(f"{a:.2f}" for a in vecs.mean(0))

        lines.append(f"| {task} | {pol} | {len(sel)} | {mean('train_last50'):.1f} | "
                     f"{mean('det_return'):.1f} | {mean('sto_return'):.1f} | "
                     f"{mean('det_len'):.0f} | {mean('sto_len'):.0f} | "
                     f"{mean('det_timeouts'):.2f} | {mean_actions('det_actions')} | "
                     f"{mean_actions('sto_actions')} |")
    return "\n".join(lines) + "\n"


def describe(row: dict) -> str:
    return (f"{row['task']:<17} {row['policy']:<6} seed {row['seed']}: deterministic "
            f"{row['det_return']:8.1f}, stochastic {row['sto_return']:8.1f}")


DIAGNOSTIC = Diagnostic("eval_modes", eval_one, FIELDS, summary, describe, POMDP_TASKS,
                        "LunarLander-P-v0", list(POLICIES))


def main(argv=None) -> int:
    return run_diagnostic(DIAGNOSTIC, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
