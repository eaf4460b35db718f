"""SMAX (JaxMARL's JAX re-implementation of SMAC) as a PettingZoo ``ParallelEnv``.

:func:`make_smax` wraps JaxMARL's ``HeuristicEnemySMAX`` (the allies are the agents, the enemies
follow JaxMARL's heuristic, as in SMAC) and drives its functional API -- ``reset(key)``,
``step_env(key, state, actions)`` -- from one PRNG key stream per env: ``reset(seed=s)`` restarts
the stream from ``jax.random.PRNGKey(s)``, ``reset()`` continues it (the first ``reset()`` without a
seed draws one from numpy's entropy), and every reset and step splits its key from the stream. So
a seed fixes the whole trajectory for given actions.

Agents, spaces, rewards and ends
--------------------------------
* ``possible_agents``: ``ally_0 .. ally_{n-1}``; observations ``Box(-1, 1, (obs_size,), float32)``
  (JaxMARL's ``unit_list`` features); actions ``Discrete(5 + n_enemies)`` (4 moves, stop, attack
  enemy ``j``). An impossible action (attacking a dead or distant enemy) does nothing, as in SMAX.
* rewards: JaxMARL's, the same team reward for every ally (enemy health removed, normalised, plus
  ``won_battle_bonus`` on a win). The adapter's team return sums it over the allies still alive.
* a unit that dies leaves ``agents`` with ``terminated=True`` on that step (the
  :class:`~policies.marl.PettingZooVecEnv` ``dead_agents`` mode decides how its row sees it); its
  observation on that step is SMAX's observation of a dead unit, zeros.
* the episode ends when one side is wiped out (every ally left is ``terminated``) or at JaxMARL's
  time limit with both sides alive (``truncated``); JaxMARL checks its step counter before
  incrementing it, so ``max_steps=100`` (its default) ends on step 101.
* on the last step every ally's info has ``battle_won`` (one of :data:`~policies.marl.WIN_KEYS`):
  ``True`` when every enemy is dead and an ally is alive (SMAX's won-battle rule), so
  :class:`~policies.callbacks.TeamMetricsCallback` logs the win rate.
* ``state()`` returns SMAX's global ``world_state`` (``state_space``), for a centralised critic.

JaxMARL compiles ``reset`` / ``step_env`` per env object; envs made with the same map and keyword
arguments share one (stateless) JaxMARL env, so the copies of a ``PettingZooVecEnv`` compile once
per process. ``SMAXParallelEnv.step_batch`` steps several envs as one vmapped call, and
``PettingZooVecEnv``'s in-process backend uses it for its copies (one call per vector step instead
of one per copy); ``step`` is ``step_batch`` of one env. Needs ``pip install 'grsn_sj[smax]'``
(jaxmarl, jax on CPU, Python >= 3.11). This module is imported by :func:`policies.make_smax`
when called: ``import policies`` does not import jax.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

try:
    import jax
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO
    from pettingzoo import ParallelEnv
except ImportError as exc:
    raise ImportError(f"make_smax needs the smax extra (JaxMARL, jax, PettingZoo; Python >= "
                      f"3.11): pip install 'grsn_sj[smax]' ({exc})") from exc

__all__ = ["SMAXParallelEnv"]

_SMAX_ENVS: dict[Any, HeuristicEnemySMAX] = {}
_BATCHED_STEPS: dict[HeuristicEnemySMAX, Any] = {}  # per JaxMARL env (hashed by identity)


def _jaxmarl_env(map_name: str, env_kwargs: dict[str, Any]) -> HeuristicEnemySMAX:
    """JaxMARL's ``HeuristicEnemySMAX`` for ``map_name``, shared between equal requests."""
    if not isinstance(map_name, str) or map_name not in MAP_NAME_TO_SCENARIO:
        raise ValueError(f"unknown SMAX map {map_name!r}; JaxMARL's maps are "
                         f"{sorted(MAP_NAME_TO_SCENARIO)}")
    if "scenario" in env_kwargs:
        raise TypeError("make_smax takes the map by name (map_name), not a scenario= argument")
    try:
        key: Any = (map_name, tuple(sorted(env_kwargs.items())))
        hash(key)
    except TypeError:  # unhashable keyword values (e.g. arrays): a private env, compiled again
        key = None
    if key is not None and key in _SMAX_ENVS:
        return _SMAX_ENVS[key]
    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(map_name), **env_kwargs)
    if key is not None:
        _SMAX_ENVS[key] = env
    return env


