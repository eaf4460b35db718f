"""Training machinery shared by the example command lines: building a model for a policy name
and a task's hyperparameters, the thread-count setter, and the run matrix of the reproduction
protocol (train, evaluate and measure one (task, policy, seed) into one CSV row; run many,
resuming from the CSV).

- :func:`build_model`: ``PPO`` / ``RecurrentPPO`` for a policy name of :data:`POLICIES` with a
  config of :mod:`policies.zoo` (or any dict in its shape).
- :func:`set_threads`: torch, numba (if installed) and the BLAS / OpenMP environment variables.
- :func:`parse_kwargs`: ``key=value`` strings of a command line into a dict of literals.
- :func:`train_one`, :func:`run_one`: one run of the protocol; :func:`run_team`: one
  parameter-shared run of a team task (win rate, centralised critic; ``examples/sweep_marl.py``);
  :func:`run_matrix`: many, as CSV
  rows, skipping the rows the CSV already holds (:func:`run_all` under it runs them in this
  process, or as Ray tasks on this machine or a Ray cluster: the extra ``sweep``).
- :class:`Diagnostic`, :func:`run_diagnostic`: the command line of a per-run study built on
  :func:`train_one` (``examples/eval_modes.py``, ``examples/probe_velocity.py``).
"""
from __future__ import annotations

import argparse
import ast
import csv
import functools
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from . import zoo
from .envs import make_env
from .marl import (
    PettingZooVecEnv,
    VecCentralState,
    evaluate_team,
    make_smax,
    make_speaker_listener,
    make_spread_po,
    team_episodes,
)
from .recurrent import _LSTM_ALIASES, GRSNPolicy, GRUPolicy, LIFPolicy, LSTMPolicy, NoTAPPolicy

__all__ = [
    "CRITICS", "CSV_FIELDS", "Diagnostic", "JobsFailed", "MARL_TASKS", "POLICIES", "POMDP_TASKS",
    "RECURRENT_POLICIES", "TASK_KWARGS", "Trained", "add_sweep_options", "add_threads_option",
    "append_row", "budget_conflict", "build_model", "check_csv_header", "check_hyperparams",
    "check_sweep_options", "energy_of", "energy_on", "evaluate_modes", "load_rows",
    "frozen_normalization", "make_task_env", "needs_ray", "normalize_env", "parse_kwargs",
    "positive_int", "run_all", "run_diagnostic", "run_matrix", "run_jobs",
    "run_one", "run_team", "set_threads", "smooth_curve", "TEAM_CSV_FIELDS", "task_config",
    "task_env_kwargs", "team_curve_path", "train_one",
]

#: policy name -> (algorithm, policy): the names every command line accepts
POLICIES: dict[str, tuple[type[BaseAlgorithm], Any]] = {
    "grsn": (RecurrentPPO, GRSNPolicy),
    "lif": (RecurrentPPO, LIFPolicy),        # LIF neurons under TAP
    "notap": (RecurrentPPO, NoTAPPolicy),    # spiking without TAP
    "lstm": (RecurrentPPO, LSTMPolicy),     # sb3-contrib's MlpLstmPolicy (+ centralised_critic)
    "gru": (RecurrentPPO, GRUPolicy),        # the paper's RNN
    "mlp": (PPO, "MlpPolicy"),               # no memory
}
#: the names of :data:`POLICIES` that RecurrentPPO trains (every one with a memory core)
RECURRENT_POLICIES = [name for name, (algo, _) in POLICIES.items() if algo is RecurrentPPO]

#: the reproduction protocol's tasks: the POMDP suite and the parameter-shared spread-PO
POMDP_TASKS = ["CartPole-P-v0", "CartPole-V-v0", "Pendulum-P-v0", "Pendulum-V-v0",
               "LunarLander-P-v0", "LunarLander-V-v0", "CueRecall-v0"]
MARL_TASKS = ["spread-PO"]
#: gymnasium.make arguments of a protocol task (CueRecall with a 15-step gap)
TASK_KWARGS = {"CueRecall-v0": dict(gap=15)}
#: the columns of the protocol's CSV (one row per (task, policy, seed))
CSV_FIELDS = ["task", "policy", "seed", "timesteps", "eval_return", "eval_std",
              "eval_return_sampled", "steps_per_s", "firing_rate", "energy_agent_nj",
              "energy_core_nj", "macs_agent", "acs_agent", "normalize"]

#: PettingZoo task name -> PettingZooVecEnv arguments
_MARL_ENVS = {
    "spread-PO": dict(env_fn=make_spread_po, agent_id=False),
    "speaker-listener": dict(env_fn=make_speaker_listener, agent_id=True),
    # SMAX (JaxMARL; pip install 'grsn_sj[smax]'): SMAC-like maps, one agent per allied unit
    "smax-2s3z": dict(env_fn=functools.partial(make_smax, "2s3z"), agent_id=False),
    "smax-3s_vs_5z": dict(env_fn=functools.partial(make_smax, "3s_vs_5z"), agent_id=False),
    "smax-8m": dict(env_fn=functools.partial(make_smax, "8m"), agent_id=False),
}


# ------------------------------------------------------------------------------ building

