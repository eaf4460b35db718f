"""Stable-Baselines3-facing pieces of grsn_sj: recurrent spiking policies for sb3-contrib's
RecurrentPPO, the POMDP task suite (registered with gymnasium on import) and the PettingZoo
parameter-sharing VecEnv."""
from .callbacks import FiringRateCallback, TeamMetricsCallback
from .cores import GRSNCore, LIFCore, NoTAPCore, SpikingCore
from .envs import (
    CueRecallEnv,
    ObservationSubsetWrapper,
    POMDP_ENV_IDS,
    PrevActionRewardWrapper,
    make_env,
    register_envs,
)

from .marl import (
    PettingZooVecEnv,
    VecCentralState,
    WIN_KEYS,
    agent_type,
    evaluate_team,
    make_pursuit,
    make_smax,
    make_speaker_listener,
    make_spread_po,
)
from .recurrent import (
    CnnGRSNPolicy,
    CnnLIFPolicy,
    CnnNoTAPPolicy,
    GRSNPolicy,
    GRUPolicy,
    LSTMPolicy,
    LIFPolicy,
    MultiInputGRSNPolicy,
    MultiInputLIFPolicy,
    MultiInputNoTAPPolicy,
    NoTAPPolicy,
    PaperGRSNPolicy,
    SpikingRecurrentPolicy,
)

register_envs()

__all__ = [
    "CnnGRSNPolicy",
    "CnnLIFPolicy",
    "CnnNoTAPPolicy",
    "MultiInputGRSNPolicy",
    "MultiInputLIFPolicy",
    "MultiInputNoTAPPolicy",
    "FiringRateCallback",
    "GRSNCore",
    "GRSNPolicy",
    "GRUPolicy",
    "LSTMPolicy",
    "LIFCore",
    "LIFPolicy",
    "NoTAPCore",
    "NoTAPPolicy",
    "PaperGRSNPolicy",
    "PettingZooVecEnv",
    "VecCentralState",
    "SpikingCore",
    "SpikingRecurrentPolicy",
    "TeamMetricsCallback",
    "WIN_KEYS",
    "agent_type",
    "evaluate_team",
    "CueRecallEnv",
    "ObservationSubsetWrapper",
    "POMDP_ENV_IDS",
    "PrevActionRewardWrapper",
    "make_env",
    "make_pursuit",
    "make_smax",
    "make_speaker_listener",
    "make_spread_po",
    "register_envs",
]