def _batched_step(env: HeuristicEnemySMAX) -> Any:
    """The jitted step of ``n`` copies of ``env`` (one compile per ``env`` and ``n``): takes each
    copy's PRNG stream key and state (lists) and the stacked joint actions, splits every stream
    as ``reset``/``step`` do one by one (``stream, key = split(stream)``), runs JaxMARL's
    ``step_env`` under ``vmap`` and returns the new stream keys and states (lists again), and the
    observations, rewards, dones and ``unit_alive`` stacked over copies."""
    fn = _BATCHED_STEPS.get(env)
    if fn is None:
        def run(keys: list, states: list, actions: dict) -> tuple:
            split = jax.vmap(jax.random.split)(jax.numpy.stack(keys))
            stacked = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *states)
            obs, new, rewards, dones, _ = jax.vmap(env.step_env)(split[:, 1], stacked, actions)
            n = len(keys)
            new_states = [jax.tree_util.tree_map(lambda x, b=b: x[b], new) for b in range(n)]
            return ([split[b, 0] for b in range(n)], new_states, obs, rewards, dones,
                    new.state.unit_alive)

        fn = _BATCHED_STEPS[env] = jax.jit(run)
    return fn


def _box(space: Any) -> spaces.Box:
    return spaces.Box(low=float(space.low), high=float(space.high), shape=tuple(space.shape),
                      dtype=np.float32)


