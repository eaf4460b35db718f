"""In-policy observation normalisation (policies.obs_norm): VecNormalize's rule, with statistics
that change only between PPO updates, so an update sees the inputs its rollout saw."""
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback

import policies
from policies import GRSNPolicy, MultiInputGRSNPolicy
from policies.energy import collect_observations, estimate_energy
from policies.obs_norm import ObservationNormalizer
from policies.recurrent import _all_zero_rows

SMALL = dict(n_steps=32, batch_size=64, n_epochs=2, verbose=0)


def _model(env_id="CartPole-P-v0", seed=0, policy=GRSNPolicy, **policy_kwargs):
    env = policies.make_env(env_id, 2, seed)
    kw = dict(grsn_hidden_size=16, normalize_obs=True)
    kw.update(policy_kwargs)
    return RecurrentPPO(policy, env, seed=seed, policy_kwargs=kw, **SMALL)


def test_statistics_merge_only_after_an_update_and_follow_vecnormalize_rule():
    norm = ObservationNormalizer(spaces.Box(-np.inf, np.inf, (3,)), clip_obs=1.5)
    rng = np.random.default_rng(0)
    first = torch.as_tensor(rng.normal(1.0, 3.0, (50, 3)), dtype=torch.float32)
    second = torch.as_tensor(rng.normal(-2.0, 0.5, (40, 3)), dtype=torch.float32)
    # no statistics yet: unchanged, however often the rollout records
    assert torch.equal(norm.rollout(first[:25]), first[:25])
    assert torch.equal(norm.rollout(first[25:]), first[25:])
    assert torch.equal(norm.update(first), first)  # the update of that rollout: still raw
    assert torch.equal(norm.normalize(second), second)
    # the next rollout merges the first rollout's statistics, then records its own
    seen = norm.rollout(second)
    mean, var = first.double().mean(0), first.double().var(0, unbiased=False)
    expected = ((second.double() - mean) / torch.sqrt(var + 1e-8)).clamp(-1.5, 1.5).float()
    torch.testing.assert_close(seen, expected)
    assert (seen.abs() == 1.5).any() and (seen.abs() < 1.5).any()  # the clip acted
    # ... and they stay fixed through that rollout and its update
    torch.testing.assert_close(norm.rollout(second), expected)
    torch.testing.assert_close(norm.update(second), expected)
    norm.rollout(second[:1])  # merges the second rollout (recorded twice); records one row
    both = torch.cat([first, second, second]).double()
    entry = norm.stats["obs"].current
    torch.testing.assert_close(entry.mean, both.mean(0))
    torch.testing.assert_close(entry.var, both.var(0, unbiased=False))
    assert float(entry.count) == len(both)
    assert float(norm.stats["obs"].pending.count) == 1


def test_paused_rollout_neither_records_nor_merges():
    norm = ObservationNormalizer(spaces.Box(-1, 1, (2,)))
    norm.rollout(torch.ones(4, 2))
    norm.update(torch.ones(4, 2))
    with norm.paused():
        out = norm.rollout(torch.full((3, 2), 5.0))
    assert torch.equal(out, torch.full((3, 2), 5.0))  # no statistics merged
    assert bool(norm.merge_due) and float(norm.stats["obs"].pending.count) == 4


def test_dict_spaces_normalise_box_entries_only_and_images_pass():
    space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,)), "id": spaces.Discrete(3)})
    norm = ObservationNormalizer(space)
    assert set(norm.stats) == {"pos"}
    obs = {"pos": torch.tensor([[1.0, 2.0], [3.0, 6.0]]), "id": torch.tensor([0, 2])}
    norm.rollout(obs)
    norm.update(obs)
    out = norm.rollout(obs)
    torch.testing.assert_close(out["pos"], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert out["id"] is obs["id"]
    image = ObservationNormalizer(spaces.Box(0, 255, (3, 8, 8), np.uint8))
    assert not image.active
    x = torch.zeros(1, 3, 8, 8)
    assert image.rollout(x) is x


@pytest.mark.parametrize("clip", [0, -1.0, float("inf"), "10", True])
def test_bad_clip_obs_is_refused(clip):
    with pytest.raises(ValueError, match="clip_obs"):
        _model(clip_obs=clip)


@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), "0.5", None])
def test_bad_obs_scale_is_refused(scale):
    with pytest.raises(ValueError, match=r"scale must be a finite number > 0, got "):
        _model(obs_scale=scale)


def test_scale_sets_the_spread_after_the_clip():
    space = spaces.Box(-np.inf, np.inf, (2,))
    unit, half = ObservationNormalizer(space, clip_obs=3.0), ObservationNormalizer(
        space, clip_obs=3.0, scale=0.5)
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    for norm in (unit, half):
        norm.rollout(x)
        norm.update(x)
    far = torch.tensor([[100.0, 3.0]])
    torch.testing.assert_close(half.rollout(far), 0.5 * unit.rollout(far))
    assert half.rollout(far)[0, 0] == 1.5  # clipped at 3 standard deviations, then scaled
    torch.testing.assert_close(half.normalize(x).double().std(0, unbiased=False),
                               torch.full((2,), 0.5, dtype=torch.float64), atol=1e-6, rtol=0)


