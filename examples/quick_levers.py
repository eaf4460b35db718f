"""Rank levers of a policy with short runs: train, then evaluate deterministically and with
sampled actions. The instrument behind docs/RESULTS.md's "The learning gap" tables.

    python examples/quick_levers.py --task perf --policy grsn --seeds 0 1 2
    python examples/quick_levers.py --task perf --policy grsn --policy-kwargs readout=spikes aux_loss=None
    python examples/quick_levers.py --task CartPole-P-v0 --policy grsn --policy-kwargs critic_core=shared
    python examples/quick_levers.py --task Pendulum-P-v0 --policy lstm --seeds 0
    python examples/quick_levers.py --task CartPole-P-v0 --normalize     # VecNormalize'd inputs
    python examples/quick_levers.py --task CartPole-P-v0 --normalize --normalize-reward
    python examples/quick_levers.py --task acrobot-zoo --policy grsn --seeds 0 1 2 3

Tasks:

- ``perf``: sb3-contrib's own RecurrentPPO performance test (``tests/test_lstm.py::
  test_ppo_lstm_performance``, version 2.9): CartPole without velocities (500-step limit), 8
  envs under ``VecNormalize``, ``n_steps=128, learning_rate=7e-4, batch_size=256,
  n_epochs=10, max_grad_norm=1, gae_lambda=0.98``, ``net_arch=dict(vf=[64], pi=[])``,
  ``lstm_hidden_size=64``, ``ortho_init=False``, ``enable_critic_lstm=True``, 50k steps; the
  test passes at a mean of 450 over 10 deterministic episodes on the training env. Evaluated the
  same way here (10 episodes, on the training ``VecNormalize`` env), and also with sampled actions.
- ``acrobot-zoo``: a POMDP outside the project's suite, under another project's settings:
  Acrobot-v1 with its two angular velocities removed (observations ``cos``/``sin`` of the two
  angles), trained with RL Zoo's ``ppo_lstm.yml`` hyperparameters for Acrobot-v1 as written
  (``normalize: true``, i.e. ``VecNormalize`` of observations and rewards; 16 envs,
  ``n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0``; the rest
  RecurrentPPO's defaults, learning rate 3e-4, batch 128), 80k steps, each policy with its own
  defaults (``--hyperparams`` on top). 20 episodes on 4 fresh env copies seeded ``seed +
  10000`` with the training statistics frozen, deterministic and sampled; the deployed actor's
  energy on copies seeded ``seed + 20000``. A random policy scores -500 (the time limit).
- any id of ``policies/zoo.py``: the table's settings (``--hyperparams`` on top) and budget;
  20 episodes on 4 fresh env copies seeded ``seed + 10000``, deterministic and sampled.

Each run appends one JSON line (task, policy, policy_kwargs, hyperparams if given, seed, det,
sampled, seconds; on ``acrobot-zoo`` and on a zoo task without ``--normalize`` also the
deployed actor's energy per decision, counted as ``reproduce.py`` counts it:
``energy_agent_nj``, ``energy_core_nj``, ``macs_agent``, ``acs_agent``) to ``--out`` and
prints it. One thread per run (``--threads``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.wrappers import TimeLimit
import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from policies import zoo
from policies.envs import ObservationSubsetWrapper
from policies.training import (
    POLICIES,
    add_kwargs_option,
    add_threads_option,
    build_model,
    check_hyperparams,
    energy_of,
    energy_on,
    evaluate_modes,
    frozen_normalization,
    make_task_env,
    normalize_env,
    set_threads,
    task_config,
)

#: sb3-contrib's test_ppo_lstm_performance, as written there
PERF = dict(n_steps=128, learning_rate=7e-4, batch_size=256, n_epochs=10, max_grad_norm=1,
            gae_lambda=0.98)
PERF_POLICY_KWARGS = dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False,
                          enable_critic_lstm=True)

#: RL Zoo's ppo_lstm.yml Acrobot-v1 settings (with ``normalize: true`` and 16 envs)
ACROBOT_ZOO = dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0)
ACROBOT_ZOO_STEPS = 80_000
#: evaluation episodes per mode on the zoo tasks and acrobot-zoo
EVAL_EPISODES = 20


class CartPoleNoVelEnv(CartPoleEnv):
    """sb3-contrib's test env: CartPole with the two velocities removed."""

    def __init__(self):
        super().__init__()
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2],
                        dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return np.array([obs[0], obs[2]]), info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return np.array([obs[0], obs[2]]), reward, terminated, truncated, info


def _perf_env():
    return TimeLimit(CartPoleNoVelEnv(), max_episode_steps=500)


def _acrobot_p_env():
    """Acrobot-v1 without its angular velocities: ``cos``/``sin`` of the two angles only."""
    return ObservationSubsetWrapper(gym.make("Acrobot-v1"), (0, 1, 2, 3))


def acrobot_zoo_env(n: int, seed: int, train_env: VecNormalize | None = None) -> VecNormalize:
    """``n`` copies of the acrobot-zoo task's env, seeded: for training a ``VecNormalize`` of
    observations and rewards (RL Zoo's ``normalize: true``); given the training env, one that
    evaluates with its observation statistics frozen and raw rewards."""
    env = make_vec_env(_acrobot_p_env, n_envs=n, seed=seed)
    return VecNormalize(env) if train_env is None else frozen_normalization(train_env, env)


