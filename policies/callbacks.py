"""SB3 callbacks: firing rates of the spiking policies, team statistics of the multi-agent
adapter (:class:`policies.marl.PettingZooVecEnv`)."""
from __future__ import annotations

import numbers
from collections import deque

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from .marl.evaluation import team_episodes

__all__ = ["FiringRateCallback", "TeamMetricsCallback"]


class FiringRateCallback(BaseCallback):
    """Logs the mean firing rate of the spiking cores' readout layer over each rollout, as
    ``spikes/firing_rate_actor`` (and ``spikes/firing_rate_critic`` when the critic has its own
    core) in SB3's logger, so it shows in stdout, CSV and TensorBoard.

    Works with any policy that has a ``cores()`` method (:class:`policies.GRSNPolicy`,
    :class:`policies.LIFPolicy`, :class:`policies.NoTAPPolicy`); with another policy it raises a
    TypeError at the start of training.
    """

    def _on_training_start(self) -> None:
        if not hasattr(self.model.policy, "cores"):
            raise TypeError(
                f"FiringRateCallback needs a spiking policy (GRSNPolicy, LIFPolicy, NoTAPPolicy); "
                f"got {type(self.model.policy).__name__}")

    def _on_rollout_start(self) -> None:
        for core in self.model.policy.cores():
            core.reset_firing_stats()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        policy = self.model.policy
        self.logger.record("spikes/firing_rate_actor", policy.lstm_actor.firing_rate())
        if policy.lstm_critic in policy.cores()[1:]:  # a spiking critic core of its own
            self.logger.record("spikes/firing_rate_critic", policy.lstm_critic.firing_rate())


class TeamMetricsCallback(BaseCallback):
    """Logs team statistics of :class:`~policies.marl.PettingZooVecEnv` episodes (one entry per
    copy episode).

    At every step it reads ``info["team_episode"]`` (set by the adapter on the rows of a copy whose
    episode ended; counted once per copy) and keeps the last ``window`` team returns (sum over
    agents and steps), episode lengths and, when the env reported one of
    :data:`~policies.marl.WIN_KEYS`, wins. At each rollout end it records ``team/return_mean``,
    ``team/ep_len_mean``, ``team/win_rate`` (only when wins were reported) and ``team/episodes``
    (total count) in SB3's logger. Rows of per-agent episodes (``VecMonitor``'s ``episode``) are
    not used. Works through VecEnv wrappers that pass infos on (e.g. ``VecNormalize``: the team
    return stays unnormalised).

    :param window: size of the rolling window.
    """

    def __init__(self, window: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = int(window)
        self.returns: deque[float] = deque(maxlen=self.window)
        self.lengths: deque[int] = deque(maxlen=self.window)
        self.wins: deque[float] = deque(maxlen=self.window)
        self.n_episodes = 0

    def _on_step(self) -> bool:
        for team in team_episodes(self.locals.get("infos") or []):
            self.returns.append(float(team["r"]))
            self.lengths.append(int(team["l"]))
            if "win" in team:
                self.wins.append(float(team["win"]))
            self.n_episodes += 1
        return True

    def _on_rollout_end(self) -> None:
        self.record()

    def record(self) -> None:
        """Writes the current window's statistics to the logger (called at each rollout end)."""
        if not self.returns:
            return
        self.logger.record("team/return_mean", float(np.mean(self.returns)))
        self.logger.record("team/ep_len_mean", float(np.mean(self.lengths)))
        self.logger.record("team/episodes", self.n_episodes)
        if self.wins:
            self.logger.record("team/win_rate", float(np.mean(self.wins)))
