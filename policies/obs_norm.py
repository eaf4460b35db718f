"""Observation normalisation inside a recurrent policy, with statistics that change only between
PPO updates.

SB3's ``VecNormalize`` standardises observations with running statistics and clips them; the
rollout buffer then stores the *normalised* observations, so the training pass sees exactly what
the rollout pass saw. A policy that normalises its own inputs stores the *raw* observations, so
its statistics must not move between a rollout and the update that trains on it, or the update
sees other inputs than the rollout did (and a spiking memory other spikes). Here:

- :meth:`ObservationNormalizer.rollout` (called by the policy's ``forward``, RecurrentPPO's
  rollout path) normalises with the current statistics and records the raw observations in a
  *pending* accumulator;
- :meth:`ObservationNormalizer.update` (called by ``evaluate_actions``, the update) normalises
  with the same statistics and marks the pending ones as due;
- the next ``rollout`` call merges the pending statistics into the current ones, so every
  rollout and the update that trains on it use one set of statistics;
- :meth:`ObservationNormalizer.normalize` (``predict`` / ``get_distribution`` /
  ``predict_values``) normalises and records nothing; inside :meth:`ObservationNormalizer.paused`
  (used by the energy estimate, which runs ``forward`` on recorded observations) ``rollout``
  does the same.

Until the first merge (the whole first rollout and its update) observations pass unchanged.
After it, each normalised entry is ``scale * clip((o - mean) / sqrt(var + epsilon), -clip_obs,
clip_obs)``: VecNormalize's rule with its defaults when ``scale = 1``. ``scale`` sets the
spread of what the first layer sees (a spiking layer has an operating range set by its
threshold; :class:`policies.GRSNPolicy` uses 1, its ``obs_scale`` changes it). Which entries:
a ``Box`` observation that is not an image; in a ``Dict``, each such ``Box`` entry; anything
else (images, which the Cnn extractors scale, and ``Discrete`` / ``MultiDiscrete`` /
``MultiBinary``, which are one-hot encoded) passes unchanged.

The statistics are buffers of the policy: saved, loaded and moved with it. The normalisation is
a per-entry affine map before the first layer (foldable into that layer's weights), so it adds
no synaptic operation to the deployed actor.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Union

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

Observation = Union[th.Tensor, dict[str, th.Tensor]]

__all__ = ["ObservationNormalizer"]


class _Moments(nn.Module):
    """Mean, variance and count of a stream of observations of one shape (float64 buffers)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", th.zeros(shape, dtype=th.float64))
        self.register_buffer("var", th.ones(shape, dtype=th.float64))
        self.register_buffer("count", th.zeros((), dtype=th.float64))

    @th.no_grad()
    def combine(self, mean: th.Tensor, var: th.Tensor, count: th.Tensor) -> None:
        """Add a batch's moments (Chan et al.'s parallel rule, as SB3's RunningMeanStd)."""
        if float(count) == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        m2 = self.var * self.count + var * count + delta ** 2 * self.count * count / total
        self.mean.add_(delta * count / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @th.no_grad()
    def add_batch(self, obs: th.Tensor) -> None:
        rows = obs.detach().to(th.float64).reshape((-1, *self.mean.shape))
        if rows.shape[0] == 0:
            return
        self.combine(rows.mean(0), rows.var(0, unbiased=False),
                     th.tensor(float(rows.shape[0]), dtype=th.float64, device=rows.device))

    @th.no_grad()
    def clear(self) -> None:
        self.mean.zero_()
        self.var.fill_(1.0)
        self.count.zero_()


class _EntryStats(nn.Module):
    """Current and pending statistics of one observation entry."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.current = _Moments(shape)
        self.pending = _Moments(shape)


class ObservationNormalizer(nn.Module):
    """Standardises a policy's observations with statistics that change only between updates
    (see the module docstring for the protocol).

    :param observation_space: the policy's observation space.
    :param clip_obs: normalised entries are clipped to ``[-clip_obs, clip_obs]`` (VecNormalize's
        default 10).
    :param epsilon: added to the variance before the square root (VecNormalize's 1e-8).
    :param scale: the standard deviation of the normalised entries (VecNormalize: 1); the clip
        applies before it, in standard deviations.

    Example::

        import torch
        from gymnasium import spaces
        from policies.obs_norm import ObservationNormalizer
        norm = ObservationNormalizer(spaces.Box(-1, 1, (2,)))
        norm.rollout(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))   # unchanged: no statistics yet
        norm.update(torch.zeros(2, 2))                         # the update: merge due
        norm.rollout(torch.tensor([[1.0, 2.0]]))               # merged: mean (1, 2), std (1, 1)
        # -> tensor([[0., 0.]])
    """

    def __init__(self, observation_space: spaces.Space, clip_obs: float = 10.0,
                 epsilon: float = 1e-8, scale: float = 1.0):
        super().__init__()
        for name, value in (("clip_obs", clip_obs), ("scale", scale)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self.clip_obs = float(clip_obs)
        self.scale = float(scale)
        self.epsilon = float(epsilon)
        self.is_dict = isinstance(observation_space, spaces.Dict)
        entries = observation_space.spaces if self.is_dict else {"": observation_space}
        # ModuleDict keys cannot be empty: a flat observation is stored under "obs"
        self.stats = nn.ModuleDict({
            (key or "obs"): _EntryStats(space.shape) for key, space in entries.items()
            if _normalisable(space)})
        self.register_buffer("merge_due", th.zeros((), dtype=th.bool))
        self._paused = False

    @property
    def active(self) -> bool:
        """Whether the observation space has an entry to normalise."""
        return len(self.stats) > 0

    # ------------------------------------------------------------------ the three call sites
    def rollout(self, obs: Observation) -> Observation:
        """RecurrentPPO's rollout pass: merge the statistics due, normalise, record ``obs``."""
        if self._paused:
            return self.normalize(obs)
        if bool(self.merge_due):
            with th.no_grad():
                for entry in self.stats.values():
                    entry.current.combine(entry.pending.mean, entry.pending.var,
                                          entry.pending.count)
                    entry.pending.clear()
                self.merge_due.fill_(False)
        for raw, entry in self._entries(obs):
            entry.pending.add_batch(raw)
        return self.normalize(obs)

    def update(self, obs: Observation) -> Observation:
        """The update's pass: normalise with the rollout's statistics; the pending ones become
        due (merged at the next :meth:`rollout`)."""
        if self.active:
            self.merge_due.fill_(True)
        return self.normalize(obs)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Within it, :meth:`rollout` neither merges nor records: it is :meth:`normalize`."""
        previous, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = previous

    def normalize(self, obs: Observation) -> Observation:
        """Normalise with the current statistics; record nothing."""
        if not self.active:
            return obs
        if self.is_dict:
            return {key: (self._standardise(self.stats[key], value) if key in self.stats else value)
                    for key, value in obs.items()}
        return self._standardise(self.stats["obs"], obs)

    # ------------------------------------------------------------------ helpers
    def _entries(self, obs: Observation):
        """(raw tensor, its statistics) for each normalised entry of ``obs``."""
        if self.is_dict:
            return [(obs[key], entry) for key, entry in self.stats.items()]
        return [(obs, entry) for entry in self.stats.values()]

    def _standardise(self, entry: _EntryStats, obs: th.Tensor) -> th.Tensor:
        stats = entry.current
        if float(stats.count) == 0:
            return obs
        dtype = obs.dtype if obs.is_floating_point() else th.float32
        mean = stats.mean.to(dtype)
        std = th.sqrt(stats.var + self.epsilon).to(dtype)
        return ((obs.to(dtype) - mean) / std).clamp(-self.clip_obs, self.clip_obs) * self.scale


def _normalisable(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and not is_image_space(space, check_channels=False)
