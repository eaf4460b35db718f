"""Does the recurrent core hold the hidden velocity, and do its spikes pass it on to the heads?

    python examples/probe_velocity.py --env CartPole-P-v0 --policies grsn lif lstm --jobs 2
    python examples/probe_velocity.py --env Pendulum-P-v0 --policies grsn lif lstm --jobs 2
    python examples/probe_velocity.py --quick --env CartPole-P-v0 --policies grsn   # smoke run

On CartPole-P and Pendulum-P the observation holds positions only, and the velocities must be
integrated from successive observations. GRSN learns neither task as well as the LSTM (see
docs/RESULTS.md). This script trains each (task, policy, seed) as ``examples/reproduce.py`` does
(``policies.training.train_one``), plays its deterministic policy on 4 fresh env copies, and fits
linear probes (ridge regression on centred inputs, see :func:`ridge_predict`) from four feature
sets to the true velocities read from the simulator:

- ``obs``: the current observation (the memoryless reference);
- ``prev_step``: the current and previous observation, their pairwise products and the previous
  action -- what a memory of one step could hold. It is the reference: the velocity follows from
  it almost exactly (CartPole: the finite difference plus the last push; Pendulum: the angle
  difference, sin(θ_t - θ_{t-1}) = sin_t cos_{t-1} - cos_t sin_{t-1}, is one of the products);
- ``readout``: the core's output, the latent the policy and value heads see (GRSN / LIF: spikes;
  LSTM: ``h``);
- ``state``: everything the core carries to the next step (GRSN: ``v`` and ``c`` of every layer;
  LIF: ``v``; LSTM: ``h`` and ``c``).

Probes are cross-validated over the 4 copies (each copy predicted by a probe fitted on the other
three; the best of a few ridge penalties is kept), leaving out the first step of every episode
(no previous step, fresh core state): R^2 of the pooled predictions, averaged over the velocity
components (CartPole: cart and pole velocity; Pendulum: angular velocity). A linear probe is a
lower bound on what a nonlinear head could read, and it is the same bound for every policy. One
CSV row per (task, policy, seed) goes to ``--out``/results.csv (resumable); means over seeds go to
``--out``/summary.md and stdout.
"""
from __future__ import annotations

import statistics
import sys

import gymnasium as gym
import numpy as np

import policies
from policies.diagnostics import VELOCITY_INDICES
from policies.rollout import rollout
from policies.training import Diagnostic, run_diagnostic, train_one

PROBE_POLICIES = ("grsn", "lif", "lstm")
FEATURE_SETS = ("obs", "prev_step", "readout", "state")
FIELDS = ["task", "policy", "seed", "timesteps", "episodes", "mean_return"] + [
    f"r2_{name}" for name in FEATURE_SETS]


def ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  alpha: float = 1e-8) -> np.ndarray:
    """Fit a ridge regression (with intercept) on the training set and predict the test set.
    Features are centred, not scaled: a neuron that barely varies in the training copies keeps
    a small scale, where standardising would blow it up wherever it varies more in the test copy.
    ``alpha`` is the penalty per training sample, in the features' units; it must be allowed to
    be small, since the finite difference of two nearly equal positions is a low-variance
    direction that a large penalty erases."""
    if len(x_train) < 2 or len(x_test) < 1:
        raise ValueError("need at least 2 training samples and 1 test sample")
    x_mu, y_mu = x_train.mean(0), y_train.mean(0)
    xt = x_train - x_mu
    gram = xt.T @ xt + alpha * len(xt) * np.eye(xt.shape[1])
    return (x_test - x_mu) @ np.linalg.solve(gram, xt.T @ (y_train - y_mu)) + y_mu


#: ridge penalties (per training sample, in the features' units) tried by :func:`cv_r2`
ALPHAS = (1e-8, 1e-6, 1e-4, 1e-2, 1.0)


def _pooled_r2(ys: list[np.ndarray], preds: list[np.ndarray]) -> float:
    y, pred = np.concatenate(ys), np.concatenate(preds)
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - ss_res / ss_tot))


def _loo_predictions(xs: list[np.ndarray], ys: list[np.ndarray], alpha: float):
    return [ridge_predict(np.concatenate(xs[:k] + xs[k + 1:]),
                          np.concatenate(ys[:k] + ys[k + 1:]), xs[k], alpha)
            for k in range(len(xs))]


def cv_r2(xs: list[np.ndarray], ys: list[np.ndarray], alphas=ALPHAS) -> float:
    """Cross-validated R^2 over groups (here: env copies): each group is predicted by a probe
    fitted on the others; R^2 is taken over all predictions pooled and averaged over the columns
    of ``y``, and the best over the penalties ``alphas`` is returned.

    Pooling keeps one group with little velocity variance (a deterministic policy that holds
    still in one copy) from dominating the score. Picking the penalty on the same folds is a
    mild optimism (one scalar out of a few), the same for every feature set and policy; a nested
    choice was tried and failed: with only three inner copies it picked a tiny penalty that
    blew up on a held-out copy where a barely-used neuron varied more."""
    if len(xs) < 3 or len(xs) != len(ys):
        raise ValueError("need at least 3 groups, and as many feature as target groups")
    return max(_pooled_r2(ys, _loo_predictions(xs, ys, a)) for a in alphas)


