"""Parameter-shared multi-agent training on a PettingZoo cooperative task: one policy controls
every agent (one VecEnv row per (copy, agent), one recurrent state per agent).

    python examples/train_marl.py                                   # GRSN on spread-PO, minutes
    python examples/train_marl.py --policy lstm --timesteps 300000 --copies 8
    python examples/train_marl.py --env speaker-listener --policy mlp

Envs: spread-PO (mpe2 simple_spread_v3, N=3, partially observed: nearest agent and 2 nearest
landmarks), speaker-listener (mpe2 simple_speaker_listener_v4, heterogeneous: padded
observations/actions + agent id). Policies: grsn (GRSNPolicy), lif (LIF under TAP), notap
(spiking without TAP), lstm (MlpLstmPolicy), mlp (PPO, no memory).
At the end the script prints the team return (sum over agents and steps of an episode), mean +-
std over evaluation episodes with deterministic actions, and saves the model. Anchors measured
for spread-PO before this project (100 episodes): uniform random -77.3; PPO-MLP after 1.5M
agent-steps -40.1 (one seed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_pomdp  # noqa: E402
from policies.marl import (  # noqa: E402
    PettingZooVecEnv,
    TeamMetricsCallback,
    evaluate_team,
    make_speaker_listener,
    make_spread_po,
)

ENVS = {
    "spread-PO": dict(env_fn=make_spread_po, agent_id=False),
    "speaker-listener": dict(env_fn=make_speaker_listener, agent_id=True),
}

HYPERPARAMS = dict(timesteps=150_000, copies=8, n_steps=128, batch_size=512, n_epochs=8,
                   learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, hidden=64)


def make_venv(env: str, copies: int, seed: int) -> PettingZooVecEnv:
    spec = ENVS[env]
    venv = PettingZooVecEnv(spec["env_fn"], copies, agent_id=spec["agent_id"])
    venv.seed(seed)
    return venv


def build_model(policy: str, venv, cfg: dict, seed: int, device: str = "auto",
                tensorboard=None, verbose: int = 0):
    """The model for ``policy`` (grsn, lif, notap, lstm, mlp) with ``cfg``'s hyperparameters;
    the same construction as ``train_pomdp.build_model``."""
    return train_pomdp.build_model(policy, venv, cfg, seed, device, tensorboard,
                                   verbose=verbose)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="spread-PO", choices=sorted(ENVS))
    p.add_argument("--policy", default="grsn", choices=sorted(train_pomdp.POLICIES))
    p.add_argument("--timesteps", type=int, default=HYPERPARAMS["timesteps"],
                   help="agent-steps (VecEnv rows x steps)")
    p.add_argument("--copies", type=int, default=HYPERPARAMS["copies"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", default="runs/marl_model")
    p.add_argument("--tensorboard", default=None)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--no-progress-bar", action="store_true")
    args = p.parse_args(argv)
    if args.timesteps < 1 or args.copies < 1 or args.eval_episodes < 1:
        p.error("--timesteps, --copies and --eval-episodes must be >= 1")

    cfg = dict(HYPERPARAMS)
    venv = make_venv(args.env, args.copies, args.seed)
    model = build_model(args.policy, venv, cfg, args.seed, args.device, args.tensorboard)
    print(f"training {args.policy} on {args.env}: {venv.num_envs} rows ({args.copies} copies), "
          f"{args.timesteps} agent-steps, seed {args.seed}, torch threads "
          f"{torch.get_num_threads()}")
    t0 = time.time()
    model.learn(args.timesteps, callback=TeamMetricsCallback(),
                progress_bar=not args.no_progress_bar)
    train_time = time.time() - t0
    eval_venv = make_venv(args.env, args.copies, args.seed + 10_000)
    mean, std, episodes = evaluate_team(model, eval_venv, args.eval_episodes)
    print(f"\n{args.policy} on {args.env}: team return {mean:.1f} +- {std:.1f} "
          f"over {len(episodes)} episodes (train {train_time:.0f} s, "
          f"{args.timesteps / train_time:.0f} agent-steps/s)")
    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        model.save(args.save)
        # SB3 adds ".zip" only to a path without a suffix
        print(f"saved to {args.save if os.path.splitext(args.save)[1] else args.save + '.zip'}")
    venv.close()
    eval_venv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
