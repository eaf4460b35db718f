"""PettingZoo -> SB3 VecEnv adapter (policies.marl): contract, episode ends, dead agents, padding,
seeding, RecurrentPPO state resets, subprocess copies, team metrics, env factories."""
from __future__ import annotations

import csv
import functools
import itertools
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import gymnasium as gym
import torch as th
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test
from pettingzoo.utils.wrappers import BaseParallelWrapper
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import tile_images

from policies import GRSNPolicy
from policies.marl import (
    WIN_KEYS,
    PettingZooVecEnv,
    TeamMetricsCallback,
    evaluate_team,
    make_pursuit,
    make_speaker_listener,
    make_spread_po,
    team_episodes,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The networks here are tiny: one intra-op thread avoids OpenMP spin-waiting on a busy
    machine (10-20x slower with 2 threads under load), and keeps the timings predictable."""
    n = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n)


# ------------------------------------------------------------------------------------------
# toy ParallelEnvs with exact control
# ------------------------------------------------------------------------------------------
class ToyEnv(ParallelEnv):
    """Agents ``names``; agent k's observation at time t is ``100 * (k + 1) + t + arange(size)``
    reshaped to its shape; its reward is ``k + 1`` every step. ``max_cycles`` truncates,
    ``terminate_at`` terminates, ``deaths={agent: t}`` terminates one agent at step t (it leaves
    ``agents``), ``win`` puts ``{"is_success": win}`` in the final infos, ``ghost_reward`` is
    reported for departed agents (the adapter must ignore it). Records the last actions."""

    metadata = {"name": "toy_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}

    def __init__(self, names=("a_0", "a_1"), max_cycles=5, terminate_at=None, deaths=None,
                 win=None, obs_shapes=None, n_actions=None, render_mode=None, ghost_reward=None):
        self.possible_agents = list(names)
        self.max_cycles = max_cycles
        self.terminate_at = terminate_at
        self.deaths = dict(deaths or {})
        self.win = win
        self.ghost_reward = ghost_reward
        shapes = obs_shapes or [(2,)] * len(names)
        ns = n_actions or [3] * len(names)
        self._obs_spaces = {a: spaces.Box(0.0, 1000.0, shape, np.float32)
                            for a, shape in zip(names, shapes)}
        self._act_spaces = {a: spaces.Discrete(n) for a, n in zip(names, ns)}
        self.render_mode = render_mode
        self.t = 0
        self.agents: list[str] = []
        self.last_actions: dict[str, Any] = {}
        self.reset_seeds: list[Any] = []

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._act_spaces[agent]

    def _obs(self, agent):
        k = self.possible_agents.index(agent)
        space = self._obs_spaces[agent]
        size = int(np.prod(space.shape))
        return (100.0 * (k + 1) + self.t + np.arange(size, dtype=np.float32)).reshape(space.shape)

    def reset(self, seed=None, options=None):
        self.reset_seeds.append(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: {"t": 0} for a in self.agents}

    def step(self, actions):
        self.last_actions = dict(actions)
        self.t += 1
        obs = {a: self._obs(a) for a in self.agents}
        rew = {a: float(self.possible_agents.index(a) + 1) for a in self.agents}
        if self.ghost_reward is not None:  # some envs keep reporting rewards for departed agents
            rew.update({a: self.ghost_reward for a in self.possible_agents if a not in rew})
        end_term = self.terminate_at is not None and self.t >= self.terminate_at
        end_trunc = self.t >= self.max_cycles
        term = {a: end_term or self.deaths.get(a) == self.t for a in self.agents}
        trunc = {a: end_trunc for a in self.agents}
        infos = {a: {"t": self.t} for a in self.agents}
        if (end_term or end_trunc) and self.win is not None:
            for a in self.agents:
                infos[a]["is_success"] = self.win
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos

    def render(self):
        return np.full((4, 4, 3), self.t, dtype=np.uint8)


def toy(**kw):
    return functools.partial(ToyEnv, **kw)


HETERO = dict(names=("speaker_0", "listener_0", "listener_1"),
              obs_shapes=[(3,), (2, 2), (2, 2)], n_actions=[3, 5, 5])


def check_vecenv(venv: PettingZooVecEnv, n_steps: int = 40) -> None:
    """The SB3 VecEnv contract (the VecEnv counterpart of SB3's env_checker)."""
    n = venv.num_envs
    assert n == venv.n_copies * venv.n_agents
    assert isinstance(venv.observation_space, spaces.Box)
    assert isinstance(venv.action_space, (spaces.Discrete, spaces.Box))
    assert len(venv.seed(123)) == n
    obs = venv.reset()
    assert isinstance(obs, np.ndarray)
    assert obs.shape == (n, *venv.observation_space.shape)
    assert obs.dtype == venv.observation_space.dtype
    assert all(venv.observation_space.contains(o) for o in obs)
    assert len(venv.reset_infos) == n and all(isinstance(i, dict) for i in venv.reset_infos)
    assert all(isinstance(i["agent_active"], bool) for i in venv.reset_infos)
    venv.action_space.seed(0)
    for _ in range(n_steps):
        actions = np.stack([venv.action_space.sample() for _ in range(n)])
        obs, rewards, dones, infos = venv.step(actions)
        assert obs.shape == (n, *venv.observation_space.shape)
        assert obs.dtype == venv.observation_space.dtype
        assert all(venv.observation_space.contains(o) for o in obs)
        assert rewards.shape == (n,) and np.issubdtype(rewards.dtype, np.floating)
        assert dones.shape == (n,) and dones.dtype == bool
        assert isinstance(infos, (list, tuple)) and len(infos) == n
        for done, info in zip(dones, infos):
            assert isinstance(info["agent_active"], bool)
            if done:
                assert venv.observation_space.contains(info["terminal_observation"])
                assert isinstance(info["TimeLimit.truncated"], bool)
    assert len(venv.get_attr("render_mode")) == n
    assert len(venv.get_attr("possible_agents", indices=[0, n - 1])) == 2
    assert venv.env_is_wrapped(BaseParallelWrapper) == [False] * n
    assert venv.has_attr("possible_agents") and not venv.has_attr("no_such_attribute_xyz")
    # SB3's own VecEnv wrappers accept it
    wrapped = VecNormalize(VecMonitor(venv))
    wrapped.reset()
    wrapped.step(np.stack([venv.action_space.sample() for _ in range(n)]))


# ------------------------------------------------------------------------------------------
# PettingZoo API on the envs used
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [make_spread_po, make_speaker_listener,
                                     toy(deaths={"a_1": 2}, max_cycles=4, win=True),
                                     toy(**HETERO)],
                         ids=["spread_po", "speaker_listener", "toy_deaths", "toy_hetero"])
def test_parallel_api(factory):
    parallel_api_test(factory(), num_cycles=60)


def test_spread_po_layout():
    env = make_spread_po()
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
    assert all(env.observation_space(a).shape == (12,) for a in env.possible_agents)
    assert all(env.action_space(a) == spaces.Discrete(5) for a in env.possible_agents)
    obs, _ = env.reset(seed=3)
    world = env.unwrapped.world
    me, others = world.agents[0], world.agents[1:]
    o = obs["agent_0"]
    np.testing.assert_allclose(o[0:2], me.state.p_vel, atol=1e-6)
    np.testing.assert_allclose(o[2:4], me.state.p_pos, atol=1e-6)
    rel_lm = sorted((lm.state.p_pos - me.state.p_pos for lm in world.landmarks),
                    key=lambda d: np.linalg.norm(d))
    np.testing.assert_allclose(o[4:8], np.concatenate(rel_lm[:2]), atol=1e-6)
    rel_ag = min((a.state.p_pos - me.state.p_pos for a in others), key=lambda d: np.linalg.norm(d))
    np.testing.assert_allclose(o[8:10], rel_ag, atol=1e-6)
    np.testing.assert_array_equal(o[10:12], 0.0)


# ------------------------------------------------------------------------------------------
# SB3 VecEnv contract
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory,kw", [
    (make_spread_po, {}),
    (make_speaker_listener, {"agent_id": True}),
    (toy(deaths={"a_1": 2}, max_cycles=4), {"dead_agents": "terminate"}),
    (toy(**HETERO), {"agent_id": "type"}),
], ids=["spread_po", "speaker_listener", "toy_terminate", "toy_hetero"])
def test_vecenv_contract(factory, kw):
    venv = PettingZooVecEnv(factory, 2, **kw)
    check_vecenv(venv)
    venv.close()
    venv.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()


