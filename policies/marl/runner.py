"""One ParallelEnv copy as ``n_agents`` VecEnv rows: the per-copy step / reset logic shared by
the in-process and subprocess backends (semantics in :mod:`policies.marl`)."""
from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .layout import WIN_KEYS, _Layout


def _env_attr(env: Any, name: str) -> Any:
    """``getattr`` on the ParallelEnv, falling back to its ``unwrapped`` env."""
    try:
        return getattr(env, name)
    except AttributeError:
        unwrapped = getattr(env, "unwrapped", env)
        if unwrapped is env:
            raise
        return getattr(unwrapped, name)


def _is_wrapped(env: Any, wrapper_class: type) -> bool:
    """Whether ``wrapper_class`` occurs in the ParallelEnv's chain of wrappers (``.env`` /
    ``.aec_env`` links, PettingZoo's conventions)."""
    seen: set[int] = set()
    node = env
    while node is not None and id(node) not in seen:
        if isinstance(node, wrapper_class):
            return True
        seen.add(id(node))
        nxt = None
        for link in ("env", "aec_env"):
            try:
                nxt = object.__getattribute__(node, link)
                break
            except AttributeError:
                continue
        node = nxt
    return False


_PARALLEL_API = ("possible_agents", "observation_space", "action_space", "reset", "step")


def _check_parallel_env(env: Any) -> None:
    """Raises a TypeError saying what ``env_fn`` returned, and the fix, unless ``env`` is a
    PettingZoo ``ParallelEnv`` (an instance of it, or an object with its API). pettingzoo is not
    imported here: an env of one of its classes has loaded it already."""
    pz = sys.modules.get("pettingzoo.utils.env")
    if pz is not None and isinstance(env, pz.ParallelEnv):
        return
    expected = (f"env_fn must return a PettingZoo ParallelEnv (a new one at every call), got "
                f"{type(env).__name__}")
    if env is None:
        raise TypeError(f"{expected}: env_fn returns nothing: add the missing `return env`")
    if (pz is not None and isinstance(env, pz.AECEnv)) or (
            hasattr(env, "agent_selection") and hasattr(env, "last")):
        raise TypeError(
            f"{expected} (a PettingZoo AECEnv: agents act in turn). Convert it in env_fn: "
            f"pettingzoo.utils.conversions.aec_to_parallel(<the AEC env>), or use the env's "
            f"parallel_env() constructor where it has one")
    if isinstance(env, gym.Env):
        raise TypeError(
            f"{expected} (a gymnasium Env: one agent). PettingZooVecEnv is for multi-agent "
            f"PettingZoo envs; vectorise a gymnasium env with "
            f"stable_baselines3.common.env_util.make_vec_env")
    missing = [name for name in _PARALLEL_API if not hasattr(env, name)]
    if missing:
        raise TypeError(f"{expected} (no {', '.join(missing)}): return a PettingZoo ParallelEnv "
                        f"(subclass pettingzoo.ParallelEnv and implement its API)")


StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]],
                   list[dict[str, Any]] | None]


