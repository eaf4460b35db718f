"""policies.training: the model builder, the thread setter, the run matrix with CSV resume."""
import csv
import os
import sys

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

import policies
from policies import training, zoo


@pytest.mark.parametrize("name, algo, policy_class", [
    ("grsn", RecurrentPPO, policies.GRSNPolicy),
    ("lif", RecurrentPPO, policies.LIFPolicy),
    ("notap", RecurrentPPO, policies.NoTAPPolicy),
    ("lstm", RecurrentPPO, policies.LSTMPolicy),  # sb3-contrib's MlpLstmPolicy + centralised_critic
    ("mlp", PPO, None),
])
def test_build_model_makes_each_policy_with_the_tables_hyperparameters(name, algo, policy_class):
    cfg = zoo.config_for("CueRecall-v0")  # 32 neurons, n_steps 32: not the defaults anywhere
    env = policies.make_env("CueRecall-v0", cfg["n_envs"], 0)
    model = training.build_model(name, env, cfg, 3, "cpu")
    assert type(model) is algo and model.seed == 3
    for key in ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef"):
        assert getattr(model, key) == cfg[key], key
    assert model.learning_rate == cfg["learning_rate"] and model.n_envs == cfg["n_envs"]
    hidden = cfg["policy_kwargs"]["lstm_hidden_size"]
    assert hidden == 32
    if policy_class is None:  # the memoryless baseline: two layers of the core's width
        assert model.policy.net_arch == [hidden, hidden]
        assert not hasattr(model.policy, "lstm_actor")
    else:
        assert type(model.policy) is policy_class
        assert model.policy.lstm_actor.hidden_size == hidden
    env.close()


def test_build_model_lets_the_caller_override_and_refuses_bad_input():
    cfg = zoo.config_for("CartPole-P-v0")
    env = policies.make_env("CartPole-P-v0", 1, 0)
    # the caller's own spelling of the core size replaces the table's alias (no conflict)
    model = training.build_model("grsn", env, cfg, 0, policy_kwargs=dict(grsn_hidden_size=16))
    assert model.policy.lstm_actor.hidden_size == 16
    model = training.build_model("mlp", env, cfg, 0, policy_kwargs=dict(net_arch=[8]))
    assert model.policy.net_arch == [8]
    with pytest.raises(ValueError, match="'transformer'.*grsn"):
        training.build_model("transformer", env, cfg, 0)
    with pytest.raises(TypeError, match="cfg must be a dict"):
        training.build_model("grsn", env, [("n_steps", 8)], 0)
    with pytest.raises(TypeError, match="bogus"):
        training.build_model("grsn", env, cfg, 0, policy_kwargs=dict(bogus=1))
    env.close()


def test_set_threads_sets_torch_and_the_environment(monkeypatch):
    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    try:
        training.set_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
        numba = pytest.importorskip("numba")
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="got 0"):
        training.set_threads(0)
    with pytest.raises(TypeError, match="'2'"):
        training.set_threads("2")


CALLS = []


def _fake_run(task: str, seed: int, scale: float) -> dict:
    CALLS.append((task, seed))
    return dict(task=task, seed=seed, value=scale * seed)


def test_run_matrix_appends_rows_and_resumes_from_the_csv(tmp_path):
    path = str(tmp_path / "results.csv")
    fields = ["task", "seed", "value"]
    jobs = [dict(task="a", seed=s, scale=2.0) for s in (0, 1)]
    CALLS.clear()
    done = list(training.run_matrix(path, jobs, fields, ("task", "seed"), fn=_fake_run))
    assert [row for _, row, _ in done] == [dict(task="a", seed=0, value=0.0),
                                           dict(task="a", seed=1, value=2.0)]
    assert CALLS == [("a", 0), ("a", 1)]
    # a second call with one more job runs only that one; the CSV keeps one row per job
    CALLS.clear()
    jobs.append(dict(task="b", seed=0, scale=2.0))
    assert [job for job, _, _ in training.run_matrix(path, jobs, fields, ("task", "seed"),
                                                     fn=_fake_run)] == [jobs[-1]]
    assert CALLS == [("b", 0)]
    rows = list(csv.DictReader(open(path)))
    assert [(r["task"], r["seed"], r["value"]) for r in rows] == [
        ("a", "0", "0.0"), ("a", "1", "2.0"), ("b", "0", "0.0")]
    assert training.load_rows(path) == rows
    with pytest.raises(ValueError, match=r"\['lever'\]"):
        list(training.run_matrix(path, jobs, fields, ("lever", "seed"), fn=_fake_run))
    # a CSV of another version of the runner (other columns) is refused before anything runs:
    # appending to it would shift the new rows' values under the old header
    CALLS.clear()
    jobs.append(dict(task="c", seed=0, scale=2.0))
    with pytest.raises(ValueError, match=r"has the columns \['task', 'seed', 'value'\].*--out"):
        list(training.run_matrix(path, jobs, fields + ["extra"], ("task", "seed"),
                                 fn=_fake_run))
    assert CALLS == [] and len(training.load_rows(path)) == 3
    with pytest.raises(ValueError, match="has the columns"):
        training.append_row(path, dict(task="c", seed=0, value=1.0, extra=2), fields + ["extra"])
    assert len(training.load_rows(path)) == 3


