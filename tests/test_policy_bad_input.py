"""A non-finite observation stops RecurrentPPO with a ValueError naming it, for every recurrent
policy of the project (issue 15, item 1 at the policy level): none trains on silently."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from sb3_contrib import RecurrentPPO

import policies

NAN_STEP = 5  # the env's observation after its 5th step holds the bad value


class _BadObservationEnv(gym.Env):
    """Observations [0.5, 0.5, 0.5], except ``bad`` at index 1 after step ``NAN_STEP``."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, bad: float):
        self.bad = bad
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, 0.5, np.float32)
        if self.t == NAN_STEP:
            obs[1] = self.bad
        return obs, 1.0, False, self.t >= 20, {}


# policy, the core whose check fires, its hidden-size keyword
POLICIES = [
    (policies.GRSNPolicy, "RecurrentGRSN", "grsn_hidden_size"),
    (policies.NoTAPPolicy, "RecurrentGRSN", "grsn_hidden_size"),
    (policies.LIFPolicy, "LIFCore", "grsn_hidden_size"),
    (policies.GRUPolicy, "GRUCore", "lstm_hidden_size"),
]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("policy, who, size_kw", POLICIES,
                         ids=[p.__name__ for p, _, _ in POLICIES])
def test_non_finite_observation_raises_naming_it(policy, who, size_kw, bad):
    env = _BadObservationEnv(bad)
    model = RecurrentPPO(policy, env, n_steps=16, batch_size=16, n_epochs=1, seed=0,
                         policy_kwargs={size_kw: 8})
    # acting runs one step at a time: the bad element is [t=0, env 0, feature 1]
    with pytest.raises(ValueError, match=rf"{who} got a non-finite input: \w+\[0, 0, 1\] = "
                                         rf"{'nan' if math.isnan(bad) else 'inf'}"):
        model.learn(64)
    # the step that returned the bad observation is the last one taken: no action was chosen
    # from it
    assert model.num_timesteps == NAN_STEP


@pytest.mark.parametrize("policy, who, size_kw", POLICIES,
                         ids=[p.__name__ for p, _, _ in POLICIES])
def test_non_finite_observation_raises_in_predict(policy, who, size_kw):
    model = RecurrentPPO(policy, _BadObservationEnv(math.nan), n_steps=16, batch_size=16,
                         seed=0, policy_kwargs={size_kw: 8})
    obs = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, math.nan]], np.float32)
    with pytest.raises(ValueError, match=rf"{who} got a non-finite input: \w+\[0, 1, 2\] = nan"):
        model.predict(obs, episode_start=np.ones(2, bool))
    action, _ = model.predict(obs[:1], episode_start=np.ones(1, bool))  # finite is fine
    assert action.shape == (1,)
