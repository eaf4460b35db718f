"""Parameter-shared multi-agent training on a PettingZoo cooperative task: one policy controls
every agent (one VecEnv row per (copy, agent), one recurrent state per agent).

    python examples/train_marl.py                                   # GRSN on spread-PO, minutes
    python examples/train_marl.py --policy lstm --timesteps 300000 --copies 8
    python examples/train_marl.py --env speaker-listener --policy mlp
    python examples/train_marl.py --env smax-3s_vs_5z --policy grsn --centralised-critic   # [smax]

Envs: spread-PO (mpe2 simple_spread_v3, N=3, partially observed: nearest agent and 2 nearest
landmarks), speaker-listener (mpe2 simple_speaker_listener_v4, heterogeneous: padded
observations/actions + agent id), smax-2s3z, smax-3s_vs_5z and smax-8m (JaxMARL's SMAX, SMAC-like
maps; needs pip install 'grsn_sj[smax]'; the win rate is printed too). Policies: grsn
(GRSNPolicy), lif (LIF under TAP), notap (spiking without TAP), lstm (MlpLstmPolicy), gru, mlp
(PPO, no memory).
``--centralised-critic`` gives a recurrent policy a training-only critic that also reads the
copy's joint observation, or with ``--central-state env`` the env's own global state (SMAX's
world state; MAPPO style); the deployed actor is unchanged.
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

from policies.marl import TeamMetricsCallback, evaluate_team
from policies.training import (
    POLICIES,
    add_threads_option,
    build_model,
    make_task_env,
    positive_int,
    set_threads,
)
from policies.zoo import config_for, marl_hyperparams


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="spread-PO", choices=sorted(marl_hyperparams))
    p.add_argument("--policy", default="grsn", choices=sorted(POLICIES))
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="agent-steps (VecEnv rows x steps; default: per task)")
    p.add_argument("--copies", type=positive_int, default=None,
                   help="environment copies (default: per task)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", default="runs/marl_model")
    p.add_argument("--tensorboard", default=None)
    p.add_argument("--eval-episodes", type=positive_int, default=100)
    p.add_argument("--no-progress-bar", action="store_true")
    p.add_argument("--centralised-critic", action="store_true",
                   help="a training-only critic that also reads the copy's joint observation "
                        "(MAPPO style; policies.marl.VecCentralState); recurrent policies only")
    p.add_argument("--central-state", default="joint_obs", choices=["joint_obs", "env"],
                   help="what the centralised critic reads besides the agent's observation: "
                        "the copy's joint observation (default) or the env's own global state "
                        "(state(); SMAX's world state)")
    add_threads_option(p)
    args = p.parse_args(argv)
    if args.centralised_critic and args.policy == "mlp":
        p.error("--centralised-critic is an option of the recurrent policies (grsn, lif, notap, "
                "lstm, gru), not of the PPO MLP")
    if args.central_state != "joint_obs" and not args.centralised_critic:
        p.error("--central-state chooses what the centralised critic reads: add "
                "--centralised-critic")
    set_threads(args.threads)
    cfg = config_for(args.env)
    if args.timesteps is not None:
        cfg["n_timesteps"] = args.timesteps
    if args.copies is not None:
        cfg["n_copies"] = args.copies
    args.timesteps, args.copies = cfg["n_timesteps"], cfg["n_copies"]

    central = args.centralised_critic
    venv = make_task_env(args.env, args.copies, args.seed, centralised_critic=central,
                         central_state=args.central_state)
    model = build_model(args.policy, venv, cfg, args.seed, args.device, args.tensorboard,
                        policy_kwargs=dict(centralised_critic=True) if central else None)
    print(f"training {args.policy} on {args.env}: {venv.num_envs} rows ({args.copies} copies), "
          f"{args.timesteps} agent-steps, seed {args.seed}, torch threads "
          f"{torch.get_num_threads()}")
    t0 = time.time()
    model.learn(args.timesteps, callback=TeamMetricsCallback(),
                progress_bar=not args.no_progress_bar)
    train_time = time.time() - t0
    eval_venv = make_task_env(args.env, args.copies, args.seed + 10_000,
                              centralised_critic=central, central_state=args.central_state)
    result = evaluate_team(model, eval_venv, args.eval_episodes)
    wins = "" if result.win_rate is None else f", win rate {result.win_rate:.2f}"
    print(f"\n{args.policy} on {args.env}: team return {result.mean:.1f} +- {result.std:.1f}"
          f"{wins} over {len(result.episodes)} episodes, deterministic (trained "
          f"{model.num_timesteps} agent-steps in {train_time:.1f} s, "
          f"{model.num_timesteps / train_time:.0f} agent-steps/s)")
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