class _CopyRunner:
    """One ParallelEnv copy as ``n_agents`` rows (semantics in :mod:`policies.marl`)."""

    def __init__(self, env: Any, copy_index: int, dead_agents: str, agent_id: bool | str,
                 env_state: bool = False) -> None:
        _check_parallel_env(env)
        self.env = env
        self.copy_index = copy_index
        self.dead_agents = dead_agents
        self.layout = _Layout.build(env, agent_id)
        self.env_state = env_state
        if env_state:
            self.layout.state_space = _state_space(env)
        n = self.layout.n_agents
        self._active = np.zeros(n, dtype=bool)
        self._active_before = self._active.copy()
        self._last_obs = np.stack([self.layout.zeros() for _ in range(n)])
        self._ep_return = 0.0
        self._ep_len = 0

    # ---- helpers ------------------------------------------------------------------------
    def _live(self) -> set:
        return set(self.env.agents)

    def _state(self) -> np.ndarray:
        """The env's global ``state()`` as a float32 array of ``state_space``'s shape."""
        state = np.asarray(self.env.state(), dtype=np.float32)
        shape = self.layout.state_space.shape
        if state.shape != shape:
            raise ValueError(f"the ParallelEnv's state() returned shape {state.shape}, its "
                             f"state_space has shape {shape}")
        return state

    def _add_state(self, infos: list[dict[str, Any]]) -> None:
        """``info["env_state"]`` (the same array on every row of the copy), with ``env_state``."""
        if self.env_state:
            state = self._state()
            for info in infos:
                info["env_state"] = state

    def _from_reset(self, obs: dict, infos: dict) -> tuple[np.ndarray, list[dict[str, Any]]]:
        live = self._live()
        lay = self.layout
        out = np.stack([lay.zeros() for _ in range(lay.n_agents)])
        row_infos: list[dict[str, Any]] = []
        for k, agent in enumerate(lay.possible_agents):
            active = agent in live and agent in obs
            if active:
                out[k] = lay.encode(k, obs[agent])
            self._active[k] = active
            info = dict(infos.get(agent, {})) if isinstance(infos, dict) else {}
            info["agent_active"] = bool(active)
            row_infos.append(info)
        self._last_obs = out.copy()
        self._ep_return = 0.0
        self._ep_len = 0
        self._add_state(row_infos)
        return out, row_infos

    # ---- API ----------------------------------------------------------------------------
    def reset(self, seed: int | None, options: dict[str, Any] | None
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {"seed": seed}
        if options:
            kwargs["options"] = options
        obs, infos = self.env.reset(**kwargs)
        return self._from_reset(obs, infos)

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps the copy; returns ``(obs, rewards, dones, infos, reset_infos or None)``."""
        return self.end_step(self.env.step(self.begin_step(actions)))

    def begin_step(self, actions: np.ndarray) -> dict[str, Any]:
        """The first half of :meth:`step`: the ParallelEnv's action dict for this copy's rows
        (active agents only). A backend that steps several copies at once (an env class with a
        ``step_batch``) calls it, steps the envs, then :meth:`end_step` with each result."""
        lay = self.layout
        self._active_before = self._active.copy()
        return {a: lay.decode(k, actions[k]) for k, a in enumerate(lay.possible_agents)
                if self._active_before[k]}

    def end_step(self, result: tuple[dict, dict, dict, dict, dict]) -> StepResult:
        """The second half of :meth:`step`: the rows' arrays and infos from the ParallelEnv's
        ``(obs, rewards, terminations, truncations, infos)``, with the reset at an episode
        end."""
        obs_d, rew_d, term_d, trunc_d, info_d = result
        lay = self.layout
        agents = lay.possible_agents
        active_before = self._active_before
        live = self._live()

        n = lay.n_agents
        rewards = np.zeros(n, dtype=np.float32)
        dones = np.zeros(n, dtype=bool)
        final_obs = np.stack([lay.zeros() for _ in range(n)])
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos: list[dict[str, Any]] = []
        for k, agent in enumerate(agents):
            infos.append(dict(info_d.get(agent, {})) if isinstance(info_d, dict) else {})
            if not active_before[k]:
                continue
            rewards[k] = float(rew_d.get(agent, 0.0))
            terminated[k] = bool(term_d.get(agent, False))
            truncated[k] = bool(trunc_d.get(agent, False))
            if agent in obs_d:
                final_obs[k] = lay.encode(k, obs_d[agent])
                self._last_obs[k] = final_obs[k]
            else:
                final_obs[k] = self._last_obs[k]
        acted = np.flatnonzero(active_before)
        episode_over = (not live) or bool(np.all(terminated[acted] | truncated[acted]))
        self._ep_return += float(rewards.sum(dtype=np.float64))
        self._ep_len += 1

        if episode_over:
            team: dict[str, Any] = {"r": self._ep_return, "l": self._ep_len,
                                    "copy": self.copy_index}
            win = _find_win(info_d)
            if win is not None:
                team["win"] = win
            final_state = self._state() if self.env_state else None
            for k in range(n):
                dones[k] = True
                if final_state is not None:
                    infos[k]["terminal_env_state"] = final_state
                infos[k]["terminal_observation"] = final_obs[k] if active_before[k] else lay.zeros()
                infos[k]["TimeLimit.truncated"] = bool(active_before[k] and truncated[k]
                                                       and not terminated[k])
                infos[k]["team_episode"] = dict(team)
            obs, reset_infos = self.env.reset()
            new_obs, reset_row_infos = self._from_reset(obs, reset_infos)
            for k in range(n):
                infos[k]["agent_active"] = bool(self._active[k])
                if self.env_state:  # the new episode's first state, as the obs is its first
                    infos[k]["env_state"] = reset_row_infos[k]["env_state"]
            return new_obs, rewards, dones, infos, reset_row_infos

        out = np.stack([lay.zeros() for _ in range(n)])
        for k, agent in enumerate(agents):
            active_after = (agent in live and not terminated[k] and not truncated[k]
                            and (active_before[k] or agent in obs_d))
            if active_after:
                if not active_before[k]:  # the agent (re)appeared on this step
                    final_obs[k] = lay.encode(k, obs_d[agent])
                    self._last_obs[k] = final_obs[k]
                out[k] = final_obs[k]
            left = bool(active_before[k] and not active_after)
            if self.dead_agents == "terminate":
                if left:
                    dones[k] = True
                    infos[k]["terminal_observation"] = final_obs[k]
                    infos[k]["TimeLimit.truncated"] = bool(truncated[k] and not terminated[k])
                elif not active_before[k]:
                    dones[k] = True
                    infos[k]["terminal_observation"] = lay.zeros()
                    infos[k]["TimeLimit.truncated"] = False
            elif left:
                infos[k]["agent_final_observation"] = final_obs[k]
            self._active[k] = active_after
            infos[k]["agent_active"] = bool(active_after)
        self._add_state(infos)
        return out, rewards, dones, infos, None

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def _state_space(env: Any) -> spaces.Box:
    """The ParallelEnv's ``state_space`` for ``env_state=True``: a TypeError naming what is
    missing unless the env has a Box ``state_space`` and a ``state()`` method."""
    space = getattr(env, "state_space", None)
    if not callable(getattr(env, "state", None)) or not isinstance(space, spaces.Box):
        raise TypeError(
            f"env_state=True needs a ParallelEnv with a global state: a state() method and a "
            f"Box state_space (PettingZoo's API), got {type(env).__name__} with state_space "
            f"{space!r}; use env_state=False (VecCentralState's state='joint_obs' needs no env "
            f"state)")
    return space


def _find_win(info_d: Any) -> float | None:
    """1.0 / 0.0 if any agent's info carries one of :data:`WIN_KEYS` (1.0 if any is truthy)."""
    if not isinstance(info_d, dict):
        return None
    found = False
    won = False
    for info in info_d.values():
        if not isinstance(info, dict):
            continue
        for key in WIN_KEYS:
            if key in info:
                found = True
                won = won or bool(np.asarray(info[key]).any())
    return float(won) if found else None


def _execute(runner: _CopyRunner, cmd: str, data: Any) -> Any:
    """Runs one command on a copy (in-process, or inside a worker process)."""
    if cmd == "step":
        return runner.step(data)
    if cmd == "reset":
        return runner.reset(*data)
    if cmd == "get_attr":
        return _env_attr(runner.env, data)
    if cmd == "set_attr":
        setattr(runner.env, data[0], data[1])
        return None
    if cmd == "env_method":
        name, args, kwargs = data
        return _env_attr(runner.env, name)(*args, **kwargs)
    if cmd == "is_wrapped":
        return _is_wrapped(runner.env, data)
    if cmd == "render":
        return runner.render()
    if cmd == "layout":
        return runner.layout
    raise ValueError(f"unknown command {cmd!r}")
