"""Global state for a centralised critic: every row's observation becomes ``{"obs", "state"}``."""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn, VecEnvWrapper

from ..central import CENTRAL_KEYS


class VecCentralState(VecEnvWrapper):
    """Adds the global state a centralised (MAPPO-style) critic reads to every row of a
    :class:`policies.marl.PettingZooVecEnv`.

    Each row's observation becomes a ``Dict``: ``"obs"``, the row's own observation (unchanged),
    and ``"state"``, the joint observation of its copy: the observations of all the copy's rows,
    flattened and concatenated in agent order (``possible_agents``). That is the same vector for
    every agent of a copy, the "concatenated local observations" state of MAPPO; it needs nothing
    from the environment, so it works for any ParallelEnv (for SMAX it is the allies' joint view,
    not SMAX's own ``world_state``). Rows of absent agents contribute their zero observation.

    ``info["terminal_observation"]`` becomes a ``Dict`` of the same form (so RecurrentPPO can
    bootstrap the critic on truncation): the row's terminal observation, and as state the copy's
    rows' terminal observations where they have one, their current observations otherwise.
    ``info["agent_final_observation"]`` (the adapter's ``dead_agents="mask"`` mode) stays the
    row's own array.

    Use it with a policy built with ``centralised_critic=True`` (:class:`policies.GRSNPolicy`,
    :class:`policies.GRUPolicy`, :class:`policies.LSTMPolicy`, ...): its actor reads ``"obs"``
    only, so the deployed actor is the plain policy's.

    :param venv: a :class:`policies.marl.PettingZooVecEnv` (rows copy-major, ``n_agents`` rows
        per copy), possibly already wrapped by wrappers that keep its rows (e.g. ``VecMonitor``).

    Example::

        from policies.marl import PettingZooVecEnv, VecCentralState, make_spread_po
        venv = VecCentralState(PettingZooVecEnv(make_spread_po, n_copies=4))
        obs = venv.reset()   # {"obs": [12, 18], "state": [12, 54]}
    """

    def __init__(self, venv: Any):
        n_agents = getattr(venv, "n_agents", None)
        if n_agents is None:
            raise TypeError(f"VecCentralState wraps a policies.marl.PettingZooVecEnv (it needs "
                            f"its n_agents rows per copy), got {type(venv).__name__}")
        space = venv.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"VecCentralState needs Box row observations, got {space}")
        self.n_agents = int(n_agents)
        self.n_copies = venv.num_envs // self.n_agents
        low = np.tile(np.broadcast_to(space.low, space.shape).ravel(), self.n_agents)
        high = np.tile(np.broadcast_to(space.high, space.shape).ravel(), self.n_agents)
        state_space = spaces.Box(low, high, dtype=space.dtype)
        super().__init__(venv, observation_space=spaces.Dict(
            dict(zip(CENTRAL_KEYS, (space, state_space)))))

    def _joint(self, obs: np.ndarray) -> np.ndarray:
        """``[num_envs, ...]`` row observations -> ``[num_envs, n_agents * size]`` states (each
        copy's joint observation, repeated on its rows)."""
        per_copy = obs.reshape(self.n_copies, -1)
        return np.repeat(per_copy, self.n_agents, axis=0)

    def _dict(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"obs": obs, "state": self._joint(obs)}

    def reset(self) -> dict[str, np.ndarray]:
        return self._dict(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        if any("terminal_observation" in info for info in infos):
            final = obs.copy()
            for row, info in enumerate(infos):
                if "terminal_observation" in info:
                    final[row] = info["terminal_observation"]
            final_state = self._joint(final)
            for row, info in enumerate(infos):
                if "terminal_observation" in info:
                    info["terminal_observation"] = {"obs": info["terminal_observation"],
                                                    "state": final_state[row]}
        return self._dict(obs), rewards, dones, infos