def test_pursuit_if_installed():
    pytest.importorskip("pymunk")
    parallel_api_test(make_pursuit(max_cycles=30), num_cycles=40)
    venv = PettingZooVecEnv(functools.partial(make_pursuit, max_cycles=30), 1)
    assert venv.num_envs == 8 and venv.observation_space.shape == (7, 7, 3)
    check_vecenv(venv, n_steps=35)
    venv.close()


def test_rows_are_copy_major_and_attrs_address_rows():
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=3 + next(counter)), 2)
    assert venv.row_agents == ["a_0", "a_1", "a_0", "a_1"]
    np.testing.assert_array_equal(venv.row_copies, [0, 0, 1, 1])
    assert venv.get_attr("max_cycles") == [3, 3, 4, 4]
    assert venv.get_attr("max_cycles", indices=[3, 0]) == [4, 3]
    venv.set_attr("max_cycles", 9, indices=[2])
    assert venv.get_attr("max_cycles") == [3, 3, 9, 9]
    # env_method runs once per distinct copy, its result repeated for each row of that copy
    venv.reset()
    assert venv.env_method("_obs", "a_1", indices=[1, 2]) == [pytest.approx([200, 201])] * 2
    envs = [venv._backend.runners[c].env for c in range(2)]
    n_resets = [len(e.reset_seeds) for e in envs]
    venv.env_method("reset", indices=[0, 1, 3])
    assert [len(e.reset_seeds) for e in envs] == [n_resets[0] + 1, n_resets[1] + 1]
    with pytest.raises(ValueError, match="out of range"):
        venv.get_attr("max_cycles", indices=[4])


