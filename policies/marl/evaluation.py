"""Team episodes of :class:`~policies.marl.PettingZooVecEnv`: reading them from a step's infos
(once per copy) and evaluating a model on them."""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from .vec_env import PettingZooVecEnv

__all__ = ["TeamEvaluation", "evaluate_team", "team_episodes"]


def team_episodes(infos: Sequence[Any]) -> list[dict[str, Any]]:
    """The team episodes that ended in one VecEnv step, one per copy, in row order.

    The adapter puts the same ``info["team_episode"]`` (``{"r", "l", "copy"}`` and ``"win"`` when
    the env reports one of :data:`~policies.marl.WIN_KEYS`) on every row of a copy whose episode
    ended; this keeps the first row's entry of each copy (an entry without ``"copy"`` counts as
    its own copy). Infos that are not dicts, or have no ``team_episode``, are skipped.
    """
    seen: set[Any] = set()
    episodes: list[dict[str, Any]] = []
    for row, info in enumerate(infos):
        team = info.get("team_episode") if isinstance(info, dict) else None
        if team is None:
            continue
        key = team.get("copy", ("row", row))
        if key in seen:
            continue
        seen.add(key)
        episodes.append(team)
    return episodes


class TeamEvaluation(NamedTuple):
    """What :func:`evaluate_team` returns (unpacks as ``mean, std, episodes``)."""

    mean: float  #: mean team return
    std: float  #: standard deviation of the team returns (population, as SB3's evaluate_policy)
    episodes: list[dict[str, Any]]  #: the adapter's ``team_episode`` dicts, in finishing order

    @property
    def returns(self) -> np.ndarray:
        """The team return of each episode."""
        return np.asarray([float(e["r"]) for e in self.episodes])

    @property
    def win_rate(self) -> float | None:
        """Fraction of episodes won, or ``None`` when the env reported no win flag."""
        wins = [float(e["win"]) for e in self.episodes if "win" in e]
        return float(np.mean(wins)) if wins else None


def evaluate_team(model: Any, vec_env: VecEnv, n_episodes: int = 100,
                  deterministic: bool = True) -> TeamEvaluation:
    """Runs ``model`` on ``vec_env`` until ``n_episodes`` team episodes have ended.

    The recurrent state is threaded per row (``model.predict(obs, state, episode_start)``, reset
    where the previous step ended a copy's episode), so recurrent and feed-forward SB3 models both
    work. As in SB3's ``evaluate_policy``, each copy contributes a fixed share of the episodes
    (copy ``c`` its first ``(n_episodes + c) // n_copies``), so copies whose episodes are short
    do not dominate the sample. ``vec_env`` is reset first; it may be wrapped (e.g.
    ``VecNormalize``), the team returns are the adapter's unnormalised ones.

    :param model: an SB3 model (anything with ``predict(obs, state, episode_start,
        deterministic)``).
    :param vec_env: a :class:`~policies.marl.PettingZooVecEnv`, possibly inside VecEnv wrappers.
    :param n_episodes: number of team episodes (copy episodes) to collect.
    :param deterministic: use deterministic actions.
    :return: ``TeamEvaluation(mean, std, episodes)``; ``.returns`` and ``.win_rate`` summarise the
        episodes.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, numbers.Integral) \
            or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    adapter = getattr(vec_env, "unwrapped", None)
    if not isinstance(adapter, PettingZooVecEnv):
        raise TypeError(
            f"evaluate_team needs a PettingZooVecEnv (possibly inside VecEnv wrappers), got "
            f"{type(vec_env).__name__}; for a single-agent VecEnv use "
            f"stable_baselines3.common.evaluation.evaluate_policy")
    n_copies = adapter.n_copies
    targets = np.array([(int(n_episodes) + c) // n_copies for c in range(n_copies)])
    counts = np.zeros(n_copies, dtype=int)
    episodes: list[dict[str, Any]] = []
    obs = vec_env.reset()
    state = None
    starts = np.ones(vec_env.num_envs, dtype=bool)
    while (counts < targets).any():
        actions, state = model.predict(obs, state=state, episode_start=starts,
                                       deterministic=deterministic)
        obs, _, starts, infos = vec_env.step(actions)
        for team in team_episodes(infos):
            copy = int(team["copy"])
            if counts[copy] < targets[copy]:
                counts[copy] += 1
                episodes.append(team)
    returns = np.asarray([float(e["r"]) for e in episodes])
    return TeamEvaluation(float(returns.mean()), float(returns.std()), episodes)