def collect(model, env, n_steps: int, velocity_indices) -> dict:
    """Play the deterministic policy for ``n_steps`` steps on every copy of ``env``
    (:func:`policies.rollout.rollout`, with the core's readout); return per copy the features of
    :data:`FEATURE_SETS`, the true velocities and whether the step starts an episode, each
    ``[copies, T, dim]``, and the returns of the episodes that ended."""
    n = env.num_envs
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    prev_action = np.zeros((n, int(env.action_space.n) if discrete else env.action_space.shape[0]))
    rows = {k: [] for k in FEATURE_SETS + ("velocity", "start")}
    returns, running = [], np.zeros(n)

    def velocity() -> np.ndarray:  # the simulator's state of the observation about to be seen
        return np.stack([np.asarray(e.unwrapped.state)[list(velocity_indices)] for e in env.envs])

    obs = env.reset()
    prev = np.zeros_like(obs)
    rows["velocity"].append(velocity())
    for step in rollout(model, env, n_steps, deterministic=True, activity=True, obs=obs):
        starts = step.episode_start.astype(np.float32)
        obs = step.obs
        prev = prev * (1.0 - starts[:, None])
        prev_action = prev_action * (1.0 - starts[:, None])
        rows["start"].append(starts[:, None])
        rows["obs"].append(obs)
        products = (obs[:, :, None] * prev[:, None, :]).reshape(n, -1)
        rows["prev_step"].append(np.concatenate([obs, prev, products, prev_action], axis=1))
        rows["readout"].append(step.readout)
        # every layer's two state slots, per copy (an unused slot is all zero and gets dropped)
        rows["state"].append(np.concatenate([s.transpose(1, 0, 2).reshape(n, -1)
                                             for s in step.state], axis=1))
        if discrete:
            prev_action = np.eye(env.action_space.n)[step.action]
        else:
            prev_action = step.action.reshape(n, -1)
        prev = obs
        running += step.reward
        for i in np.flatnonzero(step.done):
            returns.append(running[i])
            running[i] = 0.0
        if len(rows["velocity"]) < n_steps:
            rows["velocity"].append(velocity())
    out = {k: np.stack(v, axis=1).astype(np.float64) for k, v in rows.items()}
    out["returns"] = np.array(returns)
    return out


def probe_one(task: str, policy: str, seed: int, quick: bool,
              timesteps: int | None = None) -> dict:
    """Train one (task, policy, seed) as reproduce.py does; probe its features for velocity."""
    if task not in VELOCITY_INDICES:
        raise ValueError(f"task must be one of {sorted(VELOCITY_INDICES)}, got {task!r}")
    if policy not in PROBE_POLICIES:
        raise ValueError(f"policy must be one of {PROBE_POLICIES} (a recurrent core), "
                         f"got {policy!r}")
    model, cfg, _, _, env_kwargs, _ = train_one(task, policy, seed, quick, timesteps=timesteps)
    env = policies.make_env(task, 4, seed + 30_000, **env_kwargs)
    data = collect(model, env, 300 if quick else 1500, VELOCITY_INDICES[task])
    env.close()
    # an episode's first step has no previous step and a fresh core state: left out
    use = data.pop("start")[..., 0] == 0
    y = data["velocity"]
    row = dict(task=task, policy=policy, seed=seed, timesteps=cfg["n_timesteps"],
               episodes=len(data["returns"]),
               mean_return=round(float(data["returns"].mean()), 3) if len(data["returns"])
               else "")
    for name in FEATURE_SETS:
        x = data[name]
        r2 = cv_r2([x[i][use[i]] for i in range(len(x))], [y[i][use[i]] for i in range(len(y))])
        row[f"r2_{name}"] = round(r2, 4)
    return row


def summary(rows: list[dict]) -> str:
    """Markdown: per (task, policy), the held-out R^2 of each feature set, mean over seeds."""
    lines = ["| task | policy | n | " + " | ".join(f"R² {n}" for n in FEATURE_SETS)
             + " | return while probed |", "|---|---|---|" + "---|" * (len(FEATURE_SETS) + 1)]
    for task, pol in sorted({(r["task"], r["policy"]) for r in rows},
                            key=lambda k: (k[0], PROBE_POLICIES.index(k[1]))):
        sel = [r for r in rows if r["task"] == task and r["policy"] == pol]
        cells = [f"{statistics.mean(float(r[f'r2_{n}']) for r in sel):.3f}"
                 for n in FEATURE_SETS]
        rets = [float(r["mean_return"]) for r in sel if r["mean_return"] != ""]
        ret = f"{statistics.mean(rets):.1f}" if rets else "–"
        lines.append(f"| {task} | {pol} | {len(sel)} | " + " | ".join(cells) + f" | {ret} |")
    return "\n".join(lines) + "\n"


def describe(row: dict) -> str:
    return (f"{row['task']:<15} {row['policy']:<5} seed {row['seed']}: R² "
            + ", ".join(f"{n} {row[f'r2_{n}']:.3f}" for n in FEATURE_SETS))


DIAGNOSTIC = Diagnostic("probe", probe_one, FIELDS, summary, describe,
                        sorted(VELOCITY_INDICES), "CartPole-P-v0", list(PROBE_POLICIES))


def main(argv=None) -> int:
    return run_diagnostic(DIAGNOSTIC, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