def test_seed_applies_once_per_copy():
    venv = PettingZooVecEnv(toy(), 3)
    envs = [venv._backend.runners[c].env for c in range(3)]
    assert venv.seed(10) == [10, 10, 11, 11, 12, 12]
    venv.reset()
    assert [e.reset_seeds[-1] for e in envs] == [10, 11, 12]
    venv.reset()
    assert [e.reset_seeds[-1] for e in envs] == [None, None, None]
    # real env: copy i is exactly env.reset(seed=seed + i)
    venv = PettingZooVecEnv(make_spread_po, 2)
    venv.seed(5)
    obs = venv.reset()
    for c in range(2):
        ref, _ = make_spread_po().reset(seed=5 + c)
        np.testing.assert_array_equal(obs[3 * c:3 * c + 3], np.stack(list(ref.values())))
    venv.seed(5)
    np.testing.assert_array_equal(venv.reset(), obs)
    venv.seed(6)
    assert not np.array_equal(venv.reset()[:3], obs[:3])


def test_set_options():
    venv = PettingZooVecEnv(toy(), 2)
    venv.set_options({"x": 1})
    with pytest.raises(ValueError, match="one per copy"):
        venv.set_options([{}, {}, {}])


# ------------------------------------------------------------------------------------------
# episode ends
# ------------------------------------------------------------------------------------------
def expected_obs(k: int, t: int, size: int = 2) -> np.ndarray:
    return 100.0 * (k + 1) + t + np.arange(size, dtype=np.float32)


def test_truncation_done_on_the_right_step():
    venv = PettingZooVecEnv(toy(max_cycles=3), 2)
    obs = venv.reset()
    np.testing.assert_array_equal(obs[1], expected_obs(1, 0))
    for t in (1, 2):
        obs, rew, dones, infos = venv.step(np.zeros(4, dtype=int))
        assert not dones.any()
        assert all("terminal_observation" not in i and "TimeLimit.truncated" not in i for i in infos)
        np.testing.assert_array_equal(obs[3], expected_obs(1, t))
        np.testing.assert_array_equal(rew, [1, 2, 1, 2])
    obs, rew, dones, infos = venv.step(np.zeros(4, dtype=int))
    assert dones.all()
    for row, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(info["terminal_observation"], expected_obs(row % 2, 3))
        assert info["team_episode"] == {"r": 9.0, "l": 3, "copy": row // 2}
        np.testing.assert_array_equal(obs[row], expected_obs(row % 2, 0))  # auto-reset
    assert all(i["t"] == 0 for i in venv.reset_infos)


@pytest.mark.parametrize("max_cycles", [5, 2], ids=["terminated", "terminated_and_truncated"])
def test_termination_is_not_truncation(max_cycles):
    venv = PettingZooVecEnv(toy(terminate_at=2, max_cycles=max_cycles), 1)
    venv.reset()
    _, _, dones, _ = venv.step(np.zeros(2, dtype=int))
    assert not dones.any()
    obs, _, dones, infos = venv.step(np.zeros(2, dtype=int))
    assert dones.all()
    assert [i["TimeLimit.truncated"] for i in infos] == [False, False]
    np.testing.assert_array_equal(infos[0]["terminal_observation"], expected_obs(0, 2))


def test_copies_end_independently():
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=(2, 3)[next(counter)]), 2)
    venv.reset()
    done_steps = []
    for t in range(1, 7):
        _, _, dones, infos = venv.step(np.zeros(4, dtype=int))
        done_steps.append(dones.copy())
    done_steps = np.array(done_steps)
    np.testing.assert_array_equal(done_steps[:, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(done_steps[:, 0], done_steps[:, 1])
    np.testing.assert_array_equal(done_steps[:, 2], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(done_steps[:, 2], done_steps[:, 3])


# ------------------------------------------------------------------------------------------
# dead agents
# ------------------------------------------------------------------------------------------
DEATH = dict(names=("a_0", "a_1", "a_2"), deaths={"a_1": 2}, max_cycles=4)


def test_dead_agent_mask():
    venv = PettingZooVecEnv(toy(**DEATH, ghost_reward=-100.0), 1, dead_agents="mask")
    env = venv._backend.runners[0].env
    venv.reset()
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))
    assert env.last_actions == {"a_0": 1, "a_1": 2, "a_2": 0}
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))  # a_1 dies (t=2)
    np.testing.assert_array_equal(rew, [1, 2, 3])  # the reward of the death step is kept
    assert not dones.any()
    np.testing.assert_array_equal(obs[1], 0.0)
    np.testing.assert_array_equal(infos[1]["agent_final_observation"], expected_obs(1, 2))
    assert [i["agent_active"] for i in infos] == [True, False, True]
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))
    assert env.last_actions == {"a_0": 1, "a_2": 0}  # the dead row's action is ignored
    np.testing.assert_array_equal(rew, [1, 0, 3])
    assert not dones.any()
    np.testing.assert_array_equal(obs[1], 0.0)
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))  # t=4: truncation
    assert dones.all()
    assert [i["TimeLimit.truncated"] for i in infos] == [True, False, True]
    np.testing.assert_array_equal(infos[1]["terminal_observation"], 0.0)
    np.testing.assert_array_equal(infos[2]["terminal_observation"], expected_obs(2, 4))
    assert infos[0]["team_episode"]["r"] == 1 * 4 + 2 * 2 + 3 * 4
    assert [i["agent_active"] for i in infos] == [True, True, True]  # after the reset
    np.testing.assert_array_equal(obs[1], expected_obs(1, 0))


