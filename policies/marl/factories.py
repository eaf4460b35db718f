"""PettingZoo ParallelEnv factories for the multi-agent tasks. Each imports its package
(mpe2, PettingZoo's SISL extra, JaxMARL) when called, so ``import policies`` works without them."""
from __future__ import annotations

from typing import Any


def make_spread_po(N: int = 3, max_cycles: int = 25, **kw: Any) -> Any:
    """Partially observed mpe2 ``simple_spread_v3`` ParallelEnv (discrete actions).

    Uses mpe2's own partial observability (``num_agent_neighbors=1``, ``num_landmark_neighbors=2``
    by default; override through ``kw``), with ``local_ratio=0.5``, ``continuous_actions=False``.
    Observation layout per agent (12 floats with the defaults)::

        [self_vel (2), self_pos (2),
         rel. positions of the 2 nearest landmarks, nearest first (2 x 2),
         rel. position of the nearest other agent (2),
         communication of that agent (2; always zeros: agents are silent in simple_spread)]

    Slots beyond the available entities are zero-padded by mpe2.
    """
    from mpe2 import simple_spread_v3

    kw.setdefault("local_ratio", 0.5)
    kw.setdefault("continuous_actions", False)
    kw.setdefault("num_agent_neighbors", 1)
    kw.setdefault("num_landmark_neighbors", 2)
    return simple_spread_v3.parallel_env(N=N, max_cycles=max_cycles, **kw)


def make_speaker_listener(max_cycles: int = 25, **kw: Any) -> Any:
    """mpe2 ``simple_speaker_listener_v4`` ParallelEnv (discrete actions) -- heterogeneous:
    ``speaker_0`` observes 3 floats and has ``Discrete(3)``, ``listener_0`` observes 11 floats and
    has ``Discrete(5)``; use ``agent_id=True`` (or ``"type"``) with :class:`PettingZooVecEnv`."""
    from mpe2 import simple_speaker_listener_v4

    kw.setdefault("continuous_actions", False)
    return simple_speaker_listener_v4.parallel_env(max_cycles=max_cycles, **kw)


def make_pursuit(**kw: Any) -> Any:
    """PettingZoo SISL ``pursuit_v5`` ParallelEnv (8 pursuers, ``Box(0, 30, (7, 7, 3))``
    observations, ``Discrete(5)`` actions, 500 cycles by default), created through PettingZoo's
    registry (``pettingzoo.make("parallel", "sisl/pursuit-v5", **kw)``; the old
    ``pettingzoo.sisl.pursuit_v5`` import is deprecated in PettingZoo 1.27). Needs
    ``pip install 'pettingzoo[sisl]'`` (pymunk, pygame-ce, scipy, box2d); runs headless."""
    import pettingzoo

    try:
        import pymunk  # noqa: F401  (the SISL extra)
    except ImportError as exc:
        raise ImportError("make_pursuit needs PettingZoo's SISL extra: "
                          "pip install 'pettingzoo[sisl]'") from exc
    return pettingzoo.make("parallel", "sisl/pursuit-v5", **kw)


def make_smax(map_name: str = "2s3z", **env_kwargs: Any) -> Any:
    """A PettingZoo ``ParallelEnv`` over JaxMARL's SMAX map ``map_name`` (e.g. ``"2s3z"``,
    ``"3s_vs_5z"``, ``"8m"``; an unknown name raises a ValueError listing JaxMARL's maps). The
    allies are the agents, the enemies follow JaxMARL's heuristic; ``env_kwargs`` go to JaxMARL's
    ``HeuristicEnemySMAX`` (e.g. ``max_steps``, ``won_battle_bonus``, ``attack_mode``), JaxMARL's
    defaults otherwise. Agents, rewards, episode ends, the ``battle_won`` flag and seeding are
    described in :mod:`policies.marl.smax`. Needs ``pip install 'grsn_sj[smax]'``."""
    from .smax import SMAXParallelEnv

    return SMAXParallelEnv(map_name, **env_kwargs)
