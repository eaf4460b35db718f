"""RL Zoo with GRSNPolicy through RL Zoo's own entry points (tiny budgets): train with
``--conf-file policies.zoo``, replay with ``enjoy``, tune with ``-optimize`` and GRSN's sampler."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("rl_zoo3")
optuna = pytest.importorskip("optuna")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _zoo(command: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", f"rl_zoo3.{command}", *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_rl_zoo_trains_and_replays_a_grsn_policy(tmp_path):
    from sb3_contrib import RecurrentPPO

    import policies

    logs = str(tmp_path / "logs")
    _zoo("train", "--algo", "ppo_lstm", "--env", "CartPole-P-v0", "--gym-packages", "policies",
         "--conf-file", "policies.zoo", "-n", "1024", "-f", logs, "--eval-freq", "-1",
         "--num-threads", "1", "--seed", "0")
    path = os.path.join(logs, "ppo_lstm", "CartPole-P-v0_1", "CartPole-P-v0.zip")
    model = RecurrentPPO.load(path)
    assert type(model.policy) is policies.GRSNPolicy
    assert model.policy.lstm_actor.hidden_size == 64 and model.n_steps == 128  # policies.zoo
    out = _zoo("enjoy", "--algo", "ppo_lstm", "--env", "CartPole-P-v0", "--gym-packages",
               "policies", "-f", logs, "-n", "200", "--no-render", "--num-threads", "1").stdout
    assert "Mean reward:" in out and "Episodes" in out


def test_rl_zoo_optimize_tunes_grsn_dimensions_into_a_shared_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _zoo("train", "--algo", "ppo_lstm", "--env", "CueRecall-v0", "--gym-packages", "policies",
         "policies.zoo_optuna", "--conf-file", "policies.zoo", "-n", "512", "-optimize",
         "--n-trials", "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none",
         "--n-evaluations", "1", "--eval-episodes", "2", "-f", str(tmp_path / "logs"),
         "--study-name", "grsn", "--storage", storage, "--num-threads", "1", "--seed", "0")
    study = optuna.load_study(study_name="grsn", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    for t in trials:
        assert {"lstm_hidden_size", "input_bias", "forget_bias", "tau",
                "surrogate_alpha"} <= set(t.params)
        assert -1.0 <= t.value <= 1.0  # CueRecall's range


def test_bounded_recurrent_ppo_sampler_stays_in_its_range_and_caps_the_minibatch():
    from policies.zoo_optuna import sample_recurrent_ppo_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        params = sample_recurrent_ppo_params(study.ask(), 2, 8, {})
        assert set(params) == {"n_steps", "batch_size", "n_epochs", "learning_rate", "ent_coef",
                               "gamma", "gae_lambda", "clip_range", "max_grad_norm"}
        assert 4 <= params["n_epochs"] <= 10 and 64 <= params["batch_size"] <= 512
        assert 1e-4 <= params["learning_rate"] <= 3e-3 and 0.9 <= params["gamma"] < 1
    fixed = optuna.trial.FixedTrial(dict(
        n_steps=64, batch_size=512, n_epochs=4, learning_rate=1e-3, ent_coef=1e-3, gamma=0.99,
        gae_lambda=0.95, clip_range=0.2, max_grad_norm=0.5))
    assert sample_recurrent_ppo_params(fixed, 2, 4, {})["batch_size"] == 64 * 4  # one rollout


def test_tune_runs_an_equal_budget_study_per_policy(tmp_path):
    from policies.zoo_optuna import tune

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = tune("CueRecall-v0", "lstm", n_trials=2, timesteps=256, seed=100, storage=storage,
                 study_name="cue-lstm", eval_episodes=2)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    for t in trials:
        assert -1.0 <= t.value <= 1.0 and -1.0 <= t.user_attrs["sampled"] <= 1.0
        assert t.user_attrs["hyperparams"]["n_steps"] == t.params["n_steps"]
        assert "lstm_hidden_size" not in t.params  # optimisation settings only
    resumed = tune("CueRecall-v0", "lstm", n_trials=1, timesteps=256, storage=storage,
                   study_name="cue-lstm", eval_episodes=2)
    assert len(resumed.trials) == 3
    with pytest.raises(ValueError, match="RecurrentPPO policies.*'mlp'"):
        tune("CueRecall-v0", "mlp", n_trials=1, timesteps=256)