def test_dead_agent_terminate():
    venv = PettingZooVecEnv(toy(**DEATH, ghost_reward=-100.0), 1, dead_agents="terminate")
    env = venv._backend.runners[0].env
    venv.reset()
    venv.step(np.array([1, 2, 0]))
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))  # a_1 dies (t=2)
    np.testing.assert_array_equal(dones, [False, True, False])
    np.testing.assert_array_equal(rew, [1, 2, 3])
    np.testing.assert_array_equal(infos[1]["terminal_observation"], expected_obs(1, 2))
    assert infos[1]["TimeLimit.truncated"] is False
    np.testing.assert_array_equal(obs[1], 0.0)
    assert "terminal_observation" not in infos[0]
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))  # one-step dummy episode
    assert env.last_actions == {"a_0": 1, "a_2": 0}
    np.testing.assert_array_equal(dones, [False, True, False])
    np.testing.assert_array_equal(rew, [1, 0, 3])
    np.testing.assert_array_equal(infos[1]["terminal_observation"], 0.0)
    assert infos[1]["agent_active"] is False
    obs, rew, dones, infos = venv.step(np.array([1, 2, 0]))
    assert dones.all()
    assert [i["TimeLimit.truncated"] for i in infos] == [True, False, True]
    assert infos[1]["team_episode"]["r"] == 20.0
    np.testing.assert_array_equal(obs[1], expected_obs(1, 0))


# ------------------------------------------------------------------------------------------
# heterogeneous agents
# ------------------------------------------------------------------------------------------
def test_hetero_padding_and_agent_id():
    venv = PettingZooVecEnv(toy(**HETERO), 1, agent_id=True)
    assert venv.observation_space.shape == (7,)
    np.testing.assert_array_equal(venv.observation_space.low, 0.0)
    np.testing.assert_array_equal(venv.observation_space.high, [1000] * 4 + [1] * 3)
    assert venv.action_space == spaces.Discrete(5)
    obs = venv.reset()
    np.testing.assert_array_equal(obs, [[100, 101, 102, 0, 1, 0, 0],
                                        [200, 201, 202, 203, 0, 1, 0],
                                        [300, 301, 302, 303, 0, 0, 1]])
    obs, *_ = venv.step(np.array([4, 4, 2]))
    env = venv._backend.runners[0].env
    assert env.last_actions == {"speaker_0": 1, "listener_0": 4, "listener_1": 2}  # 4 % 3 == 1
    venv.step(np.array([3, 0, 1]))
    assert env.last_actions == {"speaker_0": 0, "listener_0": 0, "listener_1": 1}

    venv = PettingZooVecEnv(toy(**HETERO), 1, agent_id="type")
    np.testing.assert_array_equal(venv.reset(), [[100, 101, 102, 0, 1, 0],
                                                 [200, 201, 202, 203, 0, 1],
                                                 [300, 301, 302, 303, 0, 1]])
    venv = PettingZooVecEnv(toy(**HETERO), 1)
    np.testing.assert_array_equal(venv.reset(), [[100, 101, 102, 0],
                                                 [200, 201, 202, 203],
                                                 [300, 301, 302, 303]])


def test_same_shapes_are_kept_and_dead_id_is_zero():
    venv = PettingZooVecEnv(toy(obs_shapes=[(2, 2), (2, 2)]), 1)
    assert venv.observation_space.shape == (2, 2)
    venv = PettingZooVecEnv(toy(**DEATH), 1, agent_id=True)
    venv.reset()
    venv.step(np.zeros(3, dtype=int))
    obs, *_ = venv.step(np.zeros(3, dtype=int))
    np.testing.assert_array_equal(obs[1], np.zeros(5))
    np.testing.assert_array_equal(obs[2], [302, 303, 0, 0, 1])


class BoxActionToy(ToyEnv):
    def __init__(self, mixed=False):
        super().__init__()
        self._act_spaces = {"a_0": spaces.Box(-1, 1, (2,), np.float32),
                            "a_1": spaces.Discrete(2) if mixed else spaces.Box(0, 2, (3,), np.float32)}


class DictObsToy(ToyEnv):
    def __init__(self):
        super().__init__()
        self._obs_spaces = {a: spaces.Dict({"x": spaces.Box(0, 1, (2,))}) for a in self.possible_agents}


