"""policies.rollout: one loop that threads the recurrent state, as predict() step by step."""
import numpy as np
import pytest
import torch

import policies
from policies import training, zoo
from policies.rollout import collect_observations, rollout


def _model(name: str, env_id: str = "CartPole-P-v0"):
    cfg = zoo.config_for(env_id)
    cfg["policy_kwargs"]["lstm_hidden_size"] = 16
    return training.build_model(name, policies.make_env(env_id, 1, 0), cfg, 0, "cpu")


@pytest.mark.parametrize("name", ["grsn", "lstm", "mlp"])
def test_rollout_threads_the_state_as_step_by_step_predict(name):
    model, model2 = _model(name), _model(name)  # same seed: same weights
    torch.manual_seed(1)
    steps = list(rollout(model, policies.make_env("CartPole-P-v0", 3, 5), 80,
                         deterministic=False))
    # the same loop by hand, on an env of the same seeds, with the same sampling seed
    env = policies.make_env("CartPole-P-v0", 3, 5)
    obs, state, starts = env.reset(), None, np.ones(3, dtype=bool)
    torch.manual_seed(1)
    for step in steps:
        action, state = model2.predict(obs, state=state, episode_start=starts,
                                       deterministic=False)
        np.testing.assert_array_equal(step.obs, obs)
        np.testing.assert_array_equal(step.episode_start, starts)
        np.testing.assert_array_equal(step.action, action)
        if name == "mlp":
            assert step.state is None and state is None
        else:
            for got, want in zip(step.state, state):
                np.testing.assert_array_equal(got, want)
        obs, reward, done, _ = env.step(action)
        np.testing.assert_array_equal(step.reward, reward)
        np.testing.assert_array_equal(step.done, done)
        starts = done
    # episodes ended and restarted inside the window, so the resets were exercised
    assert any(s.episode_start.any() for s in steps[1:])


def test_rollout_readout_is_the_actor_cores_output():
    # LSTM: the readout is h of the (last) layer after the step
    steps = list(rollout(_model("lstm"), policies.make_env("CartPole-P-v0", 2, 0), 30,
                         activity=True))
    for s in steps:
        assert s.readout.shape == (2, 16)
        np.testing.assert_allclose(s.readout, s.state[0][-1], rtol=0, atol=1e-6)
    # GRSN: the spikes of its core, fed the same observation, state and episode start
    model = _model("grsn")
    core = model.policy.lstm_actor
    state = (torch.zeros(1, 2, 16), torch.zeros(1, 2, 16))
    for s in rollout(model, policies.make_env("CartPole-P-v0", 2, 0), 30, activity=True):
        with torch.no_grad():
            latent, state = core(torch.as_tensor(s.obs, dtype=torch.float32)[None], state,
                                 torch.as_tensor(s.episode_start, dtype=torch.float32)[None])
        np.testing.assert_array_equal(s.readout, latent[0].numpy())
        np.testing.assert_array_equal(s.state[0], state[0].numpy())
        assert set(np.unique(s.readout[:, :16])) <= {0.0, 1.0}   # spikes, then the shortcut
    assert s.readout is not None
    with pytest.raises(ValueError, match="recurrent policy"):
        next(rollout(_model("mlp"), policies.make_env("CartPole-P-v0", 1, 0), activity=True))


def test_rollout_removes_its_hook_and_checks_its_arguments():
    model = _model("grsn")
    gen = rollout(model, policies.make_env("CartPole-P-v0", 1, 0), activity=True)
    next(gen)
    assert len(model.policy.lstm_actor._forward_hooks) == 1
    gen.close()
    assert len(model.policy.lstm_actor._forward_hooks) == 0
    with pytest.raises(ValueError, match="n_steps.*0"):
        next(rollout(model, policies.make_env("CartPole-P-v0", 1, 0), 0))
    with pytest.raises(ValueError, match=r"shape \(5,\).*expects \(2,\)"):
        next(rollout(model, policies.make_env("CartPole-P-v0", 1, 0, prev_action_reward=True)))
    with pytest.raises(TypeError, match="VecEnv"):
        next(rollout(model, "CartPole-P-v0", 1))


def test_collect_observations_is_the_rollouts_observations():
    from policies import energy

    assert energy.collect_observations is collect_observations   # one loop, re-exported
    model = _model("grsn")
    obs, starts = collect_observations(model, policies.make_env("CartPole-P-v0", 3, 2), 40)
    steps = list(rollout(model, policies.make_env("CartPole-P-v0", 3, 2), 40))
    np.testing.assert_array_equal(obs, np.stack([s.obs for s in steps]))
    np.testing.assert_array_equal(starts, np.stack([s.episode_start for s in steps]))
    assert obs.shape == (40, 3, 2) and starts.dtype == np.float32 and starts[0].all()
