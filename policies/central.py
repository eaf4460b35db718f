"""Centralised, training-only critic (MAPPO style) for the recurrent policies.

The actor of a parameter-shared multi-agent policy sees only its agent's observation; the critic,
which is used only while training, may also see a global state. Observations then come as a
``Dict`` with two keys, ``"obs"`` (the agent's own observation) and ``"state"`` (the global
state), as :class:`policies.marl.VecCentralState` produces them. With
``centralised_critic=True`` a policy reads ``"obs"`` alone in its actor (so the deployed actor,
its outputs and its energy are those of the plain policy) and ``"obs"`` and ``"state"``
concatenated in its critic (its memory core, or its feed-forward critic). Actor and critic then
have separate features extractors (``share_features_extractor=False``).

This module holds the one rule for it, used by every policy class that offers the option
(:class:`policies.GRSNPolicy` and the other spiking policies, :class:`policies.GRUPolicy`,
:class:`policies.LSTMPolicy`).
"""
from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor

__all__ = ["CENTRAL_KEYS", "KeysExtractor", "central_policy_kwargs", "central_critic_extractor"]

#: the two keys of a centralised-critic observation: the agent's own, the global state
CENTRAL_KEYS = ("obs", "state")


class KeysExtractor(BaseFeaturesExtractor):
    """Flattens the ``Box`` entries ``keys`` of a ``Dict`` observation and concatenates them
    (in the order of ``keys``); no parameters, no operations to count.

    :param observation_space: a ``spaces.Dict`` holding every key of ``keys``.
    :param keys: which entries to read.
    """

    def __init__(self, observation_space: spaces.Dict, keys: tuple[str, ...] = ("obs",)):
        if not isinstance(observation_space, spaces.Dict):
            raise TypeError(f"KeysExtractor needs a Dict observation space, got "
                            f"{observation_space}")
        keys = tuple(keys)
        missing = [k for k in keys if k not in observation_space.spaces]
        if not keys or missing:
            raise ValueError(f"KeysExtractor: keys {keys} must be non-empty entries of the "
                             f"observation space, whose keys are "
                             f"{list(observation_space.spaces)}; missing {missing}")
        for k in keys:
            if not isinstance(observation_space[k], spaces.Box):
                raise TypeError(f"KeysExtractor reads Box entries; {k!r} is "
                                f"{observation_space[k]}")
        dim = sum(spaces.utils.flatdim(observation_space[k]) for k in keys)
        super().__init__(observation_space, dim)
        self.keys = keys

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        return th.cat([th.flatten(observations[k], start_dim=1) for k in self.keys], dim=1)


def central_policy_kwargs(name: str, observation_space: spaces.Space, kwargs: dict[str, Any],
                          centralised_critic: bool) -> dict[str, Any]:
    """The constructor arguments of a policy given its ``centralised_critic`` option (a bool, or
    a TypeError naming it): ``kwargs`` unchanged when False; when True, ``kwargs`` with the
    actor's features extractor set to read ``"obs"`` only and ``share_features_extractor=False``.
    Raises a TypeError / ValueError naming the fix for an observation space without the two
    keys, another features extractor, or a shared memory core (whose critic reads the actor's
    latent and could never see the state)."""
    if not isinstance(centralised_critic, bool):
        raise TypeError(f"{name}: centralised_critic must be True or False, got "
                        f"{centralised_critic!r}")
    if not centralised_critic:
        return dict(kwargs)
    if not (isinstance(observation_space, spaces.Dict)
            and set(observation_space.spaces) == set(CENTRAL_KEYS)):
        raise ValueError(
            f"{name}(centralised_critic=True) needs Dict observations with exactly the keys "
            f"{CENTRAL_KEYS} (the agent's observation and the global state), got "
            f"{observation_space}; wrap the multi-agent VecEnv in "
            "policies.marl.VecCentralState(venv)")
    extractor = kwargs.get("features_extractor_class", FlattenExtractor)
    if extractor not in (FlattenExtractor, KeysExtractor):
        raise TypeError(f"{name}(centralised_critic=True) builds its own features extractors "
                        f"(policies.central.KeysExtractor); got features_extractor_class="
                        f"{getattr(extractor, '__name__', extractor)}")
    if kwargs.get("shared_lstm") or kwargs.get("shared_grsn"):
        raise ValueError(f"{name}: centralised_critic=True needs a critic of its own; with a "
                         "shared memory core the critic reads the actor's latent and never sees "
                         "the state (drop shared_lstm / shared_grsn)")
    out = dict(kwargs)
    out.update(features_extractor_class=KeysExtractor,
               features_extractor_kwargs={"keys": ("obs",)}, share_features_extractor=False)
    return out


def central_critic_extractor(policy: Any) -> int:
    """Gives ``policy`` (built with :func:`central_policy_kwargs`) a critic features extractor
    reading ``"obs"`` and ``"state"``; returns its features size (the critic core's input)."""
    policy.vf_features_extractor = KeysExtractor(policy.observation_space, CENTRAL_KEYS)
    return policy.vf_features_extractor.features_dim