def test_box_actions_padded_and_clipped():
    venv = PettingZooVecEnv(BoxActionToy, 1)
    assert venv.action_space == spaces.Box(np.array([-1, -1, 0], np.float32),
                                           np.array([2, 2, 2], np.float32), dtype=np.float32)
    venv.reset()
    venv.step(np.array([[1.5, -0.5, 2.0], [3.0, 1.0, -1.0]], dtype=np.float32))
    acts = venv._backend.runners[0].env.last_actions
    np.testing.assert_array_equal(acts["a_0"], [1.0, -0.5])
    np.testing.assert_array_equal(acts["a_1"], [2.0, 1.0, 0.0])


def test_unsupported_spaces_raise():
    with pytest.raises(TypeError, match="agent_id"):
        PettingZooVecEnv(functools.partial(BoxActionToy, mixed=True), 1)
    with pytest.raises(TypeError, match="Dict"):
        PettingZooVecEnv(DictObsToy, 1)


@pytest.mark.parametrize("kw,err", [
    ({"n_copies": 0}, ValueError), ({"dead_agents": "drop"}, ValueError),
    ({"agent_id": "name"}, ValueError), ({"agent_id": 1}, ValueError),
    ({"subprocess": "yes"}, TypeError), ({"start_method": "spawn"}, ValueError),
])
def test_argument_validation(kw, err):
    kw = {"n_copies": 1, **kw}
    with pytest.raises(err):
        PettingZooVecEnv(toy(), **kw)


def test_same_instance_rejected():
    env = ToyEnv()
    with pytest.raises(ValueError, match="same ParallelEnv instance"):
        PettingZooVecEnv(lambda: env, 2)


def _spread_aec():
    from mpe2 import simple_spread_v3

    return simple_spread_v3.env(max_cycles=5)


class _NotAnEnv:
    possible_agents = ["a_0"]


@pytest.mark.parametrize("env_fn,got,fix", [
    (lambda: None, r"got NoneType", r"env_fn returns nothing: add the missing `return"),
    # rl_zoo3 (imported by test_zoo.py in the same session) replaces gymnasium's TimeLimit with
    # its PatchedTimeLimit subclass at import
    (lambda: gym.make("CartPole-v1"), r"got (Patched)?TimeLimit \(a gymnasium Env",
     r"make_vec_env"),
    (_spread_aec, r"got OrderEnforcingWrapper \(a PettingZoo AECEnv",
     r"pettingzoo\.utils\.conversions\.aec_to_parallel"),
    (_NotAnEnv, r"got _NotAnEnv \(no observation_space, action_space, reset, step\)",
     r"subclass pettingzoo\.ParallelEnv"),
], ids=["none", "gymnasium", "aec", "other"])
@pytest.mark.parametrize("subprocess", [False, True], ids=["local", "subprocess"])
def test_env_fn_must_return_a_parallel_env(env_fn, got, fix, subprocess):
    with pytest.raises(TypeError, match=r"env_fn must return a PettingZoo ParallelEnv") as info:
        PettingZooVecEnv(env_fn, n_copies=2, subprocess=subprocess)
    assert re.search(got, str(info.value)), str(info.value)
    assert re.search(fix, str(info.value)), str(info.value)


def test_aec_to_parallel_is_the_fix():
    from pettingzoo.utils.conversions import aec_to_parallel

    venv = PettingZooVecEnv(lambda: aec_to_parallel(_spread_aec()), 2)
    check_vecenv(venv, n_steps=12)
    venv.close()


def test_render_tiles_one_image_per_copy():
    venv = PettingZooVecEnv(toy(render_mode="rgb_array"), 3)
    assert venv.render_mode == "rgb_array"
    venv.reset()
    venv.step(np.zeros(6, dtype=int))
    images = venv.get_images()
    assert len(images) == 6 and all(img.shape == (4, 4, 3) for img in images)
    big = venv.render()
    np.testing.assert_array_equal(big, tile_images([np.full((4, 4, 3), 1, np.uint8)] * 3))


# ------------------------------------------------------------------------------------------
# SB3 algorithms: determinism and recurrent state resets
# ------------------------------------------------------------------------------------------
def _params(model) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in model.policy.parameters()]


def _train(algo, policy, seed, **kw):
    venv = PettingZooVecEnv(functools.partial(make_spread_po, max_cycles=10), 2)
    model = algo(policy, venv, seed=seed, device="cpu", **kw)
    model.learn(total_timesteps=2 * model.n_steps * venv.num_envs)
    venv.close()
    return _params(model)