def build_model(policy_name: str, env, cfg: dict, seed: int, device: str = "auto",
                tensorboard_log: str | None = None, policy_kwargs: dict | None = None,
                verbose: int = 0) -> BaseAlgorithm:
    """The model for ``policy_name`` (a key of :data:`POLICIES`) on ``env`` with the
    hyperparameters ``cfg`` (an entry of :mod:`policies.zoo`, e.g. ``zoo.config_for(task)``).

    Every key of ``cfg`` but :data:`policies.zoo.RUN_KEYS` and ``policy_kwargs`` is passed to
    the algorithm's constructor. ``cfg["policy_kwargs"]`` go to every policy, ``policy_kwargs``
    on top (a caller's ``grsn_hidden_size`` replaces the table's ``lstm_hidden_size``, its
    alias). The ``mlp`` baseline has no memory core: it gets two hidden layers of the table's
    ``lstm_hidden_size`` in place of the core and head (unless the caller gives ``net_arch``).
    """
    if policy_name not in POLICIES:
        raise ValueError(f"unknown policy {policy_name!r}; choose one of {sorted(POLICIES)}")
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be a dict of hyperparameters (e.g. policies.zoo.config_for"
                        f"('CartPole-P-v0')), got {type(cfg).__name__}")
    algo, policy = POLICIES[policy_name]
    caller = dict(policy_kwargs or {})
    kw = dict(cfg.get("policy_kwargs") or {})
    for alias, key in _LSTM_ALIASES.items():
        if key in caller:  # the caller's spelling of an option replaces the table's alias
            kw.pop(alias, None)
    kw.update(caller)
    if algo is PPO:
        hidden = kw.pop("lstm_hidden_size", None)
        if "net_arch" not in caller and hidden is not None:
            kw["net_arch"] = [hidden, hidden]
    algo_kwargs = {k: v for k, v in cfg.items() if k not in zoo.RUN_KEYS + ("policy_kwargs",)}
    return algo(policy, env, policy_kwargs=kw, seed=seed, device=device,
                tensorboard_log=tensorboard_log, verbose=verbose, **algo_kwargs)


def task_env_kwargs(task: str, env_kwargs: dict | None = None) -> dict:
    """The ``gymnasium.make`` arguments of a protocol task: :data:`TASK_KWARGS`'s, with
    ``env_kwargs`` on top (``{}`` for a task without any)."""
    return {**TASK_KWARGS.get(task, {}), **(env_kwargs or {})}


def make_task_env(task: str, n: int, seed: int, centralised_critic: bool = False,
                  central_state: str = "joint_obs", **env_kwargs):
    """The VecEnv of a task: ``n`` Monitor-wrapped copies of a gymnasium id
    (:func:`policies.make_env`) made with :func:`task_env_kwargs` (so ``CueRecall-v0`` has the
    protocol's 15-step gap unless ``env_kwargs`` say otherwise), or for a PettingZoo task of
    ``_MARL_ENVS`` a :class:`policies.PettingZooVecEnv` of ``n`` copies (one row per agent), seeded;
    ``centralised_critic``: wrapped in :class:`policies.marl.VecCentralState` with
    ``state=central_state`` (the observations a policy with ``centralised_critic=True`` reads;
    PettingZoo tasks only; ``"env"``: the env's own global state, e.g. SMAX's world state)."""
    if central_state != "joint_obs" and not centralised_critic:
        raise ValueError(f"central_state={central_state!r} is what a centralised critic reads: "
                         f"pass centralised_critic=True too")
    if task in _MARL_ENVS:
        if env_kwargs:
            raise ValueError(f"env_kwargs are supported for the gymnasium tasks only, got "
                             f"{env_kwargs!r} for {task!r}")
        spec = _MARL_ENVS[task]
        env_state = centralised_critic and central_state == "env"
        venv = PettingZooVecEnv(spec["env_fn"], n, agent_id=spec["agent_id"],
                                env_state=env_state)
        venv.seed(seed)
        return VecCentralState(venv, central_state) if centralised_critic else venv
    if centralised_critic:
        raise ValueError(f"centralised_critic needs a multi-agent task (one of "
                         f"{sorted(_MARL_ENVS)}), got {task!r}")
    return make_env(task, n, seed, **task_env_kwargs(task, env_kwargs))


def normalize_env(env: VecEnv, cfg: dict) -> VecEnv:
    """``env`` as RL Zoo's ``normalize`` key of ``cfg`` asks: unchanged when it is absent or
    false; ``True``: a ``VecNormalize`` of observations and rewards whose reward statistics use
    ``cfg``'s ``gamma`` (rl_zoo3 passes the algorithm's ``gamma`` the same way); a dict:
    ``VecNormalize``'s arguments (with that ``gamma`` unless it gives one).

    :raises TypeError: ``normalize`` is neither a bool nor a dict.
    """
    normalize = cfg.get("normalize", False)
    if normalize is False:
        return env
    if normalize is True:
        normalize = {}
    if not isinstance(normalize, dict):
        raise TypeError(f"the config's normalize must be True, False or a dict of VecNormalize "
                        f"arguments (RL Zoo's normalize key), got {normalize!r}")
    return VecNormalize(env, **{"gamma": cfg.get("gamma", 0.99), **normalize})