def test_normalize_obs_must_be_a_bool():
    with pytest.raises(TypeError, match="normalize_obs must be True or False, got 'yes'"):
        _model(normalize_obs="yes")


class _ReplayCheck(BaseCallback):
    """At the end of each rollout (parameters unchanged since it was collected), the update's
    pass over the stored rollout must give the log-probabilities the rollout recorded."""

    def __init__(self):
        super().__init__()
        self.max_diffs = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer, policy = self.model.rollout_buffer, self.model.policy
        worst = 0.0
        with torch.no_grad():
            for data in buffer.get(batch_size=None):
                _, log_prob, _ = policy.evaluate_actions(
                    data.observations, data.actions.long().flatten(), data.lstm_states,
                    data.episode_starts)
                mask = data.mask > 1e-8
                worst = max(worst, float((log_prob - data.old_log_prob)[mask].abs().max()))
        self.max_diffs.append(worst)


def test_the_update_sees_the_inputs_its_rollout_saw():
    """The point of merging between updates: a per-step running normalisation (VecNormalize's
    timing applied to raw stored observations) gives the update other inputs than the rollout
    had, and so other log-probabilities at unchanged parameters."""
    model = _model(seed=3)
    check = _ReplayCheck()
    model.learn(32 * 2 * 4, callback=check)
    assert len(check.max_diffs) == 4
    assert float(model.policy.obs_normalizer.stats["obs"].current.count) == 3 * 64
    assert max(check.max_diffs) < 1e-4, check.max_diffs


def test_predict_uses_the_statistics_and_save_load_keeps_them(tmp_path):
    model = _model(seed=1)
    model.learn(256)
    norm = model.policy.obs_normalizer
    stats = norm.stats["obs"].current
    assert float(stats.count) > 0 and not torch.allclose(stats.var, torch.ones(2, dtype=torch.float64))
    model.save(tmp_path / "m")
    loaded = RecurrentPPO.load(tmp_path / "m")
    for (k1, v1), (k2, v2) in zip(model.policy.state_dict().items(),
                                  loaded.policy.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert bool(loaded.policy.obs_normalizer.merge_due)
    obs = np.random.default_rng(0).normal(scale=0.1, size=(5, 2)).astype(np.float32)
    a1, s1 = model.predict(obs, episode_start=np.ones(5, bool), deterministic=True)
    a2, s2 = loaded.predict(obs, episode_start=np.ones(5, bool), deterministic=True)
    assert np.array_equal(a1, a2) and all(np.array_equal(x, y) for x, y in zip(s1, s2))
    # predict records nothing
    assert torch.equal(norm.stats["obs"].pending.count, loaded.policy.obs_normalizer.stats[
        "obs"].pending.count)
    # and predict does use the statistics: the same policy without them acts otherwise
    with torch.no_grad():
        # (SB3 reuses one distribution object: keep the logits, not the object)
        logits_norm = model.policy.get_distribution(
            torch.as_tensor(obs), (torch.zeros(1, 5, 16), torch.zeros(1, 5, 16)),
            torch.ones(5))[0].distribution.logits.clone()
        saved, model.policy.obs_normalizer = model.policy.obs_normalizer, None
        logits_raw = model.policy.get_distribution(
            torch.as_tensor(obs), (torch.zeros(1, 5, 16), torch.zeros(1, 5, 16)),
            torch.ones(5))[0].distribution.logits.clone()
        model.policy.obs_normalizer = saved
    assert not torch.allclose(logits_norm, logits_raw, atol=1e-4)


def test_energy_estimate_leaves_the_statistics_alone():
    model = _model(seed=2)
    model.learn(128)
    before = {k: v.clone() for k, v in model.policy.obs_normalizer.state_dict().items()}
    obs, starts = collect_observations(model, policies.make_env("CartPole-P-v0", 2, 5), 20)
    estimate_energy(model.policy, obs, starts)
    after = model.policy.obs_normalizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_multi_input_policy_normalises_its_box_entries():
    from policies.envs import CueRecallEnv  # noqa: F401  (a registered Dict env is not needed)
    from stable_baselines3.common.env_util import make_vec_env
    import gymnasium as gym

    class DictCartPole(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = spaces.Dict({"obs": env.observation_space,
                                                  "flag": spaces.Discrete(2)})

        def observation(self, obs):
            return {"obs": obs, "flag": 1}

    env = make_vec_env("CartPole-P-v0", 2, seed=0, wrapper_class=DictCartPole)
    model = RecurrentPPO(MultiInputGRSNPolicy, env, seed=0, policy_kwargs=dict(
        grsn_hidden_size=16, normalize_obs=True), **SMALL)
    model.learn(128)
    assert set(model.policy.obs_normalizer.stats) == {"obs"}
    assert float(model.policy.obs_normalizer.stats["obs"].current.count) == 64


def test_padding_rows_are_found_on_the_raw_observations():
    obs = torch.tensor([[0.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    assert _all_zero_rows(obs).tolist() == [False, True, False]
    both = {"a": obs, "b": torch.tensor([0, 0, 1])}
    assert _all_zero_rows(both).tolist() == [False, True, False]