@pytest.mark.parametrize("algo,policy,kw", [
    (PPO, "MlpPolicy", dict(n_steps=24, batch_size=48, n_epochs=2,
                            policy_kwargs=dict(net_arch=[32, 32]))),
    (RecurrentPPO, "MlpLstmPolicy", dict(n_steps=24, batch_size=48, n_epochs=2,
                                         policy_kwargs=dict(lstm_hidden_size=16,
                                                            net_arch=[32]))),
], ids=["PPO", "RecurrentPPO"])
def test_seeded_training_is_reproducible(algo, policy, kw):
    a = _train(algo, policy, 0, **kw)
    b = _train(algo, policy, 0, **kw)
    c = _train(algo, policy, 1, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


class _LstmResetProbe(BaseCallback):
    """At each step: the episode starts fed to the policy, and per row whether the actor's new
    LSTM state equals the one computed from a zero state (i.e. whether the state was reset)."""

    def __init__(self):
        super().__init__()
        self.starts: list[np.ndarray] = []
        self.matches_zero_state: list[np.ndarray] = []

    def _on_step(self) -> bool:
        loc = self.locals
        policy = self.model.policy
        starts = loc["episode_starts"].cpu().numpy().astype(bool)
        obs = loc["obs_tensor"]
        if getattr(policy, "obs_normalizer", None) is not None:  # what the actor reads
            obs = policy.obs_normalizer.normalize(obs)
        with th.no_grad():
            features = policy.extract_features(obs, policy.pi_features_extractor)
            h_prev = self.model._last_lstm_states.pi
            zero = (th.zeros_like(h_prev[0]), th.zeros_like(h_prev[1]))
            _, (h0, _) = policy._process_sequence(features, zero, th.ones(len(starts)),
                                                  policy.lstm_actor)
        h_new = loc["lstm_states"].pi[0]
        self.starts.append(starts)
        self.matches_zero_state.append(
            np.array([th.allclose(h_new[:, r], h0[:, r], atol=1e-6) for r in range(len(starts))]))
        return True


RECURRENT = [("MlpLstmPolicy", dict(lstm_hidden_size=8)),
             (GRSNPolicy, dict(grsn_hidden_size=8))]


@pytest.mark.parametrize("policy, policy_kwargs", RECURRENT, ids=["lstm", "grsn"])
def test_recurrent_state_reset_per_copy(policy, policy_kwargs):
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=(3, 5)[next(counter)]), 2)
    model = RecurrentPPO(policy, venv, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                         device="cpu", policy_kwargs=policy_kwargs)
    probe = _LstmResetProbe()
    model.learn(total_timesteps=2 * 16 * venv.num_envs, callback=probe)
    starts = np.array(probe.starts)  # (steps, rows)
    matches = np.array(probe.matches_zero_state)
    t = np.arange(len(starts))
    expected = np.stack([t % 3 == 0, t % 3 == 0, t % 5 == 0, t % 5 == 0], axis=1)
    np.testing.assert_array_equal(starts, expected)
    np.testing.assert_array_equal(matches, expected)  # reset exactly at the episode starts
    # the rollout buffer saw the same episode starts
    buffer_starts = model.rollout_buffer.episode_starts.reshape(venv.num_envs, 16).T  # flattened
    np.testing.assert_array_equal(buffer_starts.astype(bool), expected[16:])


@pytest.mark.parametrize("policy, policy_kwargs", RECURRENT, ids=["lstm", "grsn"])
def test_recurrent_ppo_learns_on_spread_po(policy, policy_kwargs):
    venv = PettingZooVecEnv(make_spread_po, 2, agent_id=True)
    model = RecurrentPPO(policy, venv, n_steps=32, batch_size=64, n_epochs=2, seed=0,
                         device="cpu", policy_kwargs=policy_kwargs)
    team = TeamMetricsCallback()
    model.learn(total_timesteps=2 * 32 * venv.num_envs, callback=team)
    assert model.num_timesteps == 384
    assert team.n_episodes == 4 and list(team.lengths) == [25] * 4
    assert all(np.isfinite(r) and r < 0 for r in team.returns)
    venv.close()


# ------------------------------------------------------------------------------------------
# team metrics
# ------------------------------------------------------------------------------------------
def test_team_metrics_callback_logs_team_return(tmp_path):
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=4, win=next(counter) % 2 == 0), 2)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    team = TeamMetricsCallback(window=10)
    model.learn(total_timesteps=2 * 8 * venv.num_envs, callback=team)
    assert team.n_episodes == 2 * 2 * 2  # 2 rollouts x 2 copies x 2 episodes of 4 steps
    assert list(team.returns) == [12.0] * 8  # (1 + 2) per step x 4 steps
    assert list(team.lengths) == [4] * 8
    assert list(team.wins) == [1.0, 0.0] * 4
    rows = list(csv.DictReader(open(tmp_path / "progress.csv")))
    assert [float(r["team/return_mean"]) for r in rows] == [12.0, 12.0]
    assert [float(r["team/ep_len_mean"]) for r in rows] == [4.0, 4.0]
    assert [float(r["team/win_rate"]) for r in rows] == [0.5, 0.5]


def test_win_keys():
    assert set(WIN_KEYS) == {"win", "won", "battle_won", "success", "is_success"}
    venv = PettingZooVecEnv(toy(max_cycles=1), 1)
    venv.reset()
    _, _, _, infos = venv.step(np.zeros(2, dtype=int))
    assert "win" not in infos[0]["team_episode"]
    venv = PettingZooVecEnv(toy(max_cycles=1, win=True), 1)
    venv.reset()
    _, _, _, infos = venv.step(np.zeros(2, dtype=int))
    assert infos[0]["team_episode"]["win"] == 1.0


def test_team_episodes_once_per_copy():
    a = {"r": 1.0, "l": 2, "copy": 0}
    b = {"r": 5.0, "l": 3, "copy": 1, "win": 1.0}
    loose = {"r": 7.0, "l": 1}  # no copy index: counts as its own
    infos = [{"team_episode": a}, {"team_episode": dict(a)}, {}, "not a dict",
             {"team_episode": b}, {"team_episode": dict(b)}, {"team_episode": loose},
             {"team_episode": dict(loose)}]
    assert team_episodes(infos) == [a, b, loose, loose]
    assert team_episodes([]) == []


class _ProbeModel:
    """A stand-in for an SB3 model: action 0, and records the recurrent-state protocol."""

    def __init__(self):
        self.calls: list[tuple[Any, np.ndarray, bool]] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        self.calls.append((state, np.array(episode_start), deterministic))
        return np.zeros(len(obs), dtype=int), ("state", len(self.calls))


def test_evaluate_team_takes_a_fixed_share_of_each_copy():
    # copy 0 ends every 2 steps (team return 3 x 2), copy 1 every 5 (3 x 5): taking the first 4
    # episodes to end would take 3 of copy 0; each copy must give 2
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=2 if next(counter) == 0 else 5), 2)
    model = _ProbeModel()
    mean, std, episodes = evaluate_team(model, venv, 4, deterministic=False)
    assert sorted((e["copy"], e["r"]) for e in episodes) == [(0, 6.0)] * 2 + [(1, 15.0)] * 2
    assert mean == 10.5 and std == 4.5
    assert len(model.calls) == 10  # until copy 1's second episode ends
    # state threaded, episode_start = previous step's dones, deterministic passed on
    assert model.calls[0][0] is None and model.calls[0][1].all()
    for t, (state, starts, det) in enumerate(model.calls[1:], start=1):
        assert state == ("state", t) and det is False
        assert starts.tolist() == [t % 2 == 0] * 2 + [t % 5 == 0] * 2
    # 3 episodes over 2 copies: (3 + c) // 2 -> copy 0 one, copy 1 two
    result = evaluate_team(_ProbeModel(), venv, 3)
    assert sorted(e["copy"] for e in result.episodes) == [0, 1, 1]
    assert sorted(result.returns.tolist()) == [6.0, 15.0, 15.0] and result.win_rate is None
    venv.close()


def test_evaluate_team_through_wrappers_and_win_rate():
    counter = itertools.count()
    venv = PettingZooVecEnv(lambda: ToyEnv(max_cycles=3, win=next(counter) == 0), 2)
    result = evaluate_team(_ProbeModel(), VecNormalize(VecMonitor(venv)), 6)
    assert result.returns.tolist() == [9.0] * 6  # unnormalised team returns
    assert result.win_rate == 0.5
    venv.close()


def test_evaluate_team_with_recurrent_ppo():
    venv = PettingZooVecEnv(toy(max_cycles=4), 2)
    model = RecurrentPPO(GRSNPolicy, venv, n_steps=8, batch_size=16, seed=0, device="cpu",
                         policy_kwargs=dict(lstm_hidden_size=8, net_arch=[]))
    mean, std, episodes = evaluate_team(model, venv, 5)
    assert len(episodes) == 5 and mean == 12.0 and std == 0.0
    venv.close()


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_evaluate_team_rejects_bad_episode_counts(n):
    venv = PettingZooVecEnv(toy(), 1)
    with pytest.raises(ValueError, match=f"n_episodes must be a positive integer, got {n!r}"):
        evaluate_team(_ProbeModel(), venv, n)


def test_evaluate_team_rejects_other_vec_envs():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("CartPole-v1", 2)
    with pytest.raises(TypeError, match="needs a PettingZooVecEnv.*got DummyVecEnv.*evaluate_policy"):
        evaluate_team(_ProbeModel(), venv, 2)


# ------------------------------------------------------------------------------------------
# subprocess copies
# ------------------------------------------------------------------------------------------
def test_subprocess_matches_in_process():
    fn = functools.partial(make_spread_po, max_cycles=7)
    local = PettingZooVecEnv(fn, 2, agent_id=True)
    remote = PettingZooVecEnv(fn, 2, agent_id=True, subprocess=True)
    try:
        assert remote.observation_space == local.observation_space
        assert remote.action_space == local.action_space
        local.seed(42)
        remote.seed(42)
        np.testing.assert_array_equal(remote.reset(), local.reset())
        rng = np.random.default_rng(0)
        n_done = 0
        for _ in range(16):
            actions = rng.integers(0, 5, size=local.num_envs)
            lo, lr, ld, li = local.step(actions)
            ro, rr, rd, ri = remote.step(actions)
            np.testing.assert_array_equal(ro, lo)
            np.testing.assert_array_equal(rr, lr)
            np.testing.assert_array_equal(rd, ld)
            for a, b in zip(ri, li):
                assert a.keys() == b.keys()
                if "terminal_observation" in a:
                    np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
                    assert a["team_episode"] == b["team_episode"]
            n_done += int(ld.any())
        assert n_done == 2
        assert remote.get_attr("max_cycles", indices=[0, 5]) == [7, 7]
        with pytest.raises(AttributeError):
            remote.env_method("no_such_method_xyz")
        assert remote.get_attr("max_cycles") == [7] * 6  # pipes still in sync after the error
    finally:
        local.close()
        start = time.perf_counter()
        remote.close()
    assert time.perf_counter() - start < 10
    assert not any(p.is_alive() for p in remote._backend.processes)


def test_forgotten_close_does_not_hang():
    script = textwrap.dedent("""
        import numpy as np
        from policies.marl import PettingZooVecEnv, make_spread_po
        if __name__ == "__main__":
            venv = PettingZooVecEnv(make_spread_po, 2, subprocess=True)
            venv.reset()
            venv.step(np.zeros(venv.num_envs, dtype=int))
            print("done", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout


# ------------------------------------------------------------------------------------------
# package structure
# ------------------------------------------------------------------------------------------
def test_policies_imports_without_pettingzoo():
    """pettingzoo / mpe2 / pymunk are the optional ``marl`` extra: ``import policies`` (and the
    adapter's package) must work without them; only the factories need them, when called."""
    script = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pettingzoo", "mpe2", "pymunk", "jax", "jaxmarl"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        import policies
        from policies import PettingZooVecEnv, TeamMetricsCallback, make_spread_po
        from policies.marl import TeamMetricsCallback as T
        assert T is TeamMetricsCallback
        try:
            make_spread_po()
        except ModuleNotFoundError as exc:
            print("factory needs", exc.name, flush=True)
        try:
            policies.make_smax("2s3z")
        except ImportError as exc:
            print("make_smax:", exc, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "factory needs mpe2" in proc.stdout
    assert "make_smax: make_smax needs the smax extra" in proc.stdout
    assert "pip install 'grsn_sj[smax]' (No module named 'jax')" in proc.stdout


def test_policies_does_not_import_jax():
    script = "import sys, policies, policies.marl; print(sorted({m.split('.')[0] for m in " \
             "sys.modules} & {'jax', 'jaxmarl', 'pettingzoo', 'mpe2'}))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_old_import_paths():
    import policies
    import policies.callbacks
    import policies.marl

    for name in ["PettingZooVecEnv", "TeamMetricsCallback", "WIN_KEYS", "agent_type",
                 "evaluate_team", "make_pursuit", "make_speaker_listener", "make_spread_po"]:
        assert getattr(policies, name) is getattr(policies.marl, name)
    assert policies.marl.TeamMetricsCallback is policies.callbacks.TeamMetricsCallback
    with pytest.raises(AttributeError, match="no_such_name"):
        policies.marl.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------------
# copies stepped together (an env class with step_batch, e.g. SMAX's vmapped step)
# ------------------------------------------------------------------------------------------
class BatchToyEnv(ToyEnv):
    """ToyEnv whose class steps several envs in one call (recorded in ``calls``)."""

    calls: list[int] = []

    @classmethod
    def step_batch(cls, envs, actions):
        cls.calls.append(len(envs))
        return [ToyEnv.step(env, a) for env, a in zip(envs, actions)]

    def step(self, actions):
        raise AssertionError("the in-process backend must step copies through step_batch")


def _rollout(venv, n_steps=12):
    venv.seed(0)
    out = [venv.reset()]
    rng = np.random.default_rng(1)
    for _ in range(n_steps):
        obs, rew, dones, infos = venv.step(rng.integers(0, 3, size=venv.num_envs))
        out.append((obs, rew, dones, [sorted((k, str(v)) for k, v in i.items()) for i in infos]))
    return out


@pytest.mark.parametrize("dead_agents", ["terminate", "mask"])
def test_copies_with_step_batch_step_together_and_give_the_same_rows(dead_agents):
    kw = dict(deaths={"a_1": 2}, max_cycles=4, win=True)
    BatchToyEnv.calls.clear()
    batched = _rollout(PettingZooVecEnv(functools.partial(BatchToyEnv, **kw), n_copies=3,
                                        dead_agents=dead_agents))
    assert BatchToyEnv.calls == [3] * 12  # one call per vector step, all copies in it
    one_by_one = _rollout(PettingZooVecEnv(toy(**kw), n_copies=3, dead_agents=dead_agents))
    for got, want in zip(batched, one_by_one):
        if isinstance(got, np.ndarray):
            np.testing.assert_array_equal(got, want)
            continue
        for g, w in zip(got, want):
            assert g == w if isinstance(g, list) else np.array_equal(g, w)


def test_step_batch_only_for_copies_of_one_class_in_process():
    kinds = itertools.cycle([BatchToyEnv, ToyEnv])
    mixed = PettingZooVecEnv(lambda: next(kinds)(), n_copies=2)
    assert mixed._backend._step_batch is None  # a class that cannot step the other's copies
    with pytest.raises(AssertionError, match="through step_batch"):
        mixed.reset()
        mixed.step(np.zeros(mixed.num_envs, dtype=int))  # so BatchToyEnv.step runs, one by one
