"""Parameter-shared multi-agent RL: a PettingZoo ``ParallelEnv`` seen as one SB3 ``VecEnv``.

One SB3 policy controls every agent of a PettingZoo ParallelEnv: each (environment copy, agent)
pair is one row of the VecEnv, so sb3-contrib's ``RecurrentPPO`` keeps one recurrent state per
agent and trains one set of weights on the experience of all of them (parameter sharing).
SuperSuit is deliberately not used.

Public names
------------
* :class:`PettingZooVecEnv` -- the adapter (in-process or one subprocess per copy).
* :class:`TeamMetricsCallback` -- logs ``team/return_mean``, ``team/ep_len_mean``,
  ``team/win_rate`` from the adapter's per-copy ``info["team_episode"]``.
* :func:`make_spread_po` -- partially observed mpe2 ``simple_spread_v3`` (cooperative, N agents).
* :func:`make_speaker_listener` -- mpe2 ``simple_speaker_listener_v4`` (heterogeneous agents).
* :func:`make_pursuit` -- PettingZoo SISL ``pursuit_v5`` (needs ``pettingzoo[sisl]``).
* :data:`WIN_KEYS` -- the info keys read as a win / success flag.
* :func:`agent_type` -- an agent name's type (``"speaker_0"`` -> ``"speaker"``), for ``agent_id="type"``.

Row layout
----------
Rows are copy-major: row ``r`` is agent ``possible_agents[r % n_agents]`` of copy
``r // n_agents``; ``PettingZooVecEnv.row_agents`` / ``row_copies`` spell this out.

Episode ends (SB3 auto-reset semantics)
--------------------------------------
A copy's episode ends on the step where every agent that acted reports ``terminated`` or
``truncated``, or where ``env.agents`` becomes empty. On that step *every* row of the copy gets
``done=True``, ``info["terminal_observation"]`` (the row's last real observation, zeros for a row
whose agent was already gone) and ``info["TimeLimit.truncated"] = truncated and not terminated``
(the agent's own flags; ``False`` for a row whose agent was already gone, and ``False`` when the
episode ended by emptying ``env.agents`` without a flag, i.e. it is treated as a termination).
The copy is then reset at once (without a seed, like SB3's ``DummyVecEnv``) and the returned
observation of its rows is the first observation of the new episode; the reset infos are in
``reset_infos``. Every row of the copy also gets ``info["team_episode"] = {"r": team return,
"l": episode length, "copy": copy index}`` plus ``"win"`` (1.0 / 0.0) when the env reports one of
:data:`WIN_KEYS` in its final infos (1.0 if any agent's final info has a truthy value for one of
them). The team return is the sum of the rewards of the copy's rows over the episode.

Dead / absent agents
--------------------
An agent that is not in ``env.agents`` (it left before the end of the episode, or has not
appeared yet) has a zero observation (agent id included), zero reward and its row's action is
ignored. The reward an agent receives on the step it leaves is kept. ``info["agent_active"]`` on
every row (and in ``reset_infos``) tells whether the row's observation is real, i.e. whether its
next action will be applied. ``dead_agents`` chooses how a departure shows up in ``dones``:

* ``"mask"`` (default): ``done`` only at the copy's episode end, so the recurrent state of the row
  is reset together with the episode; on the departure step ``info["agent_final_observation"]``
  holds the agent's last real observation.
* ``"terminate"``: ``done=True`` on the departure step, with ``terminal_observation`` (the last real
  observation) and ``TimeLimit.truncated`` from the agent's own flags; afterwards each step of an
  inactive row is a one-step dummy episode (zero observation, zero reward, ``done=True``,
  ``terminal_observation`` zeros, ``TimeLimit.truncated=False``) until the copy resets or the
  agent (re)appears. Per-row episode counters such as ``VecMonitor`` then count these dummy
  episodes; use :class:`TeamMetricsCallback` for team statistics.

SB3 cannot leave rows out of the loss, so the ignored actions of inactive rows still enter PPO's
batch with zero reward; this is the usual cost of padding-based parameter sharing.

Heterogeneous agents (space unification)
---------------------------------------
Observations must be ``Box`` spaces (anything else, e.g. ``Dict`` or ``Discrete``, raises a
TypeError). If every agent has the same shape and ``agent_id`` is off, the shape is kept (image
observations stay images). Otherwise every observation is flattened (C order), zero-padded at the
end to the longest one, and, with ``agent_id=True``, a one-hot over ``possible_agents`` is appended
(``agent_id="type"``: a one-hot over agent types, the type being the name before its last ``"_"``
-- ``"speaker_0"`` -> ``"speaker"``; a name without ``"_"`` is its own type; types ordered by first
appearance in ``possible_agents``). The common ``Box`` bounds are the element-wise union of the
agents' bounds, widened to include 0 (padding and absent agents are zeros); its dtype is the
agents' common dtype (``numpy.result_type``).

Actions: identical spaces of any kind are passed through unchanged. ``Discrete`` spaces of
different sizes become ``Discrete(max n)``; an agent with ``n`` actions (and ``start`` s) receives
``s + (a % n)`` for a padded action ``a`` -- out-of-range actions wrap around (modulo), they are not
clipped. ``Box`` spaces of different shapes or bounds become one flat ``Box`` of the longest size
with the union of the bounds; an agent takes the first ``prod(shape)`` entries, reshaped and clipped
to its own bounds. Any other mix (e.g. ``Box`` and ``Discrete``, or different ``MultiDiscrete``)
raises a TypeError naming these options.

Subprocess copies
-----------------
With ``subprocess=True`` each copy runs in its own daemon process (``multiprocessing`` with a
``Pipe``, start method "forkserver" where available, else "spawn"; ``env_fn`` is sent with
cloudpickle). The per-copy logic is the same code in both modes, so both give identical results for
the same seeds. ``close()`` stops and joins the workers; a forgotten ``close()`` is done at garbage
collection / interpreter exit, and the daemon flag guarantees the interpreter does not hang.
``env_fn`` is called once per copy, in copy order (in the parent for in-process copies, in each
worker otherwise, so state captured by ``env_fn`` -- e.g. a counter -- is only shared in-process).
"""
from __future__ import annotations

