"""sb3-contrib's own RecurrentPPO cases (its tests/test_lstm.py) with the spiking policies in
place of MlpLstmPolicy / CnnLstmPolicy / MultiInputLstmPolicy: images, Dict observations, the
kwargs variants, a shared core, gSDE. Nothing is downloaded: the image env is SB3's
FakeImageEnv."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN

import policies
from policies import (
    CnnGRSNPolicy,
    CnnLIFPolicy,
    CnnNoTAPPolicy,
    GRSNPolicy,
    MultiInputGRSNPolicy,
    MultiInputLIFPolicy,
    MultiInputNoTAPPolicy,
)


class ToDictWrapper(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.observation_space = spaces.Dict({"obs": self.env.observation_space})

    def reset(self, **kwargs):
        return {"obs": self.env.reset(**kwargs)[0]}, {}

    def step(self, action):
        obs, reward, done, truncated, infos = self.env.step(action)
        return {"obs": obs}, reward, done, truncated, infos


KWARGS = [
    {},
    dict(share_features_extractor=False),
    dict(shared_lstm=True, enable_critic_lstm=False),
    dict(enable_critic_lstm=True, lstm_hidden_size=4, n_lstm_layers=2),
    dict(enable_critic_lstm=False, lstm_hidden_size=4, n_lstm_layers=2),
    dict(enable_critic_lstm=False, lstm_hidden_size=4, share_features_extractor=False),
]


@pytest.mark.parametrize("policy_kwargs", KWARGS)
def test_cnn(policy_kwargs):
    model = RecurrentPPO(CnnGRSNPolicy, FakeImageEnv(screen_height=40, screen_width=40,
                                                     n_channels=3),
                         n_steps=16, seed=0, n_epochs=2,
                         policy_kwargs=dict(**policy_kwargs,
                                            features_extractor_kwargs=dict(features_dim=32)))
    assert isinstance(model.policy.features_extractor, NatureCNN)
    model.learn(total_timesteps=32)


@pytest.mark.parametrize("policy", [CnnLIFPolicy, CnnNoTAPPolicy])
def test_cnn_baselines(policy):
    model = RecurrentPPO(policy, FakeImageEnv(screen_height=40, screen_width=40, n_channels=1),
                         n_steps=16, seed=0, n_epochs=1,
                         policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16),
                                            lstm_hidden_size=8))
    model.learn(total_timesteps=16)


@pytest.mark.parametrize("policy_kwargs", [KWARGS[0], KWARGS[2], KWARGS[3], KWARGS[4]])
def test_dict_obs(policy_kwargs):
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=ToDictWrapper)
    model = RecurrentPPO(MultiInputGRSNPolicy, env, n_steps=32,
                         policy_kwargs=policy_kwargs).learn(64)
    assert isinstance(model.policy.features_extractor, CombinedExtractor)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean)


@pytest.mark.parametrize("policy", [MultiInputLIFPolicy, MultiInputNoTAPPolicy])
def test_dict_obs_baselines(policy):
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=ToDictWrapper)
    RecurrentPPO(policy, env, n_steps=16, n_epochs=1,
                 policy_kwargs=dict(lstm_hidden_size=8)).learn(16)


def test_dict_obs_with_the_plain_policy_names_the_fix():
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=ToDictWrapper)
    with pytest.raises(TypeError, match="MultiInputGRSNPolicy"):
        RecurrentPPO(GRSNPolicy, env, n_steps=16)
    with pytest.raises(TypeError, match="CnnGRSNPolicy"):
        RecurrentPPO(GRSNPolicy, FakeImageEnv(screen_height=40, screen_width=40), n_steps=16)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
def test_run(env):
    RecurrentPPO(GRSNPolicy, env, n_steps=16, seed=0).learn(total_timesteps=32)


def test_run_sde():
    RecurrentPPO(GRSNPolicy, "Pendulum-v1", n_steps=16, seed=0, sde_sample_freq=4, use_sde=True,
                 clip_range_vf=0.1).learn(total_timesteps=200)


def test_check():
    with pytest.raises(ValueError, match="not both"):
        RecurrentPPO(GRSNPolicy, "CartPole-v1", n_steps=16, seed=0,
                     policy_kwargs=dict(shared_lstm=True, enable_critic_lstm=True))
    with pytest.raises((ValueError, AssertionError)):
        RecurrentPPO(GRSNPolicy, "CartPole-v1", n_steps=16, seed=0,
                     policy_kwargs=dict(shared_lstm=True, enable_critic_lstm=False,
                                        share_features_extractor=False))


@pytest.mark.parametrize("policy,env", [(CnnGRSNPolicy, "image"), (MultiInputGRSNPolicy, "dict")])
def test_variants_save_load_predict_identical(tmp_path, policy, env):
    venv = (make_vec_env("CartPole-v1", n_envs=2, wrapper_class=ToDictWrapper) if env == "dict"
            else make_vec_env(lambda: FakeImageEnv(screen_height=40, screen_width=40), n_envs=2))
    model = RecurrentPPO(policy, venv, n_steps=16, n_epochs=1, seed=0,
                         policy_kwargs=dict(lstm_hidden_size=8))
    model.learn(32)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip")
    assert type(loaded.policy) is policy
    obs = venv.reset()
    a1, s1 = model.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    assert np.array_equal(a1, a2)
    for x, y in zip(s1, s2):
        assert np.array_equal(x, y)


def test_multi_input_energy_equals_the_flat_policy_s():
    """Dict observations go through estimate_energy (one array per key); CombinedExtractor only
    flattens, so with the same weights the counts equal GRSNPolicy's on the plain array."""
    from policies.energy import collect_observations, estimate_energy

    venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=ToDictWrapper, seed=0)
    model = RecurrentPPO(MultiInputGRSNPolicy, venv, n_steps=16, seed=0,
                         policy_kwargs=dict(lstm_hidden_size=8))
    obs, starts = collect_observations(model, venv, 10)
    assert set(obs) == {"obs"} and obs["obs"].shape == (10, 2, 4)
    flat = RecurrentPPO(GRSNPolicy, "CartPole-v1", n_steps=16, seed=0,
                        policy_kwargs=dict(lstm_hidden_size=8))
    flat.policy.load_state_dict(model.policy.state_dict())
    report = estimate_energy(model.policy, obs, starts)
    reference = estimate_energy(flat.policy, obs["obs"], starts)
    assert report.agent.acs > 0
    assert (report.agent.macs, report.agent.acs) == (reference.agent.macs, reference.agent.acs)