def test_run_all_refuses_a_bad_process_count():
    with pytest.raises(ValueError, match="n_parallel.*0"):
        list(training.run_all([dict(task="a", seed=0, scale=1.0)], 0, fn=_fake_run))
    with pytest.raises(ValueError, match="threads.*0"):
        list(training.run_all([dict(task="a", seed=0, scale=1.0)], 1, fn=_fake_run, threads=0))


def _fails_on_seed_1(task: str, seed: int, scale: float) -> dict:
    if seed == 1:
        raise ValueError(f"seed {seed} is cursed")
    return _fake_run(task, seed, scale)


def test_a_failed_job_is_reported_with_its_arguments_and_the_other_rows_are_kept(tmp_path,
                                                                                 capsys):
    path = str(tmp_path / "results.csv")
    fields = ["task", "seed", "value"]
    jobs = [dict(task="a", seed=s, scale=2.0) for s in (0, 1, 2)]
    seen = []
    with pytest.raises(training.JobsFailed) as info:
        for job, _, _ in training.run_matrix(path, jobs, fields, ("task", "seed"),
                                             fn=_fails_on_seed_1):
            seen.append(job)
    assert seen == [jobs[0], jobs[2]]  # the job after the failed one still ran
    assert [(r["seed"], r["value"]) for r in training.load_rows(path)] == [("0", "0.0"),
                                                                           ("2", "4.0")]
    (job, error), = info.value.failures
    assert job == jobs[1] and "ValueError: seed 1 is cursed" in error
    assert "{'task': 'a', 'seed': 1, 'scale': 2.0}" in str(info.value)
    assert "failed: ValueError: seed 1 is cursed" in capsys.readouterr().err
    # a rerun runs only the failed job
    CALLS.clear()
    assert [job for job, _, _ in training.run_matrix(path, jobs, fields, ("task", "seed"),
                                                     fn=_fake_run)] == [jobs[1]]


def test_without_ray_parallel_and_cluster_runs_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert training.needs_ray(1, None) is False and training.needs_ray(None, None) is False
    with pytest.raises(ImportError,
                       match=r"2 jobs at a time needs Ray.*pip install -e '\.\[sweep\]'"):
        training.needs_ray(2, None)
    with pytest.raises(ImportError, match=r"cluster at 'auto'.*\[sweep\]"):
        list(training.run_all([dict(task="a", seed=0, scale=1.0)], None, fn=_fake_run,
                              address="auto"))
    # one job at a time needs no Ray: the core install runs every sweep serially
    assert [row for _, row, _ in training.run_all([dict(task="a", seed=3, scale=1.0)], 1,
                                                  fn=_fake_run)] == [dict(task="a", seed=3,
                                                                          value=3.0)]


def _tiny_jobs(tmp_path, **extra):
    return [dict(task="CueRecall-v0", policy=policy, seed=seed, quick=True,
                 out=str(tmp_path / "curves"), timesteps=512, **extra)
            for policy, seed in (("grsn", 0), ("lstm", 1))]


def _without_speed(row: dict) -> dict:
    """The row as the CSV holds it (text: nan equals nan), but for the training speed."""
    return {k: str(v) for k, v in row.items() if k != "steps_per_s"}


