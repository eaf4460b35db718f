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
