"""Optuna search spaces for RecurrentPPO, in RL Zoo's sampler format, and an equal-budget
tuning driver.

RL Zoo picks the sampler of a run from its ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``
table by ``--algo``; a user adds one by importing a module that sets an entry before the study
starts, and ``--gym-packages`` is RL Zoo's own way to import such a module. Importing this one
(and only this one) sets the ``ppo_lstm`` entry to :func:`sample_grsn_params`::

    python -m rl_zoo3.train --algo ppo_lstm --env CartPole-P-v0 --conf-file policies.zoo \
        --gym-packages policies policies.zoo_optuna -optimize --n-trials 20 -n 50000 \
        --study-name grsn-cartpole-p --storage sqlite:///grsn.db

Two samplers:

- :func:`sample_recurrent_ppo_params`: PPO's optimisation settings only (rollout length,
  minibatch, epochs, learning rate, entropy, discount, GAE, clipping, gradient clip), the same
  for any recurrent policy, over a range where one trial costs at most about 1.3x a run of the
  task table's settings (at most 10 epochs; RL Zoo's own RecurrentPPO sampler draws up to 20
  epochs over minibatches down to 4 steps, hours per trial here). The architecture stays the
  task's, so a GRSN study and an LSTM study at the same number of trials are an equal-budget
  comparison (:func:`tune`; ``examples/tune_ppo.py``).
- :func:`sample_grsn_params`: the same plus GRSN's own dimensions (neurons, gate biases, tau,
  surrogate slope), for tuning GRSN alone.

Needs the ``zoo`` extra (rl-zoo3, optuna).
"""
from __future__ import annotations

import time
from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
from spikingjelly.activation_based import surrogate

from . import training

__all__ = ["sample_grsn_params", "sample_recurrent_ppo_params", "tune"]


def sample_recurrent_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int,
                                additional_args: dict) -> dict[str, Any]:
    """RecurrentPPO's optimisation settings (no policy arguments): ``n_steps`` 64..1024,
    ``batch_size`` 64..512 (at most one rollout), ``n_epochs`` 4..10, ``learning_rate``
    1e-4..3e-3 (log), ``ent_coef`` 1e-4..0.03 (log), ``gamma`` 0.9..0.995, ``gae_lambda``
    0.9..0.98, ``clip_range`` 0.1..0.3, ``max_grad_norm`` 0.5..2. The signature is RL Zoo's
    (``n_actions``, ``additional_args`` unused); ``n_envs`` caps the minibatch."""
    n_steps = trial.suggest_categorical("n_steps", [64, 128, 256, 512, 1024])
    batch_size = trial.suggest_categorical("batch_size", [64, 128, 256, 512])
    return dict(
        n_steps=n_steps,
        batch_size=min(batch_size, n_steps * n_envs),
        n_epochs=trial.suggest_categorical("n_epochs", [4, 8, 10]),
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        ent_coef=trial.suggest_float("ent_coef", 1e-4, 0.03, log=True),
        gamma=trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995]),
        gae_lambda=trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.98]),
        clip_range=trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        max_grad_norm=trial.suggest_categorical("max_grad_norm", [0.5, 1.0, 2.0]),
    )


def sample_grsn_params(trial, n_actions: int, n_envs: int,
                       additional_args: dict) -> dict[str, Any]:
    """:func:`sample_recurrent_ppo_params` plus GRSN's own dimensions: neurons per layer, the
    input and forget gate biases at initialisation, the membrane time constant and the slope of
    the ATan surrogate gradient."""
    params = sample_recurrent_ppo_params(trial, n_actions, n_envs, additional_args)
    alpha = trial.suggest_float("surrogate_alpha", 0.5, 8.0, log=True)
    params.setdefault("policy_kwargs", {}).update(
        lstm_hidden_size=trial.suggest_categorical("lstm_hidden_size", [16, 32, 64, 128]),
        input_bias=trial.suggest_float("input_bias", 0.0, 2.0),
        forget_bias=trial.suggest_float("forget_bias", -1.0, 3.0),
        tau=trial.suggest_float("tau", 1.0, 8.0, log=True),  # GRSNPolicy: 1.0 since 0.11
        surrogate_function=surrogate.ATan(alpha=alpha),
    )
    return params


def tune(task: str, policy: str, n_trials: int, timesteps: int, seed: int = 100,
         storage: str | None = None, study_name: str | None = None,
         eval_episodes: int = 20) -> optuna.Study:
    """Tune ``policy``'s (a name of :data:`policies.training.POLICIES`, recurrent) PPO settings
    on a task of :mod:`policies.zoo` with :func:`sample_recurrent_ppo_params`: ``n_trials``
    trials, each a training of ``timesteps`` steps with the task's table on top of which the
    sample goes (architecture and policy defaults unchanged), all on the same ``seed`` (keep it
    apart from the seeds a result is reported on), scored by the mean return of
    ``eval_episodes`` deterministic episodes on 4 fresh env copies seeded ``seed + 10000`` (the
    evaluation of ``examples/quick_levers.py``). TPE sampler seeded ``seed`` with 5 random
    trials first, no pruning; ``storage`` / ``study_name``: Optuna's, to keep and resume a study
    (a resumed study runs ``n_trials`` more). Each trial records as user attributes the
    algorithm arguments it trained with (``hyperparams``: the sample, minibatch capped at one
    rollout), its sampled-action return and its seconds."""
    if policy not in training.RECURRENT_POLICIES:
        raise ValueError(f"tune() tunes RecurrentPPO policies, one of "
                         f"{sorted(training.RECURRENT_POLICIES)}; got {policy!r}")
    n_envs = training.task_config(task, False)["n_envs"]

    def objective(trial: optuna.Trial) -> float:
        t0 = time.time()
        hyperparams = sample_recurrent_ppo_params(trial, 0, n_envs, {})
        model = training.train_one(task, policy, seed, False, timesteps=timesteps,
                                   hyperparams=hyperparams).model
        det, sampled = training.evaluate_modes(
            model, lambda: training.frozen_normalization(
                model.get_vec_normalize_env(), training.make_task_env(task, 4, seed + 10_000)),
            eval_episodes)
        trial.set_user_attr("hyperparams", hyperparams)
        trial.set_user_attr("sampled", sampled)
        trial.set_user_attr("seconds", round(time.time() - t0, 1))
        return det

    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    study.optimize(objective, n_trials=n_trials)
    return study


HYPERPARAMS_SAMPLER["ppo_lstm"] = sample_grsn_params
