"""Stable-Baselines3-facing pieces of grsn_sj: recurrent spiking policies for sb3-contrib's
RecurrentPPO, the POMDP task suite (registered with gymnasium on import) and the PettingZoo
parameter-sharing VecEnv."""
from .envs import (
    CueRecallEnv,
    ObservationSubsetWrapper,
    POMDP_ENV_IDS,
    PrevActionRewardWrapper,
    make_env,
    register_envs,
)

register_envs()

__all__ = [
    "CueRecallEnv",
    "ObservationSubsetWrapper",
    "POMDP_ENV_IDS",
    "PrevActionRewardWrapper",
    "make_env",
    "register_envs",
]