def eval_env(task: str, seed: int, train_env):
    """The evaluation env of a table task: 4 fresh copies seeded ``seed + 10000``; when the
    training env is a ``VecNormalize``, wrapped in one that uses its (frozen) statistics."""
    return frozen_normalization(train_env, make_task_env(task, 4, seed + 10_000))


def run(task: str, policy: str, seed: int, policy_kwargs: dict, normalize: bool = False,
        hyperparams: dict | None = None, normalize_reward: bool = False) -> dict:
    algo, policy_class = POLICIES[policy]
    t0 = time.time()
    energy = {}
    if task == "perf":
        env = VecNormalize(make_vec_env(_perf_env, n_envs=8, seed=seed))
        model = algo(policy_class, env, seed=seed, verbose=0,
                     policy_kwargs={**PERF_POLICY_KWARGS, **policy_kwargs}, **PERF)
        model.learn(50_000)
        det = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)[0]
        sampled = evaluate_policy(model, env, n_eval_episodes=10, deterministic=False)[0]
    elif task == "acrobot-zoo":
        env = acrobot_zoo_env(16, seed)
        model = algo(policy_class, env, seed=seed, verbose=0, policy_kwargs=policy_kwargs,
                     **{**ACROBOT_ZOO, **check_hyperparams(hyperparams)})
        model.learn(ACROBOT_ZOO_STEPS)
        det, sampled = evaluate_modes(model, lambda: acrobot_zoo_env(4, seed + 10_000, env),
                                       EVAL_EPISODES)
        energy = energy_on(model, acrobot_zoo_env(4, seed + 20_000, env))
    else:
        cfg = task_config(task, False, hyperparams=hyperparams)
        if normalize:  # observations; with normalize_reward RL Zoo's `normalize: true`, which
            # discounts the reward normaliser's returns with the algorithm's gamma
            cfg["normalize"] = True if normalize_reward else dict(norm_reward=False)
        env = normalize_env(make_task_env(task, cfg["n_envs"], seed), cfg)
        model = build_model(policy, env, cfg, seed, "cpu", policy_kwargs=policy_kwargs)
        model.learn(cfg["n_timesteps"])
        det, sampled = evaluate_modes(model, lambda: eval_env(task, seed, env), EVAL_EPISODES)
        if not normalize:  # the deployed actor's energy, as reproduce.py counts it
            energy = energy_of(model, task, seed, {})  # make_task_env adds the task's kwargs
    if normalize:
        task = f"{task}+VecNormalize" + ("(obs,reward)" if normalize_reward else "")
    extra = dict(hyperparams=repr(hyperparams)) if hyperparams else {}
    return dict(task=task, policy=policy, policy_kwargs=repr(policy_kwargs), **extra, seed=seed,
                det=round(float(det), 1), sampled=round(float(sampled), 1),
                seconds=round(time.time() - t0), **energy)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="perf",
                   choices=["perf", "acrobot-zoo"] + sorted(zoo.hyperparams))
    p.add_argument("--policy", default="grsn", choices=[k for k in POLICIES if k != "mlp"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_kwargs_option(p, "--policy-kwargs", "policy_kwargs on top of the task's")
    add_kwargs_option(p, "--hyperparams", "algorithm arguments on top of the task's (RL Zoo's "
                      "--hyperparams; e.g. the settings examples/tune_ppo.py found)")
    p.add_argument("--normalize", action="store_true",
                   help="train on VecNormalize'd observations (evaluation uses the training "
                        "statistics); not for --task perf or acrobot-zoo, which normalise "
                        "already")
    p.add_argument("--normalize-reward", action="store_true",
                   help="with --normalize, normalise the rewards too: RL Zoo's normalize: true "
                        "in full (its ppo_lstm.yml entries for the NoVel tasks use it); "
                        "evaluation returns stay raw. Without it a tanh value head meets raw "
                        "returns (docs/RESULTS.md, 'What the critics predict')")
    p.add_argument("--out", default="runs/quick_levers.jsonl")
    add_threads_option(p)
    args = p.parse_args(argv)
    kwargs = args.policy_kwargs
    if args.hyperparams and args.task == "perf":
        p.error("--task perf runs sb3-contrib's test settings as written; --hyperparams is for "
                "the zoo tasks")
    if args.normalize and args.task in ("perf", "acrobot-zoo"):
        p.error(f"--task {args.task} normalises its observations already (its settings do)")
    if args.normalize_reward and not args.normalize:
        p.error("--normalize-reward normalises the rewards of the --normalize wrapper: pass "
                "--normalize too")
    set_threads(args.threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for seed in args.seeds:
        try:
            row = run(args.task, args.policy, seed, kwargs, args.normalize, args.hyperparams,
                      args.normalize_reward)
        except (TypeError, ValueError) as exc:
            p.exit(2, f"{p.prog}: error: {exc}\n")
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
