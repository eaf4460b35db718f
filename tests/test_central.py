"""Centralised, training-only critic (policies.central, policies.marl.VecCentralState): the joint
state the critic sees, an actor that cannot see it, save/load, and the errors that name the fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

import policies
from policies import training
from policies.central import KeysExtractor
from policies.marl import PettingZooVecEnv, VecCentralState, evaluate_team, make_spread_po

from .test_marl import ToyEnv, _one_torch_thread, expected_obs, toy  # noqa: F401 (autouse)

POLICY_CLASSES = [policies.GRSNPolicy, policies.LIFPolicy, policies.LSTMPolicy,
                  policies.GRUPolicy]


def test_state_is_the_copy_joint_observation():
    venv = VecCentralState(PettingZooVecEnv(toy(max_cycles=2), 2))
    assert venv.observation_space["obs"] == venv.venv.observation_space
    assert venv.observation_space["state"].shape == (4,)
    obs = venv.reset()
    joint = np.concatenate([expected_obs(0, 0), expected_obs(1, 0)])
    for row in range(4):
        np.testing.assert_array_equal(obs["obs"][row], expected_obs(row % 2, 0))
        np.testing.assert_array_equal(obs["state"][row], joint)
    obs, _, dones, infos = venv.step(np.zeros(4, dtype=int))
    assert not dones.any()
    np.testing.assert_array_equal(obs["state"][3],
                                  np.concatenate([expected_obs(0, 1), expected_obs(1, 1)]))
    obs, _, dones, infos = venv.step(np.zeros(4, dtype=int))  # truncation, auto-reset
    assert dones.all()
    final_joint = np.concatenate([expected_obs(0, 2), expected_obs(1, 2)])
    for row, info in enumerate(infos):
        term = info["terminal_observation"]
        assert set(term) == {"obs", "state"}
        np.testing.assert_array_equal(term["obs"], expected_obs(row % 2, 2))
        np.testing.assert_array_equal(term["state"], final_joint)
        np.testing.assert_array_equal(obs["state"][row], joint)  # the new episode's
        assert venv.observation_space["state"].contains(term["state"])


def test_state_of_a_departed_agent_row_is_zero():
    venv = VecCentralState(PettingZooVecEnv(toy(deaths={"a_1": 1}, max_cycles=4), 1))
    venv.reset()
    obs, _, _, _ = venv.step(np.zeros(2, dtype=int))
    obs, _, _, _ = venv.step(np.zeros(2, dtype=int))
    np.testing.assert_array_equal(obs["state"][0], np.concatenate([expected_obs(0, 2),
                                                                   np.zeros(2)]))


class StateToy(ToyEnv):
    """ToyEnv with a global state: ``state()`` is ``[t, 50 + t, -t]`` (``state_shape`` wrong
    shapes it on purpose)."""

    def __init__(self, state_shape=(3,), **kw):
        super().__init__(**kw)
        self.state_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self._state_shape = state_shape

    def state(self):
        return np.resize(np.array([self.t, 50.0 + self.t, -self.t], np.float32),
                         self._state_shape)


def _toy_state(t):
    return np.array([t, 50.0 + t, -t], np.float32)


@pytest.mark.parametrize("subprocess", [False, True])
def test_env_state_is_the_env_s_global_state_with_its_terminal_state(subprocess):
    import functools

    venv = VecCentralState(PettingZooVecEnv(functools.partial(StateToy, max_cycles=2), 2,
                                            env_state=True, subprocess=subprocess), state="env")
    assert venv.observation_space["state"] == StateToy().state_space
    obs = venv.reset()
    for row in range(4):
        np.testing.assert_array_equal(obs["obs"][row], expected_obs(row % 2, 0))
        np.testing.assert_array_equal(obs["state"][row], _toy_state(0))
    obs, _, dones, _ = venv.step(np.zeros(4, dtype=int))
    assert not dones.any()
    np.testing.assert_array_equal(obs["state"], np.tile(_toy_state(1), (4, 1)))
    obs, _, dones, infos = venv.step(np.zeros(4, dtype=int))  # truncation, auto-reset
    assert dones.all()
    for row, info in enumerate(infos):
        np.testing.assert_array_equal(info["terminal_observation"]["obs"],
                                      expected_obs(row % 2, 2))
        np.testing.assert_array_equal(info["terminal_observation"]["state"], _toy_state(2))
        np.testing.assert_array_equal(obs["state"][row], _toy_state(0))  # the new episode's
    venv.close()


def test_env_state_errors_name_the_fix():
    with pytest.raises(TypeError, match="env_state=True needs a ParallelEnv with a global "
                                        "state.*ToyEnv"):
        PettingZooVecEnv(toy(), 1, env_state=True)
    with pytest.raises(TypeError, match="env_state must be a bool, got 'yes'"):
        PettingZooVecEnv(StateToy, 1, env_state="yes")
    with pytest.raises(ValueError, match=r"build it with PettingZooVecEnv\(\.\.\., "
                                         r"env_state=True\)"):
        VecCentralState(PettingZooVecEnv(StateToy, 1), state="env")
    with pytest.raises(ValueError, match="state must be one of .*'joint_obs', 'env'.*'world'"):
        VecCentralState(PettingZooVecEnv(StateToy, 1), state="world")
    venv = PettingZooVecEnv(lambda: StateToy(state_shape=(4,)), 1, env_state=True)
    with pytest.raises(ValueError, match=r"state\(\) returned shape \(4,\), its state_space "
                                         r"has shape \(3,\)"):
        venv.reset()
    with pytest.raises(ValueError, match="pass centralised_critic=True too"):
        training.make_task_env("spread-PO", 1, 0, central_state="env")


def test_a_centralised_critic_trains_on_the_env_state():
    venv = training.make_task_env("spread-PO", 2, 0, centralised_critic=True,
                                           central_state="env")
    state_dim = venv.observation_space["state"].shape[0]
    assert state_dim == venv.venv.state_space.shape[0] == 36  # mpe2's state(), not 3 x 12
    model = _model(policies.GRSNPolicy, venv)
    model.learn(48)
    assert model.policy.vf_features_extractor.features_dim == 12 + state_dim
    venv.close()


def test_wrapper_refuses_other_vec_envs():
    from stable_baselines3.common.env_util import make_vec_env

    with pytest.raises(TypeError, match="PettingZooVecEnv.*got DummyVecEnv"):
        VecCentralState(make_vec_env("CartPole-v1", 2))


def _model(policy_class, venv, **policy_kwargs):
    return RecurrentPPO(policy_class, venv, n_steps=8, batch_size=16, n_epochs=1, seed=0,
                        device="cpu", policy_kwargs=dict(centralised_critic=True,
                                                         lstm_hidden_size=8, **policy_kwargs))


def _zero_states(policy, n):
    shape = (policy.lstm_hidden_state_shape[0], n, policy.lstm_hidden_state_shape[2])
    return th.zeros(shape), th.zeros(shape)


@pytest.mark.parametrize("policy_class", POLICY_CLASSES, ids=lambda c: c.__name__)
def test_actor_ignores_the_state_and_critic_reads_it(policy_class, tmp_path):
    venv = VecCentralState(PettingZooVecEnv(make_spread_po, 2))
    model = _model(policy_class, venv)
    model.learn(32)
    policy = model.policy
    assert policy.features_dim == 12 and policy.vf_features_extractor.features_dim == 48
    obs = venv.reset()
    other = {"obs": obs["obs"], "state": obs["state"] + 3.0}
    starts = th.ones(6)
    with th.no_grad():
        dist = [policy.get_distribution(policy.obs_to_tensor(o)[0], _zero_states(policy, 6),
                                        starts)[0].distribution.logits for o in (obs, other)]
        values = [policy.predict_values(policy.obs_to_tensor(o)[0], _zero_states(policy, 6),
                                        starts) for o in (obs, other)]
    assert th.equal(dist[0], dist[1])  # the deployed actor never sees the state
    assert not th.allclose(values[0], values[1])  # the critic does
    actions, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip", env=venv, device="cpu")
    assert type(loaded.policy.vf_features_extractor) is KeysExtractor
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    for a, b in zip(policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert th.equal(a, b)
    venv.close()


def test_centralised_critic_trains_under_vec_normalize_and_evaluates():
    venv = VecCentralState(PettingZooVecEnv(make_spread_po, 2))
    model = _model(policies.GRSNPolicy, VecNormalize(VecMonitor(venv)))
    model.learn(64)
    assert np.isfinite(model.policy.last_aux_loss)
    result = evaluate_team(model, VecNormalize(VecMonitor(venv), training=False), 2)
    assert len(result.returns) == 2 and np.isfinite(result.returns).all()
    venv.close()


@pytest.mark.parametrize("policy_class", POLICY_CLASSES, ids=lambda c: c.__name__)
def test_bad_centralised_critic_arguments(policy_class):
    box_env = PettingZooVecEnv(make_spread_po, 1)
    with pytest.raises(ValueError, match="keys \\('obs', 'state'\\).*VecCentralState"):
        RecurrentPPO(policy_class, box_env, policy_kwargs=dict(centralised_critic=True))
    venv = VecCentralState(box_env)
    with pytest.raises(TypeError, match="centralised_critic must be True or False, got 1"):
        RecurrentPPO(policy_class, venv, policy_kwargs=dict(centralised_critic=1))
    with pytest.raises(ValueError, match="critic of its own.*shared"):
        RecurrentPPO(policy_class, venv, policy_kwargs=dict(
            centralised_critic=True, shared_lstm=True, enable_critic_lstm=False))
    with pytest.raises(TypeError, match="builds its own features extractors.*NatureCNN"):
        RecurrentPPO(policy_class, venv, policy_kwargs=dict(
            centralised_critic=True, features_extractor_class=NatureCNN))
    box_env.close()


def test_feed_forward_critic_reads_the_state():
    venv = VecCentralState(PettingZooVecEnv(make_spread_po, 1))
    model = _model(policies.LSTMPolicy, venv, enable_critic_lstm=False)
    assert model.policy.critic.in_features == 48  # obs 12 + joint state 36
    grsn = _model(policies.GRSNPolicy, venv, enable_critic_grsn=False)
    assert grsn.policy.critic.in_features == 48
    venv.close()


def test_keys_extractor_validates_its_space():
    with pytest.raises(TypeError, match="needs a Dict observation space"):
        KeysExtractor(spaces.Box(-1, 1, (3,)))
    space = spaces.Dict({"obs": spaces.Box(-1, 1, (3,)), "state": spaces.Discrete(2)})
    with pytest.raises(ValueError, match="missing \\['x'\\]"):
        KeysExtractor(space, ("x",))
    with pytest.raises(TypeError, match="reads Box entries; 'state'"):
        KeysExtractor(space, ("obs", "state"))


def test_without_the_option_lstm_policy_is_mlp_lstm_policy():
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-P-v0", 2, seed=0)
    ours = RecurrentPPO(policies.LSTMPolicy, env, n_steps=8, batch_size=16, seed=0)
    theirs = RecurrentPPO("MlpLstmPolicy", env, n_steps=8, batch_size=16, seed=0)
    a, b = ours.policy.state_dict(), theirs.policy.state_dict()
    assert list(a) == list(b) and all(th.equal(a[k], b[k]) for k in a)


def test_energy_of_a_centralised_critic_policy_is_the_plain_actor_s(tmp_path):
    """The actor reads "obs" only: with the same actor weights, the deployed agent's counts
    equal the plain policy's on the same observations; the critic (obs + state) is counted
    only in agent_with_critic."""
    from policies.energy import collect_observations, estimate_energy

    venv = VecCentralState(PettingZooVecEnv(make_spread_po, 2))
    central = _model(policies.GRSNPolicy, venv)
    obs, starts = collect_observations(central, venv, 12)
    assert set(obs) == {"obs", "state"} and obs["state"].shape == (12, 6, 36)
    plain_env = PettingZooVecEnv(make_spread_po, 2)
    plain = RecurrentPPO(policies.GRSNPolicy, plain_env, n_steps=8, batch_size=16, seed=0,
                         device="cpu", policy_kwargs=dict(lstm_hidden_size=8))
    actor_parts = ("lstm_actor.", "mlp_extractor.policy_net.", "action_net.")
    plain.policy.load_state_dict({k: v for k, v in central.policy.state_dict().items()
                                  if k.startswith(actor_parts)}, strict=False)
    report = estimate_energy(central.policy, obs, starts)
    reference = estimate_energy(plain.policy, obs["obs"], starts)
    assert report.agent.macs == reference.agent.macs and report.agent.acs == reference.agent.acs
    assert report.agent_with_critic.macs > report.agent.macs
    critic_in = central.policy.lstm_critic.grsn.layers[0].fc.in_features
    assert critic_in == 48  # the critic core reads obs (12) + joint state (36)
    with pytest.raises(TypeError, match="one \\[T, n_envs, ...\\] array per key"):
        estimate_energy(central.policy, obs["obs"], starts)
    with pytest.raises(ValueError, match="observations\\['state'\\] has \\[T, n_envs\\]"):
        estimate_energy(central.policy, {"obs": obs["obs"], "state": obs["state"][:5]}, starts)
    venv.close()
    plain_env.close()