def frozen_normalization(train_env: VecEnv | None, env: VecEnv) -> VecEnv:
    """``env`` seen as a policy trained on ``train_env`` sees it: when ``train_env`` is a
    ``VecNormalize`` (:func:`normalize_env`; a trained model's ``get_vec_normalize_env()``),
    ``env`` wrapped in one that normalises observations with a copy of its statistics, frozen
    (``training=False``), and returns raw rewards, so evaluation reports the task's own returns
    (RL Zoo evaluates so); else (``None`` or another VecEnv) ``env`` itself."""
    if not isinstance(train_env, VecNormalize):
        return env
    frozen = VecNormalize(env, training=False, norm_obs=train_env.norm_obs, norm_reward=False,
                          clip_obs=train_env.clip_obs, epsilon=train_env.epsilon)
    frozen.obs_rms = train_env.obs_rms.copy()
    return frozen


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in this process: numba's parallel kernels (if numba is installed;
    at most the pool size numba starts with) and torch's intra-op pool; and, through
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``, the processes started
    after this call. ``NUMBA_NUM_THREADS`` is left alone: numba re-reads it at every compilation
    and refuses a value other than the size of the pool it has launched."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"the thread count must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"the thread count must be >= 1, got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import numba
    except ImportError:
        numba = None
    if numba is not None:  # first: starting numba's OpenMP layer resets OpenMP's thread count
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (default 1) on a training command line; the command passes
    ``args.threads`` to :func:`set_threads` (and to :func:`run_matrix` for its Ray tasks)."""
    parser.add_argument(
        "--threads", type=positive_int, default=1,
        help="CPU threads per training process for torch, numba and BLAS (default 1: several "
             "threads per training oversubscribe a small or shared machine, up to 9x slower)")


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """``--jobs N`` and ``--address`` on a command line that runs many trainings through
    :func:`run_matrix`; after parsing, :func:`check_sweep_options` refuses them without Ray."""
    parser.add_argument(
        "--jobs", type=positive_int, default=None,
        help="runs at a time, each a Ray task of --threads CPUs (needs pip install -e "
             "'.[sweep]'); default: 1, in this process, or with --address as many as the "
             "cluster has CPUs for")
    parser.add_argument(
        "--address", default=None,
        help="run on this Ray cluster (auto: the one this machine is a node of; or "
             "HEAD_IP:6379) instead of a local Ray; the CSV is written here, what a run writes "
             "itself (reproduce's curves) on its node: give an --out every node shares")


def check_sweep_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser.error`` when ``args.jobs`` / ``args.address`` need Ray and it is
    not installed (the message names ``pip install -e '.[sweep]'``)."""
    try:
        needs_ray(args.jobs, args.address)
    except ImportError as err:
        parser.error(str(err))


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (steps, envs, episodes, jobs): an int >= 1, else an
    argparse error (exit 2) quoting what was passed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    """An argparse ``type``: one ``KEY=VALUE`` through :func:`parse_kwargs` (an argparse error,
    exit 2, when malformed)."""
    try:
        return next(iter(parse_kwargs([text]).items()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _KwargsAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, dict(values))


def add_kwargs_option(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """``flag KEY=VALUE ...`` on a command line, parsed (:func:`parse_kwargs`) into a dict at
    parse time, so a malformed item is an argparse error (exit 2) quoting it; default ``{}``."""
    parser.add_argument(flag, nargs="*", type=_key_value, action=_KwargsAction, default={},
                        metavar="KEY=VALUE", help=help)


def parse_kwargs(items: Sequence[str]) -> dict:
    """``["forget_bias=2.0", "readout=spikes+obs"]`` -> ``{"forget_bias": 2.0, ...}`` (values
    are Python literals where they parse as one, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value (e.g. forget_bias=2.0), got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


# ------------------------------------------------------------------------------ one run

class CurveCallback(BaseCallback):
    """Collects (timestep, episode return) pairs during training: Monitor's per-episode infos,
    or for the MARL adapter the team return of each finished copy-episode."""

    def __init__(self, marl: bool):
        super().__init__()
        self.marl = marl
        self.points: list[tuple[int, float]] = []
        #: (timestep, 1.0 won / 0.0 not) per team episode whose env reports a win flag (SMAX)
        self.wins: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        if self.marl:
            for team in team_episodes(infos):
                self.points.append((self.num_timesteps, float(team["r"])))
                if "win" in team:
                    self.wins.append((self.num_timesteps, float(team["win"])))
        else:
            for info in infos:
                if "episode" in info:
                    self.points.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def task_config(task: str, quick: bool, timesteps: int | None = None,
                hyperparams: dict | None = None, normalize: bool | None = None) -> dict:
    """The task's hyperparameters (:func:`policies.zoo.config_for`), with ``hyperparams``
    (algorithm arguments, e.g. ``{"learning_rate": 3e-4}``: RL Zoo's ``--hyperparams``) on top,
    shrunk for ``quick``; ``timesteps`` replaces the budget; ``normalize`` (``None``: the
    table's) replaces RL Zoo's ``normalize`` key (:func:`normalize_env`)."""
    cfg = zoo.config_for(task)
    cfg.update(check_hyperparams(hyperparams))
    if normalize is not None:
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True (VecNormalize of observations and rewards, "
                            f"RL Zoo's normalize: true), False or None (the table's), got "
                            f"{normalize!r}")
        cfg["normalize"] = normalize
    if quick:
        if _is_marl(task):
            cfg.update(n_timesteps=3000, n_copies=2, n_steps=64, batch_size=128)
        else:
            cfg.update(n_timesteps=2048, n_envs=4, n_steps=64, batch_size=128)
    if timesteps is not None:
        cfg["n_timesteps"] = timesteps
    return cfg


def check_hyperparams(hyperparams: dict | None) -> dict:
    """``hyperparams`` (``None``: none) as a dict of algorithm arguments; a run key
    (:data:`policies.zoo.RUN_KEYS`) or ``policy_kwargs`` in it is a ValueError naming where it
    goes instead."""
    if hyperparams is None:
        return {}
    if not isinstance(hyperparams, dict):
        raise TypeError(f"hyperparams must be a dict of algorithm arguments (e.g. "
                        f"{{'learning_rate': 3e-4}}), got {hyperparams!r}")
    misplaced = sorted(set(hyperparams) & set(zoo.RUN_KEYS + ("policy_kwargs",)))
    if misplaced:
        raise ValueError(f"hyperparams are the algorithm's arguments; {misplaced} are not (pass "
                         f"policy_kwargs as policy_kwargs, the budget as timesteps, "
                         f"normalize as normalize), got "
                         f"{hyperparams!r}")
    return dict(hyperparams)


def _n_env_copies(cfg: dict) -> int:
    return cfg["n_copies"] if "n_copies" in cfg else cfg["n_envs"]


#: what a centralised critic reads besides the agent's observation (``"none"``: no such critic)
CRITICS = ("none", "joint_obs", "env")


def _central(critic: str) -> dict:
    """:func:`make_task_env`'s arguments for a ``critic`` of :data:`CRITICS` (``{}``: none)."""
    if critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
    return {} if critic == "none" else dict(centralised_critic=True, central_state=critic)


def _is_marl(task: str) -> bool:
    """Whether ``task`` is a PettingZoo task (one VecEnv row per agent, team returns)."""
    return task in _MARL_ENVS


class Trained(NamedTuple):
    """What :func:`train_one` returns: the trained model, the task's config, the training
    episodes' ``(timestep, return)`` points, the training speed, the env arguments used, and
    the training team episodes' ``(timestep, won)`` points (empty without a win flag)."""

    model: Any
    cfg: dict
    curve: list
    steps_per_s: float
    env_kwargs: dict
    wins: list


def train_one(task: str, policy: str, seed: int, quick: bool,
              policy_kwargs: dict | None = None, env_kwargs: dict | None = None,
              timesteps: int | None = None, critic: str = "none",
              hyperparams: dict | None = None, normalize: bool | None = None) -> Trained:
    """Train one (task, policy, seed) with the table's config; ``policy_kwargs`` /
    ``env_kwargs`` (POMDP tasks only) and ``hyperparams`` (algorithm arguments,
    :func:`task_config`) change it, ``timesteps`` replaces the budget;
    ``critic`` (one of :data:`CRITICS`; not ``"none"``: PettingZoo tasks, recurrent policies):
    the policy gets a training-only critic that also reads the copy's joint observation
    (``"joint_obs"``) or the env's global state (``"env"``;
    :class:`policies.marl.VecCentralState`); ``normalize`` (``None``: the table's,
    :func:`task_config`): train on a ``VecNormalize`` of observations and rewards
    (:func:`normalize_env`; POMDP tasks only), which the returned model's
    ``get_vec_normalize_env()`` holds for evaluation (:func:`frozen_normalization`)."""
    marl = _is_marl(task)
    if marl and (policy_kwargs or env_kwargs):
        raise ValueError("policy_kwargs / env_kwargs are supported for the POMDP tasks only")
    central = _central(critic)
    if central and policy not in RECURRENT_POLICIES:
        raise ValueError(f"a centralised critic is an option of the recurrent policies, not of "
                         f"{policy!r}")
    env_kwargs = task_env_kwargs(task, env_kwargs)
    cfg = task_config(task, quick, timesteps, hyperparams, normalize)
    if marl and cfg.get("normalize", False) is not False:
        raise ValueError(f"normalize (VecNormalize) is supported for the POMDP tasks only, got "
                         f"normalize={cfg['normalize']!r} for {task!r}")
    torch.manual_seed(seed)
    env = normalize_env(make_task_env(task, _n_env_copies(cfg), seed, **central, **env_kwargs),
                        cfg)
    if central:
        policy_kwargs = dict(centralised_critic=True)
    model = build_model(policy, env, cfg, seed, "cpu", policy_kwargs=policy_kwargs)
    curve = CurveCallback(marl)
    t0 = time.time()
    model.learn(cfg["n_timesteps"], callback=curve)
    # learn() runs whole rollouts: model.num_timesteps is what ran (>= the budget)
    sps = model.num_timesteps / (time.time() - t0)
    env.close()
    return Trained(model, cfg, curve.points, sps, env_kwargs, curve.wins)


def energy_of(model, task: str, seed: int, env_kwargs: dict, critic: str = "none") -> dict:
    """Energy per decision (of the deployed actor) from real rollout observations of the
    trained model on fresh copies of ``task`` seeded ``seed + 20000``; ``critic`` as the model
    was trained (:func:`train_one`); observations normalised as in training
    (:func:`frozen_normalization`)."""
    env = make_task_env(task, 2 if _is_marl(task) else 4, seed + 20_000, **_central(critic),
                        **env_kwargs)
    return energy_on(model, frozen_normalization(model.get_vec_normalize_env(), env))


def energy_on(model, env) -> dict:
    """Energy per decision of ``model``'s deployed actor, counted on 128 steps it runs in
    ``env`` (a VecEnv, closed after): ``energy_agent_nj``, ``energy_core_nj`` (0 for a policy
    without a memory core), ``macs_agent``, ``acs_agent``."""
    from . import energy

    obs, starts = energy.collect_observations(model, env, n_steps=128)
    report = energy.estimate_energy(model.policy, obs, starts)
    env.close()
    core = report.core.energy_nj if report.core is not None else 0.0  # MLP: no memory core
    return dict(energy_agent_nj=round(report.agent.energy_nj, 4), energy_core_nj=round(core, 4),
                macs_agent=round(report.agent.macs, 1), acs_agent=round(report.agent.acs, 1))


def evaluate_modes(model, make_eval_env: Callable[[], Any], n_episodes: int,
                   evaluate: Callable[[Any, int, bool], Any] | None = None) -> tuple[Any, Any]:
    """The two-mode evaluation of every runner here (``examples/quick_levers.py``,
    ``examples/reproduce.py`` through :func:`run_one`, the tuning studies): ``n_episodes`` with
    deterministic actions, then ``n_episodes`` with sampled ones, each mode on a fresh env from
    ``make_eval_env`` (closed after). Returns ``(deterministic, sampled)``, each what
    ``evaluate(env, n_episodes, deterministic)`` returns; by default the mean return of SB3's
    ``evaluate_policy``."""
    if evaluate is None:
        def evaluate(env, n, deterministic):
            return float(evaluate_policy(model, env, n_eval_episodes=n,
                                         deterministic=deterministic)[0])
    results = []
    for deterministic in (True, False):
        env = make_eval_env()
        try:
            results.append(evaluate(env, n_episodes, deterministic))
        finally:
            env.close()
    return results[0], results[1]


def _evaluate(model, env, evaluate: Callable[[Any], Any]) -> tuple[Any, float]:
    """``evaluate(env)`` for a trained ``model``: returns its result and the spiking readout's
    firing rate over that evaluation (NaN for a policy without spiking cores)."""
    spiking = hasattr(model.policy, "cores")
    if spiking:
        model.policy.lstm_actor.reset_firing_stats()
    result = evaluate(env)
    return result, model.policy.lstm_actor.firing_rate() if spiking else float("nan")


def run_one(task: str, policy: str, seed: int, quick: bool, out: str,
            policy_kwargs: dict | None = None, env_kwargs: dict | None = None,
            name: str | None = None, timesteps: int | None = None,
            normalize: bool | None = None) -> dict:
    """Train (:func:`train_one`), evaluate and measure one (task, policy, seed); returns its
    CSV row (:data:`CSV_FIELDS`) and writes its learning curve to
    ``<out>/curves/<task>_<name or policy>_<seed>.json``.

    Evaluation: 20 episodes (100 team episodes on a PettingZoo task; 5 / 10 with ``quick``) with
    deterministic actions (``eval_return``, ``eval_std``, and the readout's firing rate) and as
    many with sampled actions (``eval_return_sampled``), each on a fresh copy of the evaluation
    env seeded ``seed + 10000`` (:func:`evaluate_modes`'s protocol).

    ``policy_kwargs`` / ``env_kwargs`` (POMDP tasks only) change the configuration, as
    ``examples/levers.py`` does; ``timesteps`` replaces the table's budget; ``normalize``
    (``None``: the table's): ``True`` trains under RL Zoo's ``normalize: true``
    (:func:`normalize_env`; POMDP tasks), then evaluation and the energy count see observations
    normalised with the training statistics, frozen, and raw rewards
    (:func:`frozen_normalization`); the row's ``normalize`` column records it.
    """
    marl = _is_marl(task)
    model, cfg, points, sps, env_kwargs, _ = train_one(task, policy, seed, quick, policy_kwargs,
                                                       env_kwargs, timesteps, normalize=normalize)
    n_episodes = (10 if quick else 100) if marl else (5 if quick else 20)

    def evaluate(env, n: int, deterministic: bool):  # (mean, std), firing rate
        if marl:
            return _evaluate(model, env, lambda e: evaluate_team(
                model, e, n, deterministic=deterministic)[:2])
        return _evaluate(model, env, lambda e: evaluate_policy(
            model, e, n_eval_episodes=n, deterministic=deterministic))

    # each mode on a fresh copy of the same evaluation env; the firing rate of the deployed actor
    ((mean, std), rate), ((sampled, _), _) = evaluate_modes(
        model, lambda: frozen_normalization(model.get_vec_normalize_env(), make_task_env(
            task, _n_env_copies(cfg) if marl else 4, seed + 10_000, **env_kwargs)),
        n_episodes, evaluate)
    row = dict(task=task, policy=policy, seed=seed, timesteps=cfg["n_timesteps"],
               eval_return=round(float(mean), 3), eval_std=round(float(std), 3),
               eval_return_sampled=round(float(sampled), 3),
               steps_per_s=round(sps, 1), firing_rate=round(rate, 4),
               normalize=cfg.get("normalize", False))
    row.update(energy_of(model, task, seed, env_kwargs))
    os.makedirs(os.path.join(out, "curves"), exist_ok=True)
    with open(os.path.join(out, "curves", f"{task}_{name or policy}_{seed}.json"), "w") as f:
        json.dump(points, f)
    return row


#: the columns of a team-task sweep's CSV (:func:`run_team`; ``examples/sweep_marl.py``)
TEAM_CSV_FIELDS = ["task", "policy", "critic", "seed", "timesteps", "eval_episodes",
                   "eval_return", "eval_std", "win_rate", "steps_per_s", "firing_rate",
                   "energy_agent_nj", "energy_core_nj", "macs_agent", "acs_agent"]


def team_curve_path(out: str, task: str, policy: str, critic: str, seed: int) -> str:
    """Where :func:`run_team` writes a run's learning curve (JSON ``{"return": [[t, r], ...],
    "win": [[t, won], ...]}``)."""
    name = f"{task}_{policy}{'' if critic == 'none' else '_critic-' + critic}_{seed}.json"
    return os.path.join(out, "curves", name)


def run_team(task: str, policy: str, seed: int, out: str, critic: str = "none",
             timesteps: int | None = None, eval_episodes: int = 32,
             quick: bool = False) -> dict:
    """Train, evaluate and measure one parameter-shared run of a PettingZoo task (spread-PO,
    the SMAX maps, ...); returns its CSV row (:data:`TEAM_CSV_FIELDS`) and writes its learning
    curve (:func:`team_curve_path`).

    ``critic``: ``"none"``, or train with a centralised critic that also reads ``"joint_obs"``
    or ``"env"`` (:func:`train_one`; recurrent policies only). The evaluation plays
    ``eval_episodes`` team episodes with deterministic actions on copies seeded ``seed + 10_000``
    (:func:`policies.marl.evaluate_team`): the mean and std of the team return, and the win
    rate where the env reports a win flag (empty otherwise). Energy per decision is the
    deployed actor's (:func:`energy_of`), the same with or without the critic.
    """
    if not _is_marl(task):
        raise ValueError(f"run_team runs the PettingZoo tasks {sorted(_MARL_ENVS)}, got {task!r}; "
                         f"for a gymnasium task use run_one")
    model, cfg, points, sps, env_kwargs, wins = train_one(
        task, policy, seed, quick, timesteps=timesteps, critic=critic)
    eval_env = make_task_env(task, _n_env_copies(cfg), seed + 10_000, **_central(critic))
    try:
        result, rate = _evaluate(model, eval_env,
                                 lambda env: evaluate_team(model, env, eval_episodes))
    finally:
        eval_env.close()
    row = dict(task=task, policy=policy, critic=critic, seed=seed,
               timesteps=cfg["n_timesteps"], eval_episodes=len(result.episodes),
               eval_return=round(float(result.mean), 3), eval_std=round(float(result.std), 3),
               win_rate="" if result.win_rate is None else round(result.win_rate, 4),
               steps_per_s=round(sps, 1), firing_rate=round(rate, 4))
    row.update(energy_of(model, task, seed, env_kwargs, critic))
    path = team_curve_path(out, task, policy, critic, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"return": points, "win": wins}, f)
    return row


def smooth_curve(points: Sequence[Sequence[float]], grid: Any) -> Any:
    """A learning curve's ``(timestep, value)`` points as a moving average over about a
    twentieth of them (over the samples that exist: no zero padding at the edges), read off at
    the timesteps ``grid`` (a numpy array): what the sweeps' learning-curve plots draw."""
    c = np.asarray(points, dtype=float)
    k = max(1, len(c) // 20)
    window = np.ones(k)
    avg = np.convolve(c[:, 1], window, mode="same") / np.convolve(np.ones(len(c)), window,
                                                                  mode="same")
    return np.interp(grid, c[:, 0], avg)


# ------------------------------------------------------------------------------ many runs

class JobsFailed(RuntimeError):
    """Raised by :func:`run_all` (and so :func:`run_matrix`) after every other job has run when
    some jobs raised: ``failures`` holds ``(job, error text)`` per failed job, and the message
    names each job's arguments. The rows of the jobs that finished were yielded (and appended to
    the CSV by :func:`run_matrix`) before it is raised."""

    def __init__(self, failures: list[tuple[dict, str]]):
        self.failures = failures
        lines = [f"{len(failures)} job(s) failed; the other jobs' rows were kept:"]
        for job, error in failures:
            lines += [f"--- job {job!r}:", error.rstrip()]
        super().__init__("\n".join(lines))


def needs_ray(n_parallel: int | None, address: str | None) -> bool:
    """Whether :func:`run_all` runs its jobs as Ray tasks: more than one at a time, or on the
    cluster at ``address``; else one after the other in this process. Raises ``ImportError``
    naming the extra to install when Ray is needed and not installed, ``ValueError`` for a bad
    ``n_parallel``."""
    if n_parallel is not None and (isinstance(n_parallel, bool) or not isinstance(n_parallel, int)
                                   or n_parallel < 1):
        raise ValueError(f"n_parallel must be an int >= 1 or None, got {n_parallel!r}")
    if not (address or (n_parallel or 1) > 1):
        return False
    try:
        import ray  # noqa: F401
    except ImportError:
        what = f"the Ray cluster at {address!r}" if address else f"{n_parallel} jobs at a time"
        raise ImportError(f"{what} needs Ray, which is not installed: "
                          "pip install -e '.[sweep]'") from None
    return True


def _timed_run(fn: Callable[..., dict], job: dict, threads: int | None = None
               ) -> tuple[dict, float]:
    """``(fn(**job), seconds)``; with ``threads``, :func:`set_threads` first (a Ray task)."""
    # numba's parallel kernels spin their worker threads; several processes that each keep
    # numba's default thread count on a shared CPU ran 12x slower in this project's runs
    if threads is not None:
        set_threads(threads)
    t0 = time.time()
    row = fn(**job)
    return row, time.time() - t0


def _ray_runs(jobs: list[dict], n_parallel: int | None, fn: Callable[..., dict], threads: int,
              address: str | None) -> Iterator[tuple[dict, dict | None, float | str]]:
    """``(job, row, seconds)`` per finished job and ``(job, None, error text)`` per failed one,
    as they finish, from Ray tasks of ``threads`` CPUs and threads each."""
    if not jobs:  # all done already (a resumed sweep): no Ray to start
        return
    import ray

    started = not ray.is_initialized()
    if started:  # a caller's own ray.init() (e.g. a notebook's) is used as it is
        if address:
            ray.init(address=address)
        else:  # a local Ray of n_parallel slots of `threads` CPUs each
            ray.init(num_cpus=n_parallel * threads, include_dashboard=False)
    task = ray.remote(num_cpus=threads, max_retries=0)(_timed_run)
    limit = n_parallel if n_parallel is not None else len(jobs)  # a cluster: all at once
    todo, running = list(jobs), {}
    try:
        while todo or running:
            while todo and len(running) < limit:
                job = todo.pop(0)
                running[task.remote(fn, job, threads)] = job
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ref)
            try:
                row, secs = ray.get(ref)
            except Exception as err:  # the task raised (RayTaskError: with its traceback) or died
                yield job, None, str(err)
            else:
                yield job, row, secs
    finally:
        for ref in running:  # stopped early (an error in the caller's loop, Ctrl-C)
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def run_all(jobs: list[dict], n_parallel: int | None = 1, fn: Callable[..., dict] = run_one,
            threads: int = 1, address: str | None = None
            ) -> Iterator[tuple[dict, dict, float]]:
    """Yield ``(job, row, seconds)`` for every ``row = fn(**job)`` (default :func:`run_one`).

    With ``n_parallel`` 1 (or ``None``) and no ``address``: in this process, in order, with the
    threads the caller set. Else as Ray tasks of ``threads`` CPUs and threads each
    (:func:`set_threads` in the task), yielded as they finish: without ``address`` on a local
    Ray of ``n_parallel`` such slots (``pip install -e '.[sweep]'``), with ``address`` on that
    Ray cluster (``"auto"``, ``"HEAD_IP:6379"``), ``n_parallel`` at a time or, with ``None``,
    as many as the cluster has CPUs for. A caller that has called ``ray.init()`` itself gets its
    own Ray used. ``fn`` must be importable or picklable by value (cloudpickle) for the tasks.

    A job that raises does not stop the others: its error is printed when it happens, and
    :class:`JobsFailed`, naming every failed job's arguments, is raised after the last job."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if needs_ray(n_parallel, address):
        results = _ray_runs(jobs, n_parallel, fn, threads, address)
    else:
        results = _in_process(jobs, fn)
    failures = []
    try:
        for job, row, secs in results:
            if row is None:
                print(f"job {job!r} failed: {secs.strip().splitlines()[-1]}", file=sys.stderr,
                      flush=True)
                failures.append((job, secs))
            else:
                yield job, row, secs
    finally:  # the caller stopped early: Ray's tasks are cancelled and a local Ray shut down
        results.close()
    if failures:
        raise JobsFailed(failures)


def _in_process(jobs: list[dict], fn: Callable[..., dict]
                ) -> Iterator[tuple[dict, dict | None, float | str]]:
    for job in jobs:
        try:
            row, secs = _timed_run(fn, job)
        except Exception:
            yield job, None, traceback.format_exc()
        else:
            yield job, row, secs


def load_rows(path: str) -> list[dict]:
    """The rows of the CSV at ``path`` (``[]`` if there is no file yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def check_csv_header(path: str, fields: Sequence[str]) -> bool:
    """Whether the CSV at ``path`` has its header already (``False``: no file, or an empty one).

    :raises ValueError: the header is not ``fields`` (a CSV written by another version of the
        runner, whose columns would shift under new rows).
    """
    if not os.path.exists(path):
        return False
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if header is not None and header != list(fields):
        raise ValueError(f"{path} has the columns {header}, this runner writes {list(fields)}: "
                         "write to a new output folder (--out), or give the file those columns")
    return header is not None


def append_row(path: str, row: dict, fields: list[str]) -> None:
    """Append one row to the CSV at ``path`` (header first if the file has none yet;
    :func:`check_csv_header`'s ``ValueError`` if it has another)."""
    has_header = check_csv_header(path, fields)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if not has_header:
            w.writeheader()
        w.writerow(row)


def run_matrix(path: str, jobs: list[dict], fields: list[str], key: Sequence[str],
               fn: Callable[..., dict] = run_one, n_parallel: int | None = 1, threads: int = 1,
               address: str | None = None) -> Iterator[tuple[dict, dict, float]]:
    """Run the ``jobs`` (keyword dicts of ``fn``) that the CSV at ``path`` does not hold yet and
    append each finished ``row = fn(**job)`` to it (columns ``fields``) as it finishes, yielding
    ``(job, row, seconds)`` as :func:`run_all` does (in this process or as Ray tasks; failed
    jobs: :class:`JobsFailed` at the end, the finished rows already in the CSV).

    A job is done when a row of the CSV has the same values (compared as text) under the
    ``key`` names, which every job and every row must have: the CSV is the resume point."""
    missing = [k for k in key if k not in fields]
    if missing:
        raise ValueError(f"key {list(key)!r} names columns {missing} that are not in the CSV's "
                         f"fields {fields}")
    check_csv_header(path, fields)  # before any training: a mismatch would fail after the first
    done = {tuple(str(r[k]) for k in key) for r in load_rows(path)}
    pending = [job for job in jobs if tuple(str(job[k]) for k in key) not in done]
    for job, row, secs in run_all(pending, n_parallel, fn, threads, address):
        append_row(path, row, fields)
        yield job, row, secs


def run_jobs(path: str, jobs: list[dict], fields: list[str], key: Sequence[str],
             fn: Callable[..., dict], args: argparse.Namespace,
             describe: Callable[[dict], str]) -> JobsFailed | None:
    """A sweep command line's run loop: :func:`run_matrix` with the command's ``--jobs``,
    ``--threads`` and ``--address`` (``args``), printing ``describe(row)`` and the run's seconds
    as each run finishes and the wall time at the end. Returns the :class:`JobsFailed` of the
    runs that failed (their message for the end of the command, which then exits 1), or
    ``None``; the finished runs' rows are in the CSV either way."""
    t_start = time.time()
    failed = None
    try:
        for _, row, secs in run_matrix(path, jobs, fields, key, fn=fn, n_parallel=args.jobs,
                                       threads=args.threads, address=args.address):
            print(f"{describe(row)} ({secs:.0f} s)", flush=True)
    except JobsFailed as err:
        failed = err
    print(f"wall time {time.time() - t_start:.0f} s")
    return failed


def budget_conflict(rows: list[dict], path: str, task: str, quick: bool,
                    timesteps: int | None, normalize: bool = False) -> str | None:
    """The error message when the CSV ``path`` (read into ``rows``) holds ``task`` runs of
    another budget or another ``normalize`` setting than this run's (a row without the column
    counts as ``False``), else ``None``: one CSV keeps one budget and one protocol per task."""
    budget = task_config(task, quick, timesteps)["n_timesteps"]
    mine = [r for r in rows if r["task"] == task]
    other = {int(r["timesteps"]) for r in mine} - {budget}
    if other:
        return (f"{path} has {task} runs of {sorted(other)} steps, this run asks for {budget}: "
                "give a different budget its own --out folder")
    others = sorted({r.get("normalize", "False") for r in mine} - {str(normalize)})
    if others:
        return (f"{path} has {task} runs with normalize={', '.join(others)}, this run asks for "
                f"normalize={normalize}: give each its own --out folder")
    return None


class Diagnostic(NamedTuple):
    """A per-(task, policy, seed) study on top of :func:`train_one` (``eval_modes.py``,
    ``probe_velocity.py``), run by :func:`run_diagnostic`: ``fn(task, policy, seed, quick,
    timesteps)`` returns one CSV row with the ``fields``; ``summary(rows)`` is the Markdown table;
    ``describe(row)`` the line printed per finished run."""

    name: str
    fn: Callable[..., dict]
    fields: list[str]
    summary: Callable[[list[dict]], str]
    describe: Callable[[dict], str]
    envs: list[str]
    default_env: str
    policies: list[str]


def run_diagnostic(diag: Diagnostic, argv, description: str) -> int:
    """The command line of a :class:`Diagnostic`: one task (``--env``), ``--policies``,
    ``--seeds``, ``--quick``, ``--timesteps``, ``--jobs`` and a resumable ``--out`` folder
    (``results.csv``, ``summary.md``), as ``examples/reproduce.py`` does for the protocol."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=diag.default_env, choices=diag.envs)
    p.add_argument("--policies", nargs="+", default=list(diag.policies), choices=diag.policies)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budgets and one seed (smoke run)")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="budget of every run instead of the table's (one budget per --out)")
    p.add_argument("--out", default=None,
                   help=f"output folder (default runs/{diag.name}[_quick])")
    add_sweep_options(p)
    add_threads_option(p)
    args = p.parse_args(argv)
    check_sweep_options(p, args)
    set_threads(args.threads)
    out = args.out or f"runs/{diag.name}" + ("_quick" if args.quick else "")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.csv")
    conflict = budget_conflict(load_rows(path), path, args.env, args.quick, args.timesteps)
    if conflict:
        p.error(conflict)
    seeds = args.seeds[:1] if args.quick else args.seeds
    jobs = [dict(task=args.env, policy=pol, seed=seed, quick=args.quick, timesteps=args.timesteps)
            for pol in args.policies for seed in seeds]
    failed = run_jobs(path, jobs, diag.fields, ("task", "policy", "seed"), diag.fn, args,
                      diag.describe)
    rows = load_rows(path)
    if rows:
        table = diag.summary(rows)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(table)
        print("\n" + table)
    if failed is not None:
        print(failed, file=sys.stderr)
        return 1
    return 0
