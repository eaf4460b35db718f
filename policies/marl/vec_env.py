"""The adapter: a PettingZoo ``ParallelEnv`` as one SB3 ``VecEnv``, one row per (copy, agent)
(semantics in :mod:`policies.marl`)."""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from .backends import _LocalBackend, _SubprocBackend
from .layout import _DEAD_AGENT_MODES


class PettingZooVecEnv(VecEnv):
    """A PettingZoo ``ParallelEnv`` as an SB3 ``VecEnv`` with one row per (copy, agent).

    :param env_fn: zero-argument callable returning a new PettingZoo ParallelEnv; called once per
        copy, in copy order. All copies must have the same ``possible_agents`` and spaces. Anything
        else (``None``, a gymnasium env, an AEC env) raises a TypeError naming the fix.
    :param n_copies: number of environment copies (``num_envs = n_copies * n_agents``).
    :param dead_agents: ``"mask"`` (done only at the copy's episode end) or ``"terminate"``
        (done on the step an agent leaves, then one-step dummy episodes); see :mod:`policies.marl`.
    :param agent_id: ``False``, ``True`` (append a one-hot over ``possible_agents``) or ``"type"``
        (a one-hot over agent types, the name before its last ``"_"``).
    :param env_state: also pass on the env's global ``state()`` (PettingZoo's ``state_space``;
        e.g. SMAX's ``world_state``): ``info["env_state"]`` on every row after every step (the
        new episode's first state where a copy reset), ``reset_infos[row]["env_state"]`` after
        ``reset()``, and ``info["terminal_env_state"]`` at a copy's episode end (the state of its
        last step). :class:`policies.marl.VecCentralState` with ``state="env"`` reads them. An env
        without ``state()`` / a Box ``state_space`` raises a TypeError. Off by default (one
        ``state()`` call per copy and step).
    :param subprocess: run each copy in its own daemon process.
    :param start_method: multiprocessing start method for ``subprocess=True`` (default
        "forkserver" where available, else "spawn").

    ``seed(s)`` makes copy ``i`` reset with seed ``s + i`` at the next ``reset()`` only (as SB3's
    ``DummyVecEnv``); ``set_options`` takes one dict for all copies or a list with one dict per copy.
    ``get_attr`` / ``set_attr`` / ``env_method`` / ``env_is_wrapped`` address rows: each row maps to
    its copy's ParallelEnv (attributes are looked up on the ParallelEnv, then on its ``unwrapped``);
    the value is fetched / set / called once per distinct copy and repeated for every requested
    row of that copy. ``get_images`` returns one image per row (a copy's image repeated), while
    ``render()`` tiles one image per copy.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        n_copies: int = 1,
        *,
        dead_agents: str = "mask",
        agent_id: bool | str = False,
        env_state: bool = False,
        subprocess: bool = False,
        start_method: str | None = None,
    ) -> None:
        if not callable(env_fn):
            raise TypeError(f"env_fn must be a zero-argument callable returning a PettingZoo "
                            f"ParallelEnv, got {type(env_fn).__name__}")
        if isinstance(n_copies, bool) or not isinstance(n_copies, numbers.Integral) or n_copies < 1:
            raise ValueError(f"n_copies must be a positive integer, got {n_copies!r}")
        if dead_agents not in _DEAD_AGENT_MODES:
            raise ValueError(f"dead_agents must be one of {_DEAD_AGENT_MODES}, got {dead_agents!r}")
        if isinstance(agent_id, (bool, np.bool_)):
            agent_id = bool(agent_id)
        elif not (isinstance(agent_id, str) and agent_id == "type"):
            raise ValueError(f"agent_id must be False, True or 'type', got {agent_id!r}")
        if not isinstance(subprocess, bool):
            raise TypeError(f"subprocess must be a bool, got {subprocess!r}")
        if not isinstance(env_state, bool):
            raise TypeError(f"env_state must be a bool, got {env_state!r}")
        self.n_copies = int(n_copies)
        self.dead_agents = dead_agents
        self.agent_id = agent_id
        self.subprocess = subprocess
        self.closed = False
        self.waiting = False
        self._backend: _LocalBackend | _SubprocBackend
        if subprocess:
            self._backend = _SubprocBackend(env_fn, self.n_copies, dead_agents, agent_id,
                                            env_state, start_method)
        else:
            if start_method is not None:
                raise ValueError("start_method is only used with subprocess=True")
            self._backend = _LocalBackend(env_fn, self.n_copies, dead_agents, agent_id,
                                          env_state)
        try:
            layout = self._backend.layout(0)
            for i in range(1, self.n_copies):
                other = self._backend.layout(i)
                if (other.possible_agents != layout.possible_agents
                        or other.observation_space != layout.observation_space
                        or other.action_space != layout.action_space
                        or other.state_space != layout.state_space):
                    raise ValueError(
                        f"copy {i} differs from copy 0 (possible_agents / spaces): "
                        f"{other.possible_agents} {other.observation_space} {other.action_space} vs "
                        f"{layout.possible_agents} {layout.observation_space} {layout.action_space}")
            self._layout = layout
            self.env_state = env_state
            #: the env's global state space (``env_state=True``), else ``None``
            self.state_space = layout.state_space
            self.possible_agents: list[str] = list(layout.possible_agents)
            self.n_agents = len(self.possible_agents)
            self.row_agents: list[str] = self.possible_agents * self.n_copies
            self.row_copies = np.repeat(np.arange(self.n_copies), self.n_agents)
            self._actions: np.ndarray | None = None
            super().__init__(self.n_copies * self.n_agents, layout.observation_space,
                             layout.action_space)
        except BaseException:
            self._backend.close()
            raise
        self._images_per_copy = False
        self._reset_seeds()
        self._reset_options()

    # ---- rows <-> copies ----------------------------------------------------------------
    def copy_rows(self, copy: int) -> slice:
        """The rows of copy ``copy``."""
        if not 0 <= copy < self.n_copies:
            raise ValueError(f"copy must be in [0, {self.n_copies}), got {copy}")
        return slice(copy * self.n_agents, (copy + 1) * self.n_agents)

    def _rows_and_copies(self, indices: VecEnvIndices) -> tuple[list[int], list[int]]:
        rows = [int(r) for r in self._get_indices(indices)]
        for r in rows:
            if not 0 <= r < self.num_envs:
                raise ValueError(f"row index {r} out of range [0, {self.num_envs})")
        copies = list(dict.fromkeys(r // self.n_agents for r in rows))
        return rows, copies

    def _recv_all(self, copies: Sequence[int]) -> list[Any]:
        """Receives the answer of every copy in ``copies`` (all of them, so no answer is left in a
        pipe), then raises the first error if any."""
        results: list[Any] = []
        error: BaseException | None = None
        for c in copies:
            try:
                results.append(self._backend.recv(c))
            except Exception as exc:
                results.append(None)
                error = error or exc
        if error is not None:
            raise error
        return results

    def _call(self, indices: VecEnvIndices, cmd: str, data: Any) -> list[Any]:
        rows, copies = self._rows_and_copies(indices)
        for c in copies:
            self._backend.send(c, cmd, data)
        results = dict(zip(copies, self._recv_all(copies)))
        return [results[r // self.n_agents] for r in rows]

    # ---- seeds / options (per copy) -----------------------------------------------------
    def _reset_seeds(self) -> None:
        self._seeds = [None for _ in range(self.n_copies)]

    def _reset_options(self) -> None:
        self._options = [{} for _ in range(self.n_copies)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Copy ``i`` is reset with ``seed + i`` at the next ``reset()`` (once). Returns the seed of
        each row (its copy's seed). ``None`` draws a random base seed."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = [int(seed) + i for i in range(self.n_copies)]
        return [self._seeds[c] for c in self.row_copies]

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options for the next ``reset()`` of each copy: one dict for all, or one per copy."""
        from copy import deepcopy

        if options is None:
            options = {}
        if isinstance(options, dict):
            self._options = deepcopy([options] * self.n_copies)
        else:
            options = list(options)
            if len(options) != self.n_copies:
                raise ValueError(f"set_options expects a dict or a list of {self.n_copies} dicts "
                                 f"(one per copy), got {len(options)}")
            self._options = deepcopy(options)

    # ---- VecEnv API ---------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        self._check_open()
        for c in range(self.n_copies):
            self._backend.send(c, "reset", (self._seeds[c], self._options[c] or None))
        results = self._recv_all(range(self.n_copies))
        self._reset_seeds()
        self._reset_options()
        obs = np.concatenate([r[0] for r in results], axis=0)
        self.reset_infos = [info for r in results for info in r[1]]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._check_open()
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"expected actions for {self.num_envs} rows, got shape {actions.shape}")
        for c in range(self.n_copies):
            self._backend.send(c, "step", actions[self.copy_rows(c)])
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        try:
            results = self._recv_all(range(self.n_copies))
        finally:
            self.waiting = False
        obs = np.concatenate([r[0] for r in results], axis=0)
        rewards = np.concatenate([r[1] for r in results], axis=0)
        dones = np.concatenate([r[2] for r in results], axis=0)
        infos: list[dict[str, Any]] = [info for r in results for info in r[3]]
        for c, r in enumerate(results):
            if r[4] is not None:
                self.reset_infos[self.copy_rows(c)] = r[4]
        return obs, rewards, dones, infos

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting and self.subprocess:
            for c in range(self.n_copies):
                try:
                    self._backend.recv(c)
                except Exception:
                    pass
        self.waiting = False
        self._backend.close()
        self.closed = True

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._call(indices, "get_attr", attr_name)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._call(indices, "set_attr", (attr_name, value))

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._call(indices, "env_method", (method_name, method_args, method_kwargs))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """Whether each row's ParallelEnv has ``wrapper_class`` in its wrapper chain (PettingZoo
        wrappers, not gymnasium ones: SB3's ``Monitor`` is never found)."""
        return self._call(indices, "is_wrapped", wrapper_class)

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(f"The render mode is {self.render_mode}, but this method assumes it is "
                          f"`rgb_array` to obtain images.")
            n = self.n_copies if self._images_per_copy else self.num_envs
            return [None] * n
        per_copy = self._call([c * self.n_agents for c in range(self.n_copies)], "render", None)
        if self._images_per_copy:
            return per_copy
        return [per_copy[c] for c in self.row_copies]

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """SB3's render, tiling one image per copy (not per row)."""
        self._images_per_copy = True
        try:
            return super().render(mode=mode)
        finally:
            self._images_per_copy = False

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this PettingZooVecEnv is closed")
