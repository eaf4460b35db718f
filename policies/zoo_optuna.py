"""GRSN's search dimensions for RL Zoo's Optuna tuning (``rl_zoo3.train ... -optimize``).

RL Zoo picks the sampler of a run from its ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``
table by ``--algo``; a user adds one by importing a module that sets an entry before the study
starts, and ``--gym-packages`` is RL Zoo's own way to import such a module. Importing this one
(and only this one) sets the ``ppo_lstm`` entry to :func:`sample_grsn_params`::

    python -m rl_zoo3.train --algo ppo_lstm --env CartPole-P-v0 --conf-file policies.zoo \\
        --gym-packages policies policies.zoo_optuna -optimize --n-trials 20 -n 50000 \\
        --study-name grsn-cartpole-p --storage sqlite:///grsn.db

The sampler is for ``GRSNPolicy`` (the options it adds are GRSN's); tune the LSTM without this
module. Needs the ``zoo`` extra (rl-zoo3, optuna).
"""
from __future__ import annotations

from typing import Any

from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER, sample_ppo_lstm_params
from spikingjelly.activation_based import surrogate

__all__ = ["sample_grsn_params"]


def sample_grsn_params(trial, n_actions: int, n_envs: int,
                       additional_args: dict) -> dict[str, Any]:
    """RL Zoo's RecurrentPPO sample (rollout, PPO and head settings) plus GRSN's own
    dimensions: neurons per layer, the input and forget gate biases at initialisation, the
    membrane time constant and the slope of the ATan surrogate gradient."""
    params = sample_ppo_lstm_params(trial, n_actions, n_envs, additional_args)
    alpha = trial.suggest_float("surrogate_alpha", 0.5, 8.0, log=True)
    params.setdefault("policy_kwargs", {}).update(
        lstm_hidden_size=trial.suggest_categorical("lstm_hidden_size", [16, 32, 64, 128]),
        input_bias=trial.suggest_float("input_bias", 0.0, 2.0),
        forget_bias=trial.suggest_float("forget_bias", -1.0, 3.0),
        tau=trial.suggest_float("tau", 1.5, 8.0, log=True),
        surrogate_function=surrogate.ATan(alpha=alpha),
    )
    return params


HYPERPARAMS_SAMPLER["ppo_lstm"] = sample_grsn_params
