"""Row layout of one ParallelEnv copy: the common observation / action spaces of its agents,
per-agent encoders (padding, agent id) and decoders (see :mod:`policies.marl` for the rules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

#: Info keys read (in any agent's final info of an episode) as a win / success flag.
WIN_KEYS: tuple[str, ...] = ("win", "won", "battle_won", "success", "is_success")

_DEAD_AGENT_MODES = ("mask", "terminate")

_UNIFY_HINT = (
    "PettingZooVecEnv can unify: Box observations of any shapes (flattened and zero-padded, "
    "optionally with agent_id=True / agent_id='type' appending a one-hot agent id); identical "
    "action spaces of any kind; Discrete action spaces of different sizes (padded to the largest "
    "n, an out-of-range action a maps to a % n); Box action spaces of different shapes/bounds "
    "(flattened, zero-padded, clipped to each agent's bounds). Wrap the ParallelEnv to convert "
    "other spaces (e.g. flatten a Dict observation) before passing it."
)


def agent_type(agent: str) -> str:
    """The type of an agent name: the part before its last ``"_"`` (the whole name if none)."""
    name = str(agent)
    return name.rsplit("_", 1)[0] if "_" in name else name


@dataclass
class _Layout:
    """How one copy's agents map to rows: the common spaces and the per-agent encoders."""

    possible_agents: tuple[str, ...]
    observation_space: spaces.Box
    action_space: spaces.Space
    obs_spaces: tuple[spaces.Box, ...]
    act_spaces: tuple[spaces.Space, ...]
    keep_shape: bool
    obs_dim: int  # flat length of the padded observation part (without the id)
    id_vectors: tuple[np.ndarray, ...]  # per agent; empty arrays when agent_id is off
    action_mode: str  # "identical" | "discrete" | "box"
    state_space: spaces.Box | None = None  # the env's global state (env_state=True only)

    @classmethod
    def build(cls, env: Any, agent_id: bool | str) -> _Layout:
        agents = tuple(env.possible_agents)
        if not agents:
            raise ValueError("the ParallelEnv has no possible_agents")
        if len(set(agents)) != len(agents):
            raise ValueError(f"possible_agents has duplicates: {list(agents)}")
        obs_spaces = tuple(env.observation_space(a) for a in agents)
        act_spaces = tuple(env.action_space(a) for a in agents)
        for agent, space in zip(agents, obs_spaces):
            if not isinstance(space, spaces.Box):
                raise TypeError(
                    f"agent {agent!r} has a {type(space).__name__} observation space ({space}); only "
                    f"Box observations are supported. {_UNIFY_HINT}")

        # ---- agent id -------------------------------------------------------------------
        if agent_id is True:
            eye = np.eye(len(agents))
            id_vectors = tuple(eye[i] for i in range(len(agents)))
        elif agent_id == "type":
            types = list(dict.fromkeys(agent_type(a) for a in agents))
            eye = np.eye(len(types))
            id_vectors = tuple(eye[types.index(agent_type(a))] for a in agents)
        else:
            id_vectors = tuple(np.zeros(0) for _ in agents)
        id_dim = len(id_vectors[0])

        # ---- observations ---------------------------------------------------------------
        dtype = np.result_type(*(s.dtype for s in obs_spaces))
        shapes = {s.shape for s in obs_spaces}
        keep_shape = len(shapes) == 1 and id_dim == 0
        if keep_shape:
            low = np.minimum.reduce([np.broadcast_to(s.low, s.shape) for s in obs_spaces])
            high = np.maximum.reduce([np.broadcast_to(s.high, s.shape) for s in obs_spaces])
            obs_dim = int(np.prod(obs_spaces[0].shape))
        else:
            obs_dim = max(int(np.prod(s.shape)) for s in obs_spaces)
            low = np.zeros(obs_dim + id_dim, dtype=np.float64)
            high = np.zeros(obs_dim + id_dim, dtype=np.float64)
            for s in obs_spaces:
                n = int(np.prod(s.shape))
                low[:n] = np.minimum(low[:n], np.asarray(s.low, dtype=np.float64).reshape(-1))
                high[:n] = np.maximum(high[:n], np.asarray(s.high, dtype=np.float64).reshape(-1))
            high[obs_dim:] = 1.0
        low = np.minimum(low, 0).astype(dtype)
        high = np.maximum(high, 0).astype(dtype)
        observation_space = spaces.Box(low=low, high=high, dtype=dtype)

        # ---- actions --------------------------------------------------------------------
        first = act_spaces[0]
        if all(isinstance(s, spaces.Discrete) for s in act_spaces):
            # always 0-based for SB3, even for identical spaces with start != 0
            action_mode = "discrete"
            action_space = spaces.Discrete(max(int(s.n) for s in act_spaces))
        elif all(s == first for s in act_spaces):
            action_mode, action_space = "identical", first
        elif all(isinstance(s, spaces.Box) for s in act_spaces):
            action_mode = "box"
            size = max(int(np.prod(s.shape)) for s in act_spaces)
            a_low = np.full(size, np.inf)
            a_high = np.full(size, -np.inf)
            for s in act_spaces:
                n = int(np.prod(s.shape))
                a_low[:n] = np.minimum(a_low[:n], np.asarray(s.low, dtype=np.float64).reshape(-1))
                a_high[:n] = np.maximum(a_high[:n], np.asarray(s.high, dtype=np.float64).reshape(-1))
            a_dtype = np.result_type(*(s.dtype for s in act_spaces))
            action_space = spaces.Box(low=a_low.astype(a_dtype), high=a_high.astype(a_dtype),
                                      dtype=a_dtype)
        else:
            desc = ", ".join(f"{a}: {s}" for a, s in zip(agents, act_spaces))
            raise TypeError(f"cannot unify the action spaces ({desc}). {_UNIFY_HINT}")
        return cls(agents, observation_space, action_space, obs_spaces, act_spaces, keep_shape,
                   obs_dim, id_vectors, action_mode)

    @property
    def n_agents(self) -> int:
        return len(self.possible_agents)

    def zeros(self) -> np.ndarray:
        """The observation of an absent agent (and of padding)."""
        return np.zeros(self.observation_space.shape, dtype=self.observation_space.dtype)

    def encode(self, k: int, raw: Any) -> np.ndarray:
        """Agent ``k``'s observation ``raw`` as a row observation (padded, id appended)."""
        space = self.obs_spaces[k]
        arr = np.asarray(raw)
        if arr.size != int(np.prod(space.shape)):
            raise ValueError(
                f"agent {self.possible_agents[k]!r} returned an observation of shape {arr.shape}, "
                f"its observation space has shape {space.shape}")
        if self.keep_shape:
            return arr.reshape(space.shape).astype(self.observation_space.dtype, copy=True)
        out = self.zeros()
        flat = arr.reshape(-1)
        out[:flat.size] = flat
        out[self.obs_dim:] = self.id_vectors[k]
        return out

    def decode(self, k: int, action: Any) -> Any:
        """The row action ``action`` as an action of agent ``k`` (see :mod:`policies.marl`)."""
        space = self.act_spaces[k]
        if self.action_mode == "discrete":
            a = int(np.asarray(action).reshape(-1)[0])
            return int(space.start) + a % int(space.n)
        if self.action_mode == "box":
            n = int(np.prod(space.shape))
            a = np.asarray(action, dtype=space.dtype).reshape(-1)[:n].reshape(space.shape)
            return np.clip(a, space.low, space.high).astype(space.dtype)
        return action