import multiprocessing as mp
import numbers
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnv,
    VecEnvIndices,
    VecEnvStepReturn,
)

__all__ = [
    "WIN_KEYS",
    "agent_type",
    "PettingZooVecEnv",
    "TeamMetricsCallback",
    "make_pursuit",
    "make_speaker_listener",
    "make_spread_po",
]

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


# --------------------------------------------------------------------------------------------
# Space unification
# --------------------------------------------------------------------------------------------
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
        """The row action ``action`` as an action of agent ``k`` (see the module docstring)."""
        space = self.act_spaces[k]
        if self.action_mode == "discrete":
            a = int(np.asarray(action).reshape(-1)[0])
            return int(space.start) + a % int(space.n)
        if self.action_mode == "box":
            n = int(np.prod(space.shape))
            a = np.asarray(action, dtype=space.dtype).reshape(-1)[:n].reshape(space.shape)
            return np.clip(a, space.low, space.high).astype(space.dtype)
        return action


# --------------------------------------------------------------------------------------------
# One copy: the ParallelEnv <-> rows logic (shared by in-process and subprocess modes)
# --------------------------------------------------------------------------------------------
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


class _CopyRunner:
    """One ParallelEnv copy as ``n_agents`` rows (see the module docstring for the semantics)."""

    def __init__(self, env: Any, copy_index: int, dead_agents: str, agent_id: bool | str) -> None:
        self.env = env
        self.copy_index = copy_index
        self.dead_agents = dead_agents
        self.layout = _Layout.build(env, agent_id)
        n = self.layout.n_agents
        self._active = np.zeros(n, dtype=bool)
        self._last_obs = np.stack([self.layout.zeros() for _ in range(n)])
        self._ep_return = 0.0
        self._ep_len = 0

    # ---- helpers ------------------------------------------------------------------------
    def _live(self) -> set:
        return set(self.env.agents)

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
        return out, row_infos

    # ---- API ----------------------------------------------------------------------------
    def reset(self, seed: int | None, options: dict[str, Any] | None
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {"seed": seed}
        if options:
            kwargs["options"] = options
        obs, infos = self.env.reset(**kwargs)
        return self._from_reset(obs, infos)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Steps the copy; returns ``(obs, rewards, dones, infos, reset_infos or None)``."""
        lay = self.layout
        agents = lay.possible_agents
        active_before = self._active.copy()
        action_dict = {a: lay.decode(k, actions[k]) for k, a in enumerate(agents)
                       if active_before[k]}
        obs_d, rew_d, term_d, trunc_d, info_d = self.env.step(action_dict)
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
            for k in range(n):
                dones[k] = True
                infos[k]["terminal_observation"] = final_obs[k] if active_before[k] else lay.zeros()
                infos[k]["TimeLimit.truncated"] = bool(active_before[k] and truncated[k]
                                                       and not terminated[k])
                infos[k]["team_episode"] = dict(team)
            obs, reset_infos = self.env.reset()
            new_obs, reset_row_infos = self._from_reset(obs, reset_infos)
            for k in range(n):
                infos[k]["agent_active"] = bool(self._active[k])
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
        return out, rewards, dones, infos, None

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


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


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
class _RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the cause of the re-raised exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper,
            copy_index: int, dead_agents: str, agent_id: bool | str) -> None:
    """Subprocess loop: one copy, commands ``(cmd, data)`` in, ``(ok, payload)`` out."""
    import cloudpickle

    parent_remote.close()
    runner: _CopyRunner | None = None
    try:
        runner = _CopyRunner(env_fn_wrapper.var(), copy_index, dead_agents, agent_id)
        remote.send((True, None))
    except Exception as exc:  # report construction errors to the parent
        remote.send((False, _picklable(exc, cloudpickle), traceback.format_exc()))
        remote.close()
        return
    while True:
        try:
            cmd, data = remote.recv()
        except (EOFError, KeyboardInterrupt, OSError):
            break
        if cmd == "close":
            try:
                runner.close()
            finally:
                remote.send((True, None))
                remote.close()
            break
        try:
            result = _execute(runner, cmd, data)
            remote.send((True, result))
        except (BrokenPipeError, EOFError):
            break
        except Exception as exc:
            remote.send((False, _picklable(exc, cloudpickle), traceback.format_exc()))


def _picklable(exc: BaseException, cloudpickle: Any) -> BaseException:
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(repr(exc))


def _shutdown_workers(remotes: Sequence[Any], processes: Sequence[Any]) -> None:
    """Stops the workers (used by ``close()`` and, if it was forgotten, at GC / exit)."""
    for remote in remotes:
        try:
            remote.send(("close", None))
        except (OSError, BrokenPipeError, EOFError, ValueError):
            pass
    for remote in remotes:
        try:
            if remote.poll(5.0):
                remote.recv()
        except (OSError, EOFError, ValueError):
            pass
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=1.0)
    for remote in remotes:
        try:
            remote.close()
        except OSError:
            pass


class _LocalBackend:
    """Copies in this process; commands run when their result is received."""

    def __init__(self, env_fn: Callable[[], Any], n_copies: int, dead_agents: str,
                 agent_id: bool | str) -> None:
        envs = [env_fn() for _ in range(n_copies)]
        if len({id(e) for e in envs}) != len(envs):
            raise ValueError("env_fn returned the same ParallelEnv instance twice; it must create a "
                             "new environment at every call")
        self.runners = [_CopyRunner(e, i, dead_agents, agent_id) for i, e in enumerate(envs)]
        self._pending: list[tuple[str, Any] | None] = [None] * n_copies

    def send(self, copy: int, cmd: str, data: Any) -> None:
        self._pending[copy] = (cmd, data)

    def recv(self, copy: int) -> Any:
        pending = self._pending[copy]
        if pending is None:
            raise RuntimeError(f"no command pending for copy {copy}")
        self._pending[copy] = None
        return _execute(self.runners[copy], *pending)

    def layout(self, copy: int) -> _Layout:
        return self.runners[copy].layout

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


class _SubprocBackend:
    """One daemon process per copy, talking over a ``Pipe``."""

    def __init__(self, env_fn: Callable[[], Any], n_copies: int, dead_agents: str,
                 agent_id: bool | str, start_method: str | None) -> None:
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available here; choose one of "
                             f"{mp.get_all_start_methods()}")
        ctx = mp.get_context(start_method)
        pipes = [ctx.Pipe() for _ in range(n_copies)]
        self.remotes = [p[0] for p in pipes]
        self.processes = []
        wrapped = CloudpickleWrapper(env_fn)
        for i, (remote, work_remote) in enumerate(pipes):
            process = ctx.Process(target=_worker,
                                  args=(work_remote, remote, wrapped, i, dead_agents, agent_id),
                                  daemon=True)
            process.start()
            self.processes.append(process)
            work_remote.close()
        self._finalizer = weakref.finalize(self, _shutdown_workers, self.remotes, self.processes)
        try:
            for i in range(n_copies):
                self._result(i)
            for i in range(n_copies):
                self.send(i, "layout", None)
            self._layouts: list[_Layout] = [self.recv(i) for i in range(n_copies)]
        except BaseException:
            self.close()
            raise

    def _result(self, copy: int) -> Any:
        try:
            msg = self.remotes[copy].recv()
        except EOFError as exc:
            raise RuntimeError(f"the worker process of copy {copy} died (exit code "
                               f"{self.processes[copy].exitcode})") from exc
        if msg[0]:
            return msg[1]
        _, exc, tb = msg
        raise exc from _RemoteTraceback(f"in the worker of copy {copy}:\n{tb}")

    def send(self, copy: int, cmd: str, data: Any) -> None:
        self.remotes[copy].send((cmd, data))

    def recv(self, copy: int) -> Any:
        return self._result(copy)

    def layout(self, copy: int) -> _Layout:
        return self._layouts[copy]

    def close(self) -> None:
        self._finalizer()


# --------------------------------------------------------------------------------------------
# The VecEnv
# --------------------------------------------------------------------------------------------
class PettingZooVecEnv(VecEnv):
    """A PettingZoo ``ParallelEnv`` as an SB3 ``VecEnv`` with one row per (copy, agent).

    :param env_fn: zero-argument callable returning a new PettingZoo ParallelEnv; called once per
        copy, in copy order. All copies must have the same ``possible_agents`` and spaces.
    :param n_copies: number of environment copies (``num_envs = n_copies * n_agents``).
    :param dead_agents: ``"mask"`` (done only at the copy's episode end) or ``"terminate"``
        (done on the step an agent leaves, then one-step dummy episodes); see the module docstring.
    :param agent_id: ``False``, ``True`` (append a one-hot over ``possible_agents``) or ``"type"``
        (a one-hot over agent types, the name before its last ``"_"``).
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
        self.n_copies = int(n_copies)
        self.dead_agents = dead_agents
        self.agent_id = agent_id
        self.subprocess = subprocess
        self.closed = False
        self.waiting = False
        self._backend: _LocalBackend | _SubprocBackend
        if subprocess:
            self._backend = _SubprocBackend(env_fn, self.n_copies, dead_agents, agent_id,
                                            start_method)
        else:
            if start_method is not None:
                raise ValueError("start_method is only used with subprocess=True")
            self._backend = _LocalBackend(env_fn, self.n_copies, dead_agents, agent_id)
        try:
            layout = self._backend.layout(0)
            for i in range(1, self.n_copies):
                other = self._backend.layout(i)
                if (other.possible_agents != layout.possible_agents
                        or other.observation_space != layout.observation_space
                        or other.action_space != layout.action_space):
                    raise ValueError(
                        f"copy {i} differs from copy 0 (possible_agents / spaces): "
                        f"{other.possible_agents} {other.observation_space} {other.action_space} vs "
                        f"{layout.possible_agents} {layout.observation_space} {layout.action_space}")
            self._layout = layout
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
        self._seeds = [None for _ in range(getattr(self, "n_copies", self.num_envs))]

    def _reset_options(self) -> None:
        self._options = [{} for _ in range(getattr(self, "n_copies", self.num_envs))]

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


# --------------------------------------------------------------------------------------------
# Team metrics
# --------------------------------------------------------------------------------------------
class TeamMetricsCallback(BaseCallback):
    """Logs team statistics of :class:`PettingZooVecEnv` episodes (one entry per copy episode).

    At every step it reads ``info["team_episode"]`` (set by the adapter on the rows of a copy whose
    episode ended; counted once per copy) and keeps the last ``window`` team returns (sum over
    agents and steps), episode lengths and, when the env reported one of :data:`WIN_KEYS`, wins.
    At each rollout end it records ``team/return_mean``, ``team/ep_len_mean``, ``team/win_rate``
    (only when wins were reported) and ``team/episodes`` (total count) in SB3's logger. Rows of
    per-agent episodes (``VecMonitor``'s ``episode``) are not used. Works through VecEnv wrappers
    that pass infos on (e.g. ``VecNormalize``: the team return stays unnormalised).

    :param window: size of the rolling window.
    """

    def __init__(self, window: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = int(window)
        self.returns: deque[float] = deque(maxlen=self.window)
        self.lengths: deque[int] = deque(maxlen=self.window)
        self.wins: deque[float] = deque(maxlen=self.window)
        self.n_episodes = 0

    def _on_step(self) -> bool:
        infos = self.locals.get("infos")
        if not infos:
            return True
        seen: set[Any] = set()
        for idx, info in enumerate(infos):
            team = info.get("team_episode") if isinstance(info, dict) else None
            if team is None:
                continue
            key = team.get("copy", idx)
            if key in seen:
                continue
            seen.add(key)
            self.returns.append(float(team["r"]))
            self.lengths.append(int(team["l"]))
            if "win" in team:
                self.wins.append(float(team["win"]))
            self.n_episodes += 1
        return True

    def _on_rollout_end(self) -> None:
        self.record()

    def record(self) -> None:
        """Writes the current window's statistics to the logger (called at each rollout end)."""
        if not self.returns:
            return
        self.logger.record("team/return_mean", float(np.mean(self.returns)))
        self.logger.record("team/ep_len_mean", float(np.mean(self.lengths)))
        self.logger.record("team/episodes", self.n_episodes)
        if self.wins:
            self.logger.record("team/win_rate", float(np.mean(self.wins)))


# --------------------------------------------------------------------------------------------
# Environment factories
# --------------------------------------------------------------------------------------------
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