class SMAXParallelEnv(ParallelEnv):
    """The PettingZoo ParallelEnv over one SMAX map (see :mod:`policies.marl.smax`); build it with
    :func:`policies.make_smax`."""

    metadata = {"name": "smax_v0", "render_modes": [], "is_parallelizable": True}
    render_mode = None

    def __init__(self, map_name: str, **env_kwargs: Any) -> None:
        self._env = _jaxmarl_env(map_name, env_kwargs)
        self.map_name = map_name
        self.possible_agents: list[str] = list(self._env.agents)
        self.agents: list[str] = []
        self.num_allies = int(self._env.num_allies)
        self._obs_space = _box(self._env.observation_spaces[self.possible_agents[0]])
        jax_act = self._env.action_spaces[self.possible_agents[0]]
        if hasattr(jax_act, "n"):
            self._act_space: spaces.Space = spaces.Discrete(int(jax_act.n))
            self._noop: Any = np.int32(self._env.num_movement_actions - 1)  # "stop", for dead units
        else:
            self._act_space = _box(jax_act)
            self._noop = np.zeros(jax_act.shape, dtype=np.float32)
        self.state_space = spaces.Box(-np.inf, np.inf, (int(self._env.state_size),), np.float32)
        self._key: Any = None
        self._state: Any = None
        self._world_state: np.ndarray | None = None

    # ---- ParallelEnv API ----------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def _next_key(self) -> Any:
        self._key, key = jax.random.split(self._key)
        return key

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
                    or not 0 <= seed < 2 ** 32:
                raise ValueError(f"seed must be an integer in [0, 2**32) or None, got {seed!r}")
            self._key = jax.random.PRNGKey(int(seed))
        elif self._key is None:
            self._key = jax.random.PRNGKey(int(np.random.SeedSequence().generate_state(1)[0]))
        obs, state = self._env.reset(self._next_key())
        obs, state = jax.device_get((obs, state))
        # the state's arrays made strongly typed, as a step returns them (JaxMARL's reset leaves
        # one weakly typed), so the batched step compiles once, whichever copies just reset
        self._state = jax.tree_util.tree_map(jax.numpy.asarray, state)
        self.agents = list(self.possible_agents)
        self._world_state = np.asarray(obs["world_state"], dtype=np.float32)
        return ({a: np.asarray(obs[a], dtype=np.float32) for a in self.agents},
                {a: {} for a in self.agents})

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        return self.step_batch([self], [actions])[0]

    @classmethod
    def step_batch(cls, envs: Sequence[SMAXParallelEnv], actions: Sequence[dict[str, Any]]
                   ) -> list[tuple[dict, dict, dict, dict, dict]]:
        """``[env.step(a) for env, a in zip(envs, actions)]``, computed as one vmapped call per
        map: :class:`~policies.marl.PettingZooVecEnv`'s in-process copies of one map step
        together (``examples/bench_smax.py``, 8 copies of 3s_vs_5z on this project's CPU: 1.9-2.3x
        the VecEnv's agent-steps per second, 1.2-1.3x for RecurrentPPO with GRSNPolicy, the PPO
        update being most of what is left). Each env keeps its own state and PRNG key stream, so a
        seed fixes the trajectories as before; the numbers match stepping the envs one by one up
        to float rounding (XLA compiles the vmapped step for the batch size: differences of
        ~1e-7 in the observations, which can change a later discrete event)."""
        if len(envs) != len(actions):
            raise ValueError(f"step_batch got {len(envs)} envs and {len(actions)} action dicts")
        results: list[Any] = [None] * len(envs)
        groups: dict[int, list[int]] = {}
        for i, env in enumerate(envs):
            if env._state is None:
                raise RuntimeError("reset() must be called before step()")
            groups.setdefault(id(env._env), []).append(i)
        for members in groups.values():
            group = [envs[i] for i in members]
            first = group[0]
            joints = [env._joint(actions[i]) for env, i in zip(group, members)]
            joint = {a: np.stack([j[a] for j in joints]) for a in first.possible_agents}
            keys, states, obs, rewards, dones, alive = _batched_step(first._env)(
                [env._key for env in group], [env._state for env in group], joint)
            obs, rewards, dones, alive = jax.device_get((obs, rewards, dones, alive))
            for b, (env, i) in enumerate(zip(group, members)):
                env._key, env._state = keys[b], states[b]
                results[i] = env._finish_step({a: v[b] for a, v in obs.items()},
                                              {a: v[b] for a, v in rewards.items()},
                                              {a: v[b] for a, v in dones.items()}, alive[b])
        return results

    def _joint(self, actions: dict[str, Any]) -> dict[str, np.ndarray]:
        """Every possible agent's action for JaxMARL: the given ones for live agents, "stop"
        (or zeros) for the others."""
        return {a: np.asarray(actions.get(a, self._noop) if a in self.agents else self._noop,
                              dtype=np.asarray(self._noop).dtype)
                for a in self.possible_agents}

    def _finish_step(self, obs: dict, rewards: dict, dones: dict, alive: np.ndarray
                     ) -> tuple[dict, dict, dict, dict, dict]:
        """The ParallelEnv step's dicts from this env's slice of JaxMARL's outputs."""
        self._world_state = np.asarray(obs["world_state"], dtype=np.float32)
        over = bool(dones["__all__"])
        allies_alive = bool(alive[:self.num_allies].any())
        enemies_alive = bool(alive[self.num_allies:].any())
        decided = not (allies_alive and enemies_alive)
        acting = self.agents
        obs_d = {a: np.asarray(obs[a], dtype=np.float32) for a in acting}
        rew_d = {a: float(rewards[a]) for a in acting}
        term_d = {a: bool(dones[a]) or (over and decided) for a in acting}
        trunc_d = {a: over and not term_d[a] for a in acting}
        info_d: dict[str, dict] = {a: {} for a in acting}
        if over:
            won = allies_alive and not enemies_alive
            for info in info_d.values():
                info["battle_won"] = won
        self.agents = [a for a in acting if not (term_d[a] or trunc_d[a])]
        return obs_d, rew_d, term_d, trunc_d, info_d

    def state(self) -> np.ndarray:
        """SMAX's global world state (for a centralised critic)."""
        if self._world_state is None:
            raise RuntimeError("reset() must be called before state()")
        return self._world_state.copy()

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass

