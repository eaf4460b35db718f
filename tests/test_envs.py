"""The POMDP task suite (policies.envs): masked ids, CueRecall, PrevActionRewardWrapper, make_env."""
from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from policies.envs import (
    CUE_RECALL_ID,
    MASKED_ENVS,
    POMDP_ENV_IDS,
    CueRecallEnv,
    ObservationSubsetWrapper,
    PrevActionRewardWrapper,
    make_env,
    register_envs,
)

register_envs()

EXPECTED_MASKS = {
    "CartPole-P-v0": ("CartPole-v1", [0, 2], 500),
    "CartPole-V-v0": ("CartPole-v1", [1, 3], 500),
    "Pendulum-P-v0": ("Pendulum-v1", [0, 1], 200),
    "Pendulum-V-v0": ("Pendulum-v1", [2], 200),
    "LunarLander-P-v0": ("LunarLander-v3", [0, 1, 4, 6, 7], 1000),
    "LunarLander-V-v0": ("LunarLander-v3", [2, 3, 5, 6, 7], 1000),
}


# ------------------------------------------------------------------------------------------
# masked ids
# ------------------------------------------------------------------------------------------
def test_id_table():
    assert set(MASKED_ENVS) == set(EXPECTED_MASKS)
    assert set(POMDP_ENV_IDS) == set(EXPECTED_MASKS) | {CUE_RECALL_ID}
    for env_id, (base_id, keep, _) in EXPECTED_MASKS.items():
        assert MASKED_ENVS[env_id] == (base_id, tuple(keep))


@pytest.mark.parametrize("env_id", sorted(EXPECTED_MASKS))
def test_masked_env_matches_base_env_at_kept_indices(env_id):
    base_id, keep, max_steps = EXPECTED_MASKS[env_id]
    env = gym.make(env_id)
    base = gym.make(base_id)
    assert env.spec.id == env_id
    assert env.spec.max_episode_steps == max_steps == gym.spec(base_id).max_episode_steps
    assert isinstance(env, gym.wrappers.TimeLimit)
    assert env.observation_space.shape == (len(keep),)
    assert env.observation_space.dtype == base.observation_space.dtype
    np.testing.assert_array_equal(env.observation_space.low, base.observation_space.low[keep])
    np.testing.assert_array_equal(env.observation_space.high, base.observation_space.high[keep])
    assert env.action_space == base.action_space

    actions = base.action_space
    actions.seed(3)
    n_checked = 0
    for episode in range(2):
        obs, _ = env.reset(seed=100 + episode)
        base_obs, _ = base.reset(seed=100 + episode)
        assert obs.shape == (len(keep),)
        np.testing.assert_array_equal(obs, base_obs[keep])
        for _ in range(40):
            action = actions.sample()
            obs, reward, term, trunc, _ = env.step(action)
            base_obs, base_reward, base_term, base_trunc, _ = base.step(action)
            np.testing.assert_array_equal(obs, base_obs[keep])
            assert (reward, term, trunc) == (base_reward, base_term, base_trunc)
            n_checked += 1
            if term or trunc:
                break
    assert n_checked >= 10


def test_masked_env_time_limit_truncates_at_base_limit():
    env = gym.make("Pendulum-V-v0")
    env.reset(seed=0)
    for t in range(1, 201):
        _, _, term, trunc, _ = env.step(np.zeros(1, dtype=np.float32))
        assert not term
        assert trunc == (t == 200)


def test_make_kwargs_pass_through():
    env = gym.make("CartPole-P-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert env.render_mode == "rgb_array"
    assert isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
    short = gym.make("CartPole-V-v0", max_episode_steps=7)
    assert short.spec.max_episode_steps == 7


def test_registration_is_idempotent():
    before = {env_id: gym.registry[env_id] for env_id in POMDP_ENV_IDS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert register_envs() == POMDP_ENV_IDS
        assert register_envs() == POMDP_ENV_IDS
    assert [str(w.message) for w in caught] == []
    for env_id in POMDP_ENV_IDS:
        assert gym.registry[env_id] is before[env_id]


def test_registration_conflict_raises():
    original = gym.registry[CUE_RECALL_ID]
    try:
        gym.registry[CUE_RECALL_ID] = gym.envs.registration.EnvSpec(
            id=CUE_RECALL_ID, entry_point="gymnasium.envs.classic_control:CartPoleEnv"
        )
        with pytest.raises(ValueError, match="already registered"):
            register_envs()
    finally:
        gym.registry[CUE_RECALL_ID] = original


def test_observation_subset_wrapper_errors():
    base = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="empty"):
        ObservationSubsetWrapper(base, [])
    with pytest.raises(ValueError, match="distinct"):
        ObservationSubsetWrapper(base, [0, 0])
    with pytest.raises(ValueError, match="out of range"):
        ObservationSubsetWrapper(base, [0, 4])
    with pytest.raises(ValueError, match="out of range"):
        ObservationSubsetWrapper(base, [-1])
    with pytest.raises(TypeError, match="integers"):
        ObservationSubsetWrapper(base, [0.0])
    with pytest.raises(TypeError, match="sequence"):
        ObservationSubsetWrapper(base, 0)
    with pytest.raises(TypeError, match="1-D Box"):
        ObservationSubsetWrapper(gym.make("FrozenLake-v1"), [0])
    wrapped = ObservationSubsetWrapper(base, [3, 1])
    obs, _ = wrapped.reset(seed=1)
    base_obs, _ = gym.make("CartPole-v1").reset(seed=1)
    np.testing.assert_array_equal(obs, base_obs[[3, 1]])


# ------------------------------------------------------------------------------------------
# CueRecall
# ------------------------------------------------------------------------------------------
def _run_episode(env: gym.Env, policy, seed: int) -> tuple[list[np.ndarray], list[float], int]:
    """Run one episode; ``policy(obs, memory) -> (action, memory)``. Returns obs, rewards, steps."""
    obs, _ = env.reset(seed=seed)
    observations, rewards, memory = [obs], [], None
    while True:
        action, memory = policy(obs, memory)
        obs, reward, term, trunc, _ = env.step(action)
        observations.append(obs)
        rewards.append(float(reward))
        assert not trunc
        if term:
            return observations, rewards, len(rewards)


def _perfect(obs, memory):
    if obs[1] == 1.0:  # the first observation holds the cue
        memory = int(obs[0] > 0)
    return memory, memory


@pytest.mark.parametrize("gap", [0, 1, 5])
def test_cue_recall_observations_and_episode_length(gap):
    env = CueRecallEnv(gap=gap)
    assert env.episode_length == gap + 2
    assert env.action_space == spaces.Discrete(2)
    rng = np.random.default_rng(0)
    cues = set()
    for seed in range(20):
        observations, rewards, length = _run_episode(
            env, lambda o, m: (int(rng.integers(2)), m), seed
        )
        assert length == gap + 2
        cue = observations[0][0]
        cues.add(float(cue))
        np.testing.assert_array_equal(observations[0], [cue, 1.0, 0.0])
        assert cue in (-1.0, 1.0)
        for obs in observations[1 : gap + 1]:
            np.testing.assert_array_equal(obs, [0.0, 0.0, 0.0])
        np.testing.assert_array_equal(observations[gap + 1], [0.0, 0.0, 1.0])
        np.testing.assert_array_equal(observations[gap + 2], [0.0, 0.0, 0.0])
        assert rewards[:-1] == [0.0] * (gap + 1)
        assert rewards[-1] in (-1.0, 1.0)
        for obs in observations:
            assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert cues == {-1.0, 1.0}


def test_cue_recall_answer_rewards():
    for cue_sign in (1.0, -1.0):
        for answer_correct in (True, False):
            env = CueRecallEnv(gap=2)
            seed = 0
            while env.reset(seed=seed)[0][0] != cue_sign:
                seed += 1
            for _ in range(3):  # intermediate actions are not scored, whatever they are
                _, reward, term, _, _ = env.step(int(cue_sign < 0))
                assert (reward, term) == (0.0, False)
            correct_action = int(cue_sign > 0)
            action = correct_action if answer_correct else 1 - correct_action
            _, reward, term, trunc, info = env.step(action)
            assert term and not trunc
            assert reward == (1.0 if answer_correct else -1.0)
            assert info == {"correct": answer_correct}
            with pytest.raises(RuntimeError, match="reset"):
                env.step(0)


def test_cue_recall_memoryless_policies_score_zero_and_perfect_scores_one():
    env = CueRecallEnv(gap=3)
    rng = np.random.default_rng(1)
    memoryless = {
        "always0": lambda o, m: (0, m),
        "always1": lambda o, m: (1, m),
        "random": lambda o, m: (int(rng.integers(2)), m),
        "answer_obs0": lambda o, m: (int(o[0] > 0), m),
        "answer_recall_flag": lambda o, m: (int(o[2]), m),
    }
    n = 1500
    for name, policy in memoryless.items():
        returns = [sum(_run_episode(env, policy, seed)[1]) for seed in range(n)]
        assert abs(np.mean(returns)) < 0.1, name
    # exactness: a deterministic memoryless policy wins on one cue and loses on the other
    by_cue: dict[float, set[float]] = {-1.0: set(), 1.0: set()}
    for seed in range(50):
        observations, rewards, _ = _run_episode(env, memoryless["answer_obs0"], seed)
        by_cue[float(observations[0][0])].add(sum(rewards))
    assert by_cue == {-1.0: {1.0}, 1.0: {-1.0}}
    perfect = [sum(_run_episode(env, _perfect, seed)[1]) for seed in range(300)]
    assert np.mean(perfect) == 1.0
    noisy = CueRecallEnv(gap=4, noise=0.7)
    assert np.mean([sum(_run_episode(noisy, _perfect, seed)[1]) for seed in range(100)]) == 1.0


def test_cue_recall_noise():
    env = CueRecallEnv(gap=4, noise=0.5)
    assert env.observation_space.low[0] == -np.inf and env.observation_space.high[0] == np.inf
    observations, _, _ = _run_episode(env, lambda o, m: (0, m), seed=3)
    assert observations[0][0] in (-1.0, 1.0) and observations[0][1] == 1.0
    distractors = np.array([obs[0] for obs in observations[1:5]])
    assert np.all(distractors != 0.0) and np.all(np.abs(distractors) < 5.0)
    np.testing.assert_array_equal([obs[1:] for obs in observations[1:5]], np.zeros((4, 2)))
    np.testing.assert_array_equal(observations[5], [0.0, 0.0, 1.0])


def test_cue_recall_seeding_reproducible():
    a, b = CueRecallEnv(gap=3, noise=0.3), CueRecallEnv(gap=3, noise=0.3)
    for seed in (0, 11, 12345):
        obs_a = _run_episode(a, lambda o, m: (0, m), seed)[0]
        obs_b = _run_episode(b, lambda o, m: (0, m), seed)[0]
        np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    first = [a.reset(seed=s)[0][0] for s in range(30)]
    assert first == [b.reset(seed=s)[0][0] for s in range(30)]
    assert set(first) == {-1.0, 1.0}
    assert not np.array_equal(
        np.stack(_run_episode(a, lambda o, m: (0, m), 1)[0]),
        np.stack(_run_episode(a, lambda o, m: (0, m), 2)[0]),
    )


@pytest.mark.parametrize("gap", [-1, 1.5, "3", True, None])
def test_cue_recall_bad_gap(gap):
    with pytest.raises(ValueError, match="gap"):
        CueRecallEnv(gap=gap)


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "x", None])
def test_cue_recall_bad_noise(noise):
    with pytest.raises(ValueError, match="noise"):
        CueRecallEnv(noise=noise)


def test_cue_recall_bad_action_and_render_mode():
    env = CueRecallEnv(gap=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (2, -1, 0.5, "a", [0, 1]):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    with pytest.raises(ValueError, match="render_mode"):
        CueRecallEnv(render_mode="human")


def test_cue_recall_registered_and_checked():
    env = gym.make(CUE_RECALL_ID, gap=2, render_mode="ansi")
    assert env.spec.id == CUE_RECALL_ID and env.unwrapped.gap == 2
    observations, _, length = _run_episode(env, _perfect, seed=0)
    assert length == 4
    assert "recall=" in env.render()
    default = gym.make(CUE_RECALL_ID)
    assert default.unwrapped.gap == 5 and default.unwrapped.noise == 0.0
    image_env = CueRecallEnv(gap=1, render_mode="rgb_array")
    image_env.reset(seed=0)
    assert image_env.render().shape == (16, 48, 3)
    check_env(CueRecallEnv(gap=2, noise=0.3))


# SB3's env checker warns about the base env's own action space on Pendulum (range [-2, 2]): the
# project keeps the base env's actions, so that warning, and only it, is expected
_BASE_ENV_WARNINGS = {"Pendulum-P-v0": "symmetric and normalized Box action space",
                      "Pendulum-V-v0": "symmetric and normalized Box action space"}


@pytest.mark.parametrize("env_id", POMDP_ENV_IDS)
def test_check_env_on_every_registered_id(env_id):
    """SB3's check_env (gymnasium API, spaces, reset/step types, seeding) on each id as
    gym.make builds it; the checkers' warnings (SB3's and gymnasium's passive checker) are
    failures too, except the base env's known one."""
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    env.close()
    from_checkers = [str(w.message) for w in caught if "env_checker" in w.filename]
    expected = _BASE_ENV_WARNINGS.get(env_id)
    unexpected = [m for m in from_checkers if expected is None or expected not in m]
    assert not unexpected, f"{env_id}: {unexpected}"
    if expected is not None:
        assert any(expected in m for m in from_checkers), "the known warning went away"


# ------------------------------------------------------------------------------------------
# PrevActionRewardWrapper
# ------------------------------------------------------------------------------------------
class _ToyEnv(gym.Env):
    """Obs = [step count] (float64), reward = 10 * step count, any action space."""

    def __init__(self, action_space: spaces.Space, obs_space: spaces.Space | None = None) -> None:
        self.action_space = action_space
        self.observation_space = obs_space or spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0]), {}

    def step(self, action):
        self._t += 1
        return np.array([float(self._t)]), 10.0 * self._t, False, False, {}


def test_prev_action_reward_discrete_exact_values():
    env = PrevActionRewardWrapper(CueRecallEnv(gap=1))
    space = env.observation_space
    assert space.shape == (6,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [-1, 0, 0, 0, 0, -np.inf])
    np.testing.assert_array_equal(space.high, [1, 1, 1, 1, 1, np.inf])
    seed = 0
    while env.reset(seed=seed)[0][0] != 1.0:
        seed += 1
    obs, _ = env.reset(seed=seed)
    np.testing.assert_array_equal(obs, [1, 1, 0, 0, 0, 0])
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 0, 0, 1, 0, 0])
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 0, 1, 1, 0, 0])
    obs, reward, term, _, _ = env.step(1)  # correct: cue was +1
    assert reward == 1.0 and term
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 1, 1])
    obs, _ = env.reset(seed=seed)  # zeros again after reset
    np.testing.assert_array_equal(obs, [1, 1, 0, 0, 0, 0])
    obs, *_ = env.step(np.int64(1))
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 1, 0])
    obs, *_ = env.step(np.array(1))
    obs, reward, *_ = env.step(0)  # wrong answer
    assert reward == -1.0
    np.testing.assert_array_equal(obs, [0, 0, 0, 1, 0, -1])
    assert check_env(PrevActionRewardWrapper(CueRecallEnv(gap=1))) is None


def test_prev_action_reward_discrete_with_start_and_float64():
    env = PrevActionRewardWrapper(_ToyEnv(spaces.Discrete(3, start=-1)))
    assert env.observation_space.dtype == np.float64 and env.observation_space.shape == (5,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0])
    assert obs.dtype == np.float64
    np.testing.assert_array_equal(env.step(-1)[0], [1, 1, 0, 0, 10])
    np.testing.assert_array_equal(env.step(1)[0], [2, 0, 0, 1, 20])
    np.testing.assert_array_equal(env.step(0)[0], [3, 0, 1, 0, 30])
    for bad in (2, -2, 0.5):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)


def test_prev_action_reward_box_exact_values():
    env = PrevActionRewardWrapper(gym.make("Pendulum-V-v0"))
    ref = gym.make("Pendulum-V-v0")
    assert env.observation_space.shape == (3,) and env.observation_space.dtype == np.float32
    np.testing.assert_array_equal(env.observation_space.low, [-8, -2, -np.inf])
    np.testing.assert_array_equal(env.observation_space.high, [8, 2, np.inf])
    obs, _ = env.reset(seed=4)
    ref_obs, _ = ref.reset(seed=4)
    np.testing.assert_array_equal(obs, [ref_obs[0], 0.0, 0.0])
    for u in (0.5, -1.25, 2.0):
        action = np.array([u], dtype=np.float32)
        obs, reward, *_ = env.step(action)
        ref_obs, ref_reward, *_ = ref.step(action)
        assert reward == ref_reward
        np.testing.assert_array_equal(obs, np.array([ref_obs[0], u, ref_reward], np.float32))
    toy = PrevActionRewardWrapper(_ToyEnv(spaces.Box(-1.0, 1.0, (2, 2), np.float32)))
    assert toy.observation_space.shape == (6,)
    toy.reset()
    np.testing.assert_array_equal(toy.step(np.array([[0.1, 0.2], [0.3, 0.4]]))[0],
                                  [1, 0.1, 0.2, 0.3, 0.4, 10])
    with pytest.raises(ValueError, match="size"):
        toy.step(np.zeros(3))


def test_prev_action_reward_unsupported_spaces():
    with pytest.raises(TypeError, match="action space"):
        PrevActionRewardWrapper(_ToyEnv(spaces.MultiDiscrete([2, 2])))
    with pytest.raises(TypeError, match="observation space"):
        PrevActionRewardWrapper(gym.make("FrozenLake-v1"))
    with pytest.raises(TypeError, match="observation space"):
        PrevActionRewardWrapper(
            _ToyEnv(spaces.Discrete(2), spaces.Box(0.0, 1.0, (2, 2), np.float32))
        )


# ------------------------------------------------------------------------------------------
# make_env
# ------------------------------------------------------------------------------------------
def _rollout(vec, actions):
    out = [vec.reset()]
    for action in actions:
        out.append(vec.step(action)[0])
    return np.stack(out)


def test_make_env_count_wrappers_and_reproducibility():
    vec = make_env("CartPole-V-v0", 3, seed=5)
    assert isinstance(vec, DummyVecEnv) and vec.num_envs == 3
    assert vec.observation_space.shape == (2,)
    assert all(vec.env_is_wrapped(Monitor))
    rng = np.random.default_rng(0)
    actions = rng.integers(2, size=(30, 3))
    first = _rollout(vec, actions)
    again = _rollout(make_env("CartPole-V-v0", 3, seed=5), actions)
    other = _rollout(make_env("CartPole-V-v0", 3, seed=6), actions)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0, 0], first[0, 1])  # copies are seeded differently


def test_make_env_prev_action_reward_and_env_kwargs():
    vec = make_env(CUE_RECALL_ID, 2, seed=0, prev_action_reward=True, gap=1)
    assert vec.num_envs == 2 and vec.observation_space.shape == (6,)
    assert all(vec.env_is_wrapped(PrevActionRewardWrapper))
    assert all(vec.env_is_wrapped(Monitor))
    obs = vec.reset()
    np.testing.assert_array_equal(obs[:, 1:], [[1, 0, 0, 0, 0]] * 2)
    cue = obs[:, 0]
    vec.step(np.array([0, 0]))
    vec.step(np.array([0, 0]))
    _, rewards, dones, infos = vec.step((cue > 0).astype(np.int64))
    np.testing.assert_array_equal(rewards, [1.0, 1.0])
    assert dones.all()
    assert [info["episode"]["l"] for info in infos] == [3, 3]
    assert [info["episode"]["r"] for info in infos] == [1.0, 1.0]


def test_make_env_errors():
    with pytest.raises(ValueError, match="registered"):
        make_env("NoSuchEnv-v0", 1, 0)
    with pytest.raises(ValueError, match="n_envs"):
        make_env("CartPole-P-v0", 0, 0)
    with pytest.raises(TypeError, match="n_envs"):
        make_env("CartPole-P-v0", "2", 0)
    with pytest.raises(ValueError, match="seed"):
        make_env("CartPole-P-v0", 1, -1)
    with pytest.raises(TypeError, match="seed"):
        make_env("CartPole-P-v0", 1, 1.5)
    with pytest.raises(TypeError, match="env_id"):
        make_env(None, 1, 0)
    with pytest.raises(TypeError, match="prev_action_reward"):
        make_env("CartPole-P-v0", 1, 0, prev_action_reward="yes")
