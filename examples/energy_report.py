"""Energy per decision of GRSN vs LSTM (and LIF / without-TAP / MLP) agents on a POMDP.

    python examples/energy_report.py                              # trains GRSN and LSTM briefly
    python examples/energy_report.py --policies grsn lstm lif notap mlp --timesteps 2000
    python examples/energy_report.py --models grsn=runs/cartpole_v_grsn.zip \\
        lstm=runs/cartpole_v_lstm.zip                             # saved models, no training

For every model the script rolls the (trained or loaded) policy out in ``--env`` with
``predict`` and its recurrent state (``policies.energy.collect_observations``), feeds those
observations through the policy again with the counting hooks on
(``policies.energy.estimate_energy``), and prints, per decision (one env step of one agent):
dense MACs, spike-driven ACs, element-wise neuron operations, activations, the energy of the
deployed agent (actor path only), of the recurrent core alone and of actor + critic, the readout
firing rate, and the ratios to the LSTM agent. Conventions (what counts as a MAC / AC, the
per-neuron operation counts) are in ``grsn_sj/energy.py``'s docstring, what the scopes include in
``policies/energy.py``'s.

``--models label=path``: a label starting with ``mlp`` is loaded with SB3's ``PPO``, every other
one with sb3-contrib's ``RecurrentPPO``; the label ``lstm`` is the reference of the ratios.
Training (without ``--models``) is deliberately short: the counts depend on the weights only
through the firing rates, so a few thousand steps give the right order of magnitude; train
longer (or pass saved models) for numbers to publish.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Optional, Sequence

from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

import policies
from policies.energy import EnergyConstants, EnergyReport, collect_observations, estimate_energy
from policies.training import POLICIES, add_threads_option, build_model, set_threads

#: the short training every policy gets (RL Zoo's names, see policies/zoo.py); the memory cores
#: get ``--hidden`` units (``policy_kwargs["lstm_hidden_size"]``)
SETTINGS = dict(n_steps=128, batch_size=128, n_epochs=4, learning_rate=1e-3, gamma=0.99,
                ent_coef=0.01)


def parse_models(items: Sequence[str]) -> dict[str, str]:
    """``["grsn=runs/a.zip", "lstm=runs/b.zip"]`` -> ``{"grsn": "runs/a.zip", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise argparse.ArgumentTypeError(
                f"--models takes label=path pairs (e.g. grsn=runs/grsn.zip), got {item!r}")
        if label in out:
            raise argparse.ArgumentTypeError(f"--models: label {label!r} given twice")
        out[label] = path
    return out


def load_model(label: str, path: str, env: Any) -> Any:
    """PPO for labels starting with ``mlp``, RecurrentPPO otherwise."""
    algo = PPO if label.startswith("mlp") else RecurrentPPO
    return algo.load(path, env=env, device="cpu")


def train_model(name: str, env: Any, timesteps: int, hidden: int, seed: int) -> Any:
    """A short RecurrentPPO (PPO for ``mlp``) run with the same small :data:`SETTINGS` for
    every policy; the memory cores all get ``hidden`` units (the MLP two layers of that size)."""
    cfg = dict(SETTINGS, policy_kwargs=dict(lstm_hidden_size=hidden))
    return build_model(name, env, cfg, seed, device="cpu").learn(timesteps)


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(reports: dict[str, EnergyReport], reference: str = "lstm") -> str:
    """One row per model: agent counts, energies and the ratios to ``reference``."""
    ref = reports.get(reference)
    cols = ("model", "MACs", "ACs", "neuron ops", "activations", "agent nJ", "core nJ",
            "agent+critic nJ", "firing rate", f"agent/{reference}", f"core/{reference}")
    rows = []
    for label, r in reports.items():
        core = r.core.energy_nj if r.core is not None else None
        agent_ratio = (r.agent.energy_nj / ref.agent.energy_nj
                       if ref is not None and ref.agent.energy_nj > 0 else None)
        core_ratio = (core / ref.core.energy_nj
                      if ref is not None and ref.core is not None and core is not None
                      and ref.core.energy_nj > 0 else None)
        rows.append((label, f"{r.agent.macs:,.0f}", f"{r.agent.acs:,.0f}",
                     f"{r.agent.neuron_ops:,.0f}", f"{r.agent.activations:,.0f}",
                     f"{r.agent.energy_nj:.3f}", _fmt(core, ".3f"),
                     f"{r.agent_with_critic.energy_nj:.3f}", _fmt(r.firing_rate, ".3f"),
                     _fmt(agent_ratio, ".2f"), _fmt(core_ratio, ".2f")))
    widths = [max(len(row[i]) for row in (cols, *rows)) for i in range(len(cols))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join([row[0].ljust(widths[0])]
                         + [row[i].rjust(widths[i]) for i in range(1, len(row))])

    return "\n".join([fmt(cols), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-V-v0", help="registered gymnasium id")
    p.add_argument("--models", nargs="+", default=None, metavar="LABEL=PATH",
                   help="saved models to load instead of training (mlp* labels: PPO)")
    p.add_argument("--policies", nargs="+", default=["grsn", "lstm"], choices=list(POLICIES),
                   help="policies to train when no --models are given")
    p.add_argument("--timesteps", type=int, default=5000, help="training steps per policy")
    p.add_argument("--hidden", type=int, default=64, help="units of every memory core")
    p.add_argument("--n-envs", type=int, default=4, help="parallel environments")
    p.add_argument("--steps", type=int, default=200,
                   help="rollout steps per environment used for the counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mac-pj", type=float, default=4.6, help="energy per MAC, pJ")
    p.add_argument("--ac-pj", type=float, default=0.9, help="energy per AC, pJ")
    p.add_argument("--activation-pj", type=float, default=0.0,
                   help="energy per activation-function evaluation, pJ")
    add_threads_option(p)
    p.add_argument("--details", action="store_true",
                   help="also print every model's full report (per scope breakdown)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("timesteps", "hidden", "n_envs", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.env not in policies.POMDP_ENV_IDS:
        import gymnasium as gym
        if args.env not in gym.registry:
            parser.error(f"--env {args.env!r} is not a registered gymnasium id")
    try:
        constants = EnergyConstants(args.mac_pj, args.ac_pj, args.activation_pj)
        models = parse_models(args.models) if args.models else None
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        parser.error(str(err))
    set_threads(args.threads)

    reports: dict[str, EnergyReport] = {}
    labels = list(models) if models else list(args.policies)
    for label in labels:
        env = policies.make_env(args.env, args.n_envs, args.seed)
        start = time.time()
        if models:
            model = load_model(label, models[label], env)
            how = f"loaded {models[label]}"
        else:
            model = train_model(label, env, args.timesteps, args.hidden, args.seed)
            how = f"trained {args.timesteps} steps"
        obs, starts = collect_observations(model, policies.make_env(
            args.env, args.n_envs, args.seed + 1000), args.steps)
        reports[label] = estimate_energy(model, obs, starts, constants)
        print(f"{label}: {how}, {obs.shape[0]} x {obs.shape[1]} rollout decisions, "
              f"episodes started: {int(starts.sum())} ({time.time() - start:.1f} s)")
        if args.details:
            print(reports[label], end="\n\n")
    print()
    print(f"Energy per decision on {args.env} ({constants.mac_pj:g} pJ/MAC, "
          f"{constants.ac_pj:g} pJ/AC, {constants.activation_pj:g} pJ/activation); "
          "MACs/ACs/neuron ops/activations of the deployed agent (actor path, critic not "
          "counted); core = recurrent memory alone")
    print(summary_table(reports))
    if "grsn" in reports and "lstm" in reports:
        g, l_ = reports["grsn"], reports["lstm"]
        print(f"\nGRSN / LSTM energy: agent {g.agent.energy_nj / l_.agent.energy_nj:.3f}, "
              f"core {g.core.energy_nj / l_.core.energy_nj:.3f}, "
              f"agent+critic {g.agent_with_critic.energy_nj / l_.agent_with_critic.energy_nj:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
