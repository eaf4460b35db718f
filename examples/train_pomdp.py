"""Train a recurrent policy with sb3-contrib's RecurrentPPO on a POMDP and report its return.

    python examples/train_pomdp.py                          # GRSN on CartPole-V, a few minutes
    python examples/train_pomdp.py --env Pendulum-P-v0 --policy lstm --timesteps 200000
    python examples/train_pomdp.py --policy grsn --save runs/grsn --tensorboard runs/tb

Policies: grsn (GRSNPolicy), lif (LIF under TAP), notap (spiking without TAP), lstm
(sb3-contrib's MlpLstmPolicy), mlp (sb3's PPO MlpPolicy, no memory). Per-task hyperparameters
live in HYPERPARAMS below; command-line flags override them. At the end the script prints the
mean +- std evaluation return (deterministic actions) and the spiking policies' firing rate,
and saves the model.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy

import policies

#: RL Zoo's PendulumNoVel-v1 RecurrentPPO settings, shared by Pendulum-P and Pendulum-V
PENDULUM = dict(timesteps=100_000, n_envs=4, n_steps=1024, batch_size=128, n_epochs=10,
                learning_rate=1e-3, gamma=0.9, gae_lambda=0.95, ent_coef=0.0, use_sde=True,
                sde_sample_freq=4, policy_kwargs=dict(ortho_init=False, activation_fn="relu",
                                                      net_arch=dict(pi=[64], vf=[64])))

#: one readable table of per-task defaults (RecurrentPPO / PPO arguments and the task's budget)
HYPERPARAMS: dict[str, dict] = {
    "default": dict(timesteps=50_000, n_envs=8, n_steps=128, batch_size=256, n_epochs=8,
                    learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, ent_coef=0.01,
                    hidden=64),
    "CartPole-P-v0": dict(timesteps=100_000),
    "CartPole-V-v0": dict(timesteps=40_000),
    # Pendulum: RL Zoo's ppo_lstm settings for PendulumNoVel-v1 (gSDE, gamma 0.9, long rollouts,
    # small ReLU heads), without its observation normalisation (the P and V observations are
    # already of order 1..8, and unnormalised inputs keep evaluation and energy counting simple)
    "Pendulum-P-v0": dict(PENDULUM),
    "Pendulum-V-v0": dict(PENDULUM),
    # LunarLander: 200k steps per run, the budget docs/RESULTS.md reports (3 seeds x 5 policies x
    # 2 tasks is about 2.4 core-hours here; the LSTM is still improving at 200k, see its curves)
    "LunarLander-P-v0": dict(timesteps=200_000, n_steps=256, gamma=0.99),
    "LunarLander-V-v0": dict(timesteps=200_000, n_steps=256, gamma=0.99),
    "CueRecall-v0": dict(timesteps=30_000, n_steps=32, batch_size=128, learning_rate=1e-3,
                         hidden=32),
}

#: names usable for ``activation_fn`` in the table (kept as strings so the table prints)
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}

POLICIES = {
    "grsn": policies.GRSNPolicy,
    "lif": policies.LIFPolicy,
    "notap": policies.NoTAPPolicy,
    "lstm": "MlpLstmPolicy",
    "mlp": "MlpPolicy",
}


def parse_kwargs(items: list[str]) -> dict:
    """``["forget_bias=2.0", "readout=spikes+obs"]`` -> ``{"forget_bias": 2.0, ...}`` (values
    are Python literals where they parse as one, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def config_for(env_id: str) -> dict:
    cfg = dict(HYPERPARAMS["default"])
    cfg.update(HYPERPARAMS.get(env_id, {}))
    return cfg


def make_train_env(env_id: str, cfg: dict, seed: int, **env_kwargs):
    """The training VecEnv of the table's config: ``cfg["n_envs"]`` Monitor-wrapped copies."""
    return policies.make_env(env_id, cfg["n_envs"], seed, **env_kwargs)


def build_model(policy: str, env, cfg: dict, seed: int, device: str, tensorboard=None,
                policy_kwargs=None, verbose: int = 0):
    """The model for ``policy`` with the table's hyperparameters (also used by reproduce.py)."""
    common = dict(n_steps=cfg["n_steps"], batch_size=cfg["batch_size"], n_epochs=cfg["n_epochs"],
                  learning_rate=cfg["learning_rate"], gamma=cfg["gamma"],
                  gae_lambda=cfg["gae_lambda"], ent_coef=cfg["ent_coef"],
                  use_sde=cfg.get("use_sde", False), sde_sample_freq=cfg.get("sde_sample_freq", -1),
                  seed=seed, device=device, tensorboard_log=tensorboard, verbose=verbose)
    # the task's policy_kwargs (the same for every policy), then the caller's on top
    kw = dict(cfg.get("policy_kwargs", {}))
    if isinstance(kw.get("activation_fn"), str):
        kw["activation_fn"] = ACTIVATIONS[kw["activation_fn"]]
    kw.update(policy_kwargs or {})
    if policy == "mlp":
        # the memoryless baseline: two hidden layers in place of the recurrent core + head
        kw["net_arch"] = (policy_kwargs or {}).get("net_arch", [cfg["hidden"], cfg["hidden"]])
        return PPO("MlpPolicy", env, policy_kwargs=kw, **common)
    if policy == "lstm":
        kw.setdefault("lstm_hidden_size", cfg["hidden"])
        return RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=kw, **common)
    kw.setdefault("grsn_hidden_size", cfg["hidden"])
    return RecurrentPPO(POLICIES[policy], env, policy_kwargs=kw, **common)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-V-v0", choices=policies.POMDP_ENV_IDS)
    p.add_argument("--policy", default="grsn", choices=sorted(POLICIES))
    p.add_argument("--timesteps", type=int, help="training steps (default: per task)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, help="parallel envs (default: per task)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    p.add_argument("--save", default="runs/model", help="where to save the model (.zip)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--prev-action-reward", action="store_true",
                   help="append the previous action and reward to the observation")
    p.add_argument("--no-progress-bar", action="store_true")
    p.add_argument("--policy-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra policy_kwargs, e.g. forget_bias=2.0 readout=spikes+obs")
    args = p.parse_args(argv)

    cfg = config_for(args.env)
    if args.timesteps is not None:
        cfg["timesteps"] = args.timesteps
    if args.n_envs is not None:
        cfg["n_envs"] = args.n_envs
    for key in ("timesteps", "n_envs"):
        if cfg[key] < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")

    env = make_train_env(args.env, cfg, args.seed, prev_action_reward=args.prev_action_reward)
    model = build_model(args.policy, env, cfg, args.seed, args.device, args.tensorboard,
                        policy_kwargs=parse_kwargs(args.policy_kwargs))
    print(f"training {args.policy} on {args.env} for {cfg['timesteps']} steps "
          f"({cfg['n_envs']} envs, seed {args.seed}, torch threads {torch.get_num_threads()})")
    callback = policies.FiringRateCallback() if hasattr(model.policy, "cores") else None
    t0 = time.time()
    progress = not args.no_progress_bar
    if progress:
        try:
            import rich  # noqa: F401  (SB3's progress bar needs tqdm and rich)
            import tqdm  # noqa: F401
        except ImportError:
            progress = False
    model.learn(cfg["timesteps"], callback=callback, progress_bar=progress)
    train_time = time.time() - t0

    eval_env = policies.make_env(args.env, 4, args.seed + 10_000,
                                 prev_action_reward=args.prev_action_reward)
    if hasattr(model.policy, "cores"):
        for core in model.policy.cores():
            core.reset_firing_stats()
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes,
                                deterministic=True)
    print(f"\n{args.policy} on {args.env}: eval return {mean:.1f} +- {std:.1f} over "
          f"{args.eval_episodes} episodes (train {train_time:.0f} s, "
          f"{cfg['timesteps'] / train_time:.0f} steps/s)")
    if hasattr(model.policy, "cores"):
        print(f"firing rate of the readout layer during evaluation: "
              f"{model.policy.lstm_actor.firing_rate():.3f} spikes/neuron/step")
    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        model.save(args.save)
        # SB3 adds ".zip" only to a path without a suffix
        print(f"saved to {args.save if os.path.splitext(args.save)[1] else args.save + '.zip'}")
    return 0 if np.isfinite(mean) else 1


if __name__ == "__main__":
    sys.exit(main())
