"""Global state for a centralised critic: every row's observation becomes ``{"obs", "state"}``."""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn, VecEnvWrapper

from ..central import CENTRAL_KEYS


_STATES = ("joint_obs", "env")


class VecCentralState(VecEnvWrapper):
    """Adds the global state a centralised (MAPPO-style) critic reads to every row of a
    :class:`policies.marl.PettingZooVecEnv`.

    Each row's observation becomes a ``Dict``: ``"obs"``, the row's own observation (unchanged),
    and ``"state"``, the global state of its copy, the same vector for every agent of a copy:

    * ``state="joint_obs"`` (default): the observations of all the copy's rows, flattened and
      concatenated in agent order (``possible_agents``), the "concatenated local observations"
      state of MAPPO. It needs nothing from the environment, so it works for any ParallelEnv.
      Rows of absent agents contribute their zero observation.
    * ``state="env"``: the env's own global state (PettingZoo's ``state()`` / ``state_space``;
      for SMAX its ``world_state``, SMAC's critic state). The adapter must be built with
      ``env_state=True``, which passes the state on in its infos.

    ``info["terminal_observation"]`` becomes a ``Dict`` of the same form (so RecurrentPPO can
    bootstrap the critic on truncation): the row's terminal observation, and as state, with
    ``"joint_obs"``, the copy's rows' terminal observations where they have one and their current
    observations otherwise; with ``"env"``, the state of the episode's last step.
    ``info["agent_final_observation"]`` (the adapter's ``dead_agents="mask"`` mode) stays the
    row's own array.

    Use it with a policy built with ``centralised_critic=True`` (:class:`policies.GRSNPolicy`,
    :class:`policies.GRUPolicy`, :class:`policies.LSTMPolicy`, ...): its actor reads ``"obs"``
    only, so the deployed actor is the plain policy's.

    :param venv: a :class:`policies.marl.PettingZooVecEnv` (rows copy-major, ``n_agents`` rows
        per copy), possibly already wrapped by wrappers that keep its rows and infos (e.g.
        ``VecMonitor``).
    :param state: ``"joint_obs"`` or ``"env"`` (see above).

    Example::

        from policies.marl import PettingZooVecEnv, VecCentralState, make_spread_po
        venv = VecCentralState(PettingZooVecEnv(make_spread_po, n_copies=4))
        obs = venv.reset()   # {"obs": [12, 18], "state": [12, 54]}
        venv = VecCentralState(PettingZooVecEnv(make_spread_po, n_copies=4, env_state=True),
                               state="env")
    """

    def __init__(self, venv: Any, state: str = "joint_obs"):
        n_agents = getattr(venv, "n_agents", None)
        if n_agents is None:
            raise TypeError(f"VecCentralState wraps a policies.marl.PettingZooVecEnv (it needs "
                            f"its n_agents rows per copy), got {type(venv).__name__}")
        if state not in _STATES:
            raise ValueError(f"state must be one of {_STATES}, got {state!r}")
        space = venv.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"VecCentralState needs Box row observations, got {space}")
        self.n_agents = int(n_agents)
        self.n_copies = venv.num_envs // self.n_agents
        self.state = state
        if state == "env":
            if not getattr(venv, "env_state", False):
                raise ValueError("VecCentralState(state='env') needs the adapter's env states: "
                                 "build it with PettingZooVecEnv(..., env_state=True)")
            state_space = venv.state_space
        else:
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

    @staticmethod
    def _from_infos(infos: Any, key: str) -> np.ndarray:
        return np.stack([info[key] for info in infos])

    def reset(self) -> dict[str, np.ndarray]:
        obs = self.venv.reset()
        if self.state == "env":
            state = self._from_infos(self.venv.unwrapped.reset_infos, "env_state")
        else:
            state = self._joint(obs)
        return {"obs": obs, "state": state}

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        env = self.state == "env"
        state = self._from_infos(infos, "env_state") if env else self._joint(obs)
        if any("terminal_observation" in info for info in infos):
            if env:
                final_state = [info.get("terminal_env_state", info["env_state"])
                               for info in infos]
            else:
                final = obs.copy()
                for row, info in enumerate(infos):
                    if "terminal_observation" in info:
                        final[row] = info["terminal_observation"]
                final_state = self._joint(final)
            for row, info in enumerate(infos):
                if "terminal_observation" in info:
                    info["terminal_observation"] = {"obs": info["terminal_observation"],
                                                    "state": final_state[row]}
        return {"obs": obs, "state": state}, rewards, dones, infos