def test_ray_tasks_give_the_rows_of_the_in_process_runs(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[sweep]')")
    jobs = _tiny_jobs(tmp_path)
    numba = pytest.importorskip("numba")
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    try:  # the Ray tasks run with one thread: so does the reference, for the same arithmetic
        training.set_threads(1)
        local = {(j["policy"], j["seed"]): row for j, row, _ in training.run_all(jobs, 1)}
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)
    remote = {(j["policy"], j["seed"]): row for j, row, _ in training.run_all(jobs, 2)}
    assert sorted(remote) == [("grsn", 0), ("lstm", 1)]
    for key, row in remote.items():
        assert _without_speed(row) == _without_speed(local[key])
        assert row["steps_per_s"] > 0
    assert float(remote["grsn", 0]["firing_rate"]) > 0  # a trained spiking policy, not a stub


def test_a_failed_ray_task_is_reported_with_its_arguments_and_the_other_row_kept(
        tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[sweep]')")
    good, bad = _tiny_jobs(tmp_path)
    bad["policy_kwargs"] = dict(bogus_option=1)  # GRSNPolicy / the LSTM policy: TypeError
    path = str(tmp_path / "results.csv")
    with pytest.raises(training.JobsFailed) as info:
        for _ in training.run_matrix(path, [bad, good], training.CSV_FIELDS,
                                     ("task", "policy", "seed"), n_parallel=2):
            pass
    rows = training.load_rows(path)
    assert [(r["task"], r["policy"], r["seed"]) for r in rows] == [("CueRecall-v0", "grsn", "0")]
    (job, error), = info.value.failures
    assert job == bad and "bogus_option" in error
    assert "'policy_kwargs': {'bogus_option': 1}" in str(info.value)
    assert "'policy': 'lstm', 'seed': 1" in str(info.value)
    assert "bogus_option" in capsys.readouterr().err
    # resuming with nothing left to run starts no Ray
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started for no job"))
    assert list(training.run_matrix(path, [good], training.CSV_FIELDS,
                                    ("task", "policy", "seed"), n_parallel=2)) == []


def test_task_config_shrinks_for_quick_and_replaces_the_budget():
    assert training.task_config("CueRecall-v0", False) == zoo.config_for("CueRecall-v0")
    quick = training.task_config("CueRecall-v0", True)
    assert (quick["n_timesteps"], quick["n_envs"], quick["n_steps"], quick["batch_size"]) == (
        2048, 4, 64, 128)
    marl = training.task_config("spread-PO", True, timesteps=500)
    assert (marl["n_timesteps"], marl["n_copies"], marl["n_steps"]) == (500, 2, 64)


def test_hyperparams_go_on_top_of_the_table_and_reach_the_algorithm():
    cfg = training.task_config("CartPole-P-v0", False, hyperparams=dict(learning_rate=3e-4))
    assert cfg == {**zoo.config_for("CartPole-P-v0"), "learning_rate": 3e-4}
    model = training.train_one("CueRecall-v0", "grsn", 0, True,
                               hyperparams=dict(n_epochs=2, clip_range=0.1)).model
    assert model.n_epochs == 2 and model.clip_range(1.0) == 0.1
    assert model.n_steps == training.task_config("CueRecall-v0", True)["n_steps"]
    for misplaced in ({"policy_kwargs": {}}, {"n_timesteps": 10}, {"n_envs": 2}):
        with pytest.raises(ValueError, match="not \\(pass policy_kwargs as policy_kwargs"):
            training.task_config("CartPole-P-v0", False, hyperparams=misplaced)
    with pytest.raises(TypeError, match="dict of algorithm arguments.*'learning_rate=3e-4'"):
        training.task_config("CartPole-P-v0", False, hyperparams="learning_rate=3e-4")


def test_make_task_env_gives_cue_recall_the_protocols_gap_unless_told_otherwise():
    # every runner builds its env here (quick_levers, diagnose_learning, train_one): a runner
    # that called it without the task's kwargs trained CueRecall with the env's default gap 5
    venv = training.make_task_env("CueRecall-v0", 2, 0)
    assert [e.unwrapped.gap for e in venv.envs] == [15, 15]
    assert training.make_task_env("CueRecall-v0", 1, 0, gap=3).envs[0].unwrapped.gap == 3
    assert training.task_env_kwargs("CartPole-P-v0") == {}
    assert training.task_env_kwargs("CueRecall-v0", {"noise": 0.1}) == dict(gap=15, noise=0.1)


def test_positive_int_is_an_argparse_type_quoting_the_input():
    import argparse

    assert training.positive_int("3") == 3
    for text, msg in (("0", "must be >= 1, got '0'"), ("-2", "got '-2'"),
                      ("x", "integer >= 1, got 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            training.positive_int(text)


def test_kwargs_option_parses_at_parse_time_and_refuses_malformed_items(capsys):
    import argparse

    p = argparse.ArgumentParser()
    training.add_kwargs_option(p, "--policy-kwargs", "extra policy_kwargs")
    assert p.parse_args([]).policy_kwargs == {}
    args = p.parse_args(["--policy-kwargs", "forget_bias=2.0", "readout=spikes+obs"])
    assert args.policy_kwargs == {"forget_bias": 2.0, "readout": "spikes+obs"}
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--policy-kwargs", "novalue"])
    assert exc.value.code == 2 and "'novalue'" in capsys.readouterr().err


def test_every_multi_agent_task_of_the_zoo_table_has_an_env():
    # the command lines offer zoo.marl_hyperparams' tasks; make_task_env builds _MARL_ENVS' ones
    assert set(zoo.marl_hyperparams) == set(training._MARL_ENVS)


class _Env:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_evaluate_modes_gives_each_mode_a_fresh_env_and_closes_it():
    envs, calls = [], []

    def make():
        envs.append(_Env())
        return envs[-1]

    def evaluate(env, n, deterministic):
        calls.append((env, n, deterministic))
        return ("det" if deterministic else "sampled", n)

    assert training.evaluate_modes(None, make, 7, evaluate) == (("det", 7), ("sampled", 7))
    assert [c[2] for c in calls] == [True, False] and calls[0][0] is not calls[1][0]
    assert all(env.closed for env in envs) and len(envs) == 2

    def broken(env, n, deterministic):
        raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError, match="evaluation failed"):
        training.evaluate_modes(None, make, 7, broken)
    assert envs[-1].closed  # closed even when the evaluation raises


def test_normalize_env_follows_rl_zoos_normalize_key():
    from stable_baselines3.common.vec_env import VecNormalize

    cfg = training.task_config("CartPole-P-v0", False)
    env = policies.make_env("CartPole-P-v0", 2, 0)
    assert "normalize" not in cfg and training.normalize_env(env, cfg) is env  # the suite's
    assert training.normalize_env(env, {**cfg, "normalize": False}) is env
    cfg = training.task_config("CartPole-P-v0", False, normalize=True)
    assert cfg["normalize"] is True
    wrapped = training.normalize_env(env, {**cfg, "gamma": 0.9})
    # RL Zoo's normalize: true: observations and rewards, returns discounted with the task's gamma
    assert isinstance(wrapped, VecNormalize) and wrapped.venv is env
    assert wrapped.norm_obs and wrapped.norm_reward and wrapped.gamma == 0.9
    obs_only = training.normalize_env(env, {**cfg, "normalize": dict(norm_reward=False)})
    assert obs_only.norm_obs and not obs_only.norm_reward and obs_only.gamma == cfg["gamma"]
    with pytest.raises(TypeError, match="normalize must be True, False or a dict.*'yes'"):
        training.normalize_env(env, {**cfg, "normalize": "yes"})
    with pytest.raises(TypeError, match="normalize must be True .* got 1"):
        training.task_config("CartPole-P-v0", False, normalize=1)
    # a run key is not an algorithm argument: the message names where it goes
    with pytest.raises(ValueError, match="normalize as normalize"):
        training.task_config("CartPole-P-v0", False, hyperparams=dict(normalize=True))


def test_frozen_normalization_evaluates_with_a_copy_of_the_training_statistics():
    from stable_baselines3.common.vec_env import VecNormalize

    train = training.normalize_env(policies.make_env("CartPole-P-v0", 2, 0),
                                   dict(normalize=True, gamma=0.99))
    train.reset()
    for _ in range(20):
        train.step(np.array([train.action_space.sample() for _ in range(2)]))
    env = policies.make_env("CartPole-P-v0", 2, 1)
    ev = training.frozen_normalization(train, env)
    assert isinstance(ev, VecNormalize) and ev.venv is env
    assert not ev.training and not ev.norm_reward  # statistics frozen, the task's own returns
    raw = ev.venv.reset()
    np.testing.assert_allclose(ev.normalize_obs(raw), train.normalize_obs(raw), rtol=1e-6)
    mean = ev.obs_rms.mean.copy()
    for _ in range(10):  # training goes on: the evaluation's statistics stay where they were
        train.step(np.array([train.action_space.sample() for _ in range(2)]))
    assert not np.array_equal(train.obs_rms.mean, mean)
    np.testing.assert_array_equal(ev.obs_rms.mean, mean)
    assert training.frozen_normalization(None, env) is env
    assert training.frozen_normalization(train.venv, env) is env  # no VecNormalize: as it is


def test_run_one_normalize_trains_under_vecnormalize_and_evaluates_it_frozen(tmp_path,
                                                                            monkeypatch):
    from stable_baselines3.common.vec_env import VecNormalize

    seen = {}
    real_modes, real_energy = training.evaluate_modes, training.energy_on

    def modes(model, make_eval_env, n, evaluate=None):
        seen["eval_env"] = make_eval_env()
        seen["train_env"] = model.get_vec_normalize_env()
        return real_modes(model, make_eval_env, n, evaluate)

    def energy(model, env):
        seen["energy_env"] = env
        return real_energy(model, env)

    monkeypatch.setattr(training, "evaluate_modes", modes)
    monkeypatch.setattr(training, "energy_on", energy)
    row = training.run_one("CueRecall-v0", "mlp", 0, True, str(tmp_path), normalize=True)
    train = seen["train_env"]
    assert isinstance(train, VecNormalize) and train.norm_reward
    assert train.gamma == training.task_config("CueRecall-v0", True)["gamma"]
    for key in ("eval_env", "energy_env"):  # what the deployed actor sees: the frozen statistics
        env = seen[key]
        assert isinstance(env, VecNormalize) and not env.training and not env.norm_reward
        np.testing.assert_array_equal(env.obs_rms.mean, train.obs_rms.mean)
    assert row["normalize"] is True and -1.0 <= row["eval_return"] <= 1.0  # CueRecall's returns
    seen.clear()
    assert training.run_one("CueRecall-v0", "mlp", 0, True, str(tmp_path))["normalize"] is False
    assert seen["train_env"] is None and not isinstance(seen["eval_env"], VecNormalize)
    with pytest.raises(ValueError, match="POMDP tasks only, got normalize=True for 'spread-PO'"):
        training.train_one("spread-PO", "mlp", 0, True, normalize=True)


def test_budget_conflict_keeps_one_protocol_per_task_in_a_csv():
    rows = [dict(task="CueRecall-v0", timesteps="2048", normalize="True")]
    assert training.budget_conflict(rows, "r.csv", "CueRecall-v0", True, None, True) is None
    msg = training.budget_conflict(rows, "r.csv", "CueRecall-v0", True, None, False)
    assert "normalize=True, this run asks for normalize=False" in msg and "--out" in msg
    old = [dict(task="CueRecall-v0", timesteps="2048")]  # a CSV of before the column: raw
    assert training.budget_conflict(old, "r.csv", "CueRecall-v0", True, None) is None
    assert "normalize=False" in training.budget_conflict(old, "r.csv", "CueRecall-v0", True,
                                                         None, True)


def test_a_table_entry_with_rl_zoos_normalize_key_trains_under_vecnormalize(monkeypatch):
    from stable_baselines3.common.vec_env import VecNormalize

    real = zoo.config_for
    monkeypatch.setattr(zoo, "config_for", lambda task: {**real(task), "normalize": True})
    model = training.train_one("CueRecall-v0", "mlp", 0, True).model
    assert isinstance(model.get_vec_normalize_env(), VecNormalize)  # RL Zoo reads it the same way
    # and an explicit normalize=False replaces the table's
    assert training.train_one("CueRecall-v0", "mlp", 0, True,
                              normalize=False).model.get_vec_normalize_env() is None
