"""Train a recurrent policy with sb3-contrib's RecurrentPPO on a POMDP and report its return.

    python examples/train_pomdp.py                          # GRSN on CartPole-V, a few minutes
    python examples/train_pomdp.py --env Pendulum-P-v0 --policy lstm --timesteps 200000
    python examples/train_pomdp.py --policy grsn --save runs/grsn --tensorboard runs/tb

Policies: grsn (GRSNPolicy), lif (LIF under TAP), notap (spiking without TAP), lstm
(sb3-contrib's MlpLstmPolicy), mlp (sb3's PPO MlpPolicy, no memory). Per-task hyperparameters
live in ``policies/zoo.py`` (also RL Zoo's configuration); command-line flags override them. At
the end the script prints the mean +- std evaluation return (deterministic actions) and the
spiking policies' firing rate, and saves the model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy

import policies
from policies.training import (
    POLICIES,
    add_kwargs_option,
    add_threads_option,
    build_model,
    positive_int,
    set_threads,
)
from policies.zoo import config_for


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-V-v0", choices=policies.POMDP_ENV_IDS)
    p.add_argument("--policy", default="grsn", choices=sorted(POLICIES))
    p.add_argument("--timesteps", type=positive_int,
                   help="training steps (default: per task; RecurrentPPO rounds up to whole "
                        "rollouts of n_envs x n_steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=positive_int, help="parallel envs (default: per task)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    p.add_argument("--save", default="runs/model", help="where to save the model (.zip)")
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory")
    p.add_argument("--eval-episodes", type=positive_int, default=20)
    p.add_argument("--prev-action-reward", action="store_true",
                   help="append the previous action and reward to the observation")
    p.add_argument("--no-progress-bar", action="store_true")
    add_kwargs_option(p, "--policy-kwargs",
                      "extra policy_kwargs, e.g. forget_bias=2.0 readout=spikes+obs")
    add_threads_option(p)
    args = p.parse_args(argv)
    set_threads(args.threads)

    cfg = config_for(args.env)
    if args.timesteps is not None:
        cfg["n_timesteps"] = args.timesteps
    if args.n_envs is not None:
        cfg["n_envs"] = args.n_envs
    env = policies.make_env(args.env, cfg["n_envs"], args.seed,
                            prev_action_reward=args.prev_action_reward)
    try:
        model = build_model(args.policy, env, cfg, args.seed, args.device, args.tensorboard,
                            policy_kwargs=args.policy_kwargs)
    except (TypeError, ValueError) as err:
        if not args.policy_kwargs:
            raise
        p.error(f"--policy-kwargs: {err}")  # the user's mistake: its message, no traceback
    print(f"training {args.policy} on {args.env} for {cfg['n_timesteps']} steps "
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
    model.learn(cfg["n_timesteps"], callback=callback, progress_bar=progress)
    train_time = time.time() - t0

    eval_env = policies.make_env(args.env, 4, args.seed + 10_000,
                                 prev_action_reward=args.prev_action_reward)
    if hasattr(model.policy, "cores"):
        for core in model.policy.cores():
            core.reset_firing_stats()
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes,
                                deterministic=True)
    # learn() runs whole rollouts (n_envs x n_steps): report the steps that actually ran
    print(f"\n{args.policy} on {args.env}: eval return {mean:.1f} +- {std:.1f} over "
          f"{args.eval_episodes} episodes (trained {model.num_timesteps} steps in "
          f"{train_time:.1f} s, {model.num_timesteps / train_time:.0f} steps/s)")
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
