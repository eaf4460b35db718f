"""The example scripts run end to end on tiny budgets (their real runs are long)."""
import os
import sys

import numpy as np
import pytest
from sb3_contrib import RecurrentPPO

import policies
from policies import training, zoo

# the example scripts are command lines, not a package: the tests import them from their folder
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))

import reproduce  # noqa: E402
import sweep_marl  # noqa: E402
import train_marl  # noqa: E402
import train_pomdp  # noqa: E402
import quick_levers  # noqa: E402


@pytest.mark.parametrize("policy", ["grsn", "lstm", "mlp"])
def test_train_pomdp_cli_trains_evaluates_and_saves(tmp_path, capsys, policy):
    save = tmp_path / "model"
    rc = train_pomdp.main(["--env", "CartPole-P-v0", "--policy", policy, "--timesteps", "256",
                           "--n-envs", "2", "--eval-episodes", "2", "--no-progress-bar",
                           "--save", str(save), "--tensorboard", str(tmp_path / "tb"),
                           "--prev-action-reward"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{policy} on CartPole-P-v0: eval return" in out
    assert ("firing rate" in out) == (policy == "grsn")
    assert (tmp_path / "model.zip").exists()
    assert any(p.is_dir() for p in (tmp_path / "tb").iterdir())
    if policy != "mlp":
        model = RecurrentPPO.load(save)
        # CartPole-P (2) + one-hot previous action (2) + previous reward (1)
        assert model.observation_space.shape == (5,)


def test_train_pomdp_passes_policy_kwargs(tmp_path):
    rc = train_pomdp.main(["--policy", "grsn", "--timesteps", "128", "--n-envs", "2",
                           "--eval-episodes", "1", "--no-progress-bar", "--save",
                           str(tmp_path / "m"), "--policy-kwargs", "forget_bias=1.5",
                           "readout=spikes+obs", "n_grsn_layers=2"])
    assert rc == 0
    pol = RecurrentPPO.load(tmp_path / "m").policy
    assert pol.lstm_actor.readout == "spikes+obs" and pol.lstm_actor.num_layers == 2
    assert training.parse_kwargs(["a=1", "b=x", "c=[1, 2]"]) == {"a": 1, "b": "x",
                                                                 "c": [1, 2]}
    with pytest.raises(ValueError, match="key=value.*'novalue'"):
        training.parse_kwargs(["novalue"])
    with pytest.raises(SystemExit) as exc:
        train_pomdp.main(["--policy-kwargs", "novalue"])
    assert exc.value.code == 2


def test_train_pomdp_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        train_pomdp.main(["--env", "NoSuchEnv-v0"])
    with pytest.raises(SystemExit):
        train_pomdp.main(["--timesteps", "0"])


def test_train_pomdp_reports_the_steps_that_ran(capsys):
    # 2 envs x n_steps 128 = one rollout of 256 steps: asking for 100 trains 256 (issue 15.2)
    rc = train_pomdp.main(["--env", "CartPole-P-v0", "--policy", "mlp", "--timesteps", "100",
                           "--n-envs", "2", "--eval-episodes", "1", "--no-progress-bar",
                           "--save", ""])
    assert rc == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "eval return" in x)
    assert "trained 256 steps in" in line


@pytest.mark.parametrize("count", ["0", "-1"])
def test_train_pomdp_refuses_a_non_positive_episode_count(capsys, count):
    with pytest.raises(SystemExit) as exc:  # issue 15.3: refused before any training
        train_pomdp.main(["--env", "CartPole-P-v0", "--eval-episodes", count, "--timesteps",
                          "64", "--n-envs", "1", "--no-progress-bar", "--save", ""])
    assert exc.value.code == 2
    assert f"--eval-episodes: must be >= 1, got '{count}'" in capsys.readouterr().err


def test_train_pomdp_reports_bad_policy_kwargs_without_a_traceback(capsys):
    with pytest.raises(SystemExit) as exc:  # issue 15.6: the message, exit 2 like argparse
        train_pomdp.main(["--env", "CartPole-P-v0", "--policy-kwargs", "bogus=1", "--timesteps",
                          "64", "--n-envs", "1", "--no-progress-bar", "--save", ""])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --policy-kwargs:" in err and "'bogus'" in err and "Traceback" not in err


def test_training_clis_default_to_one_thread_unless_told(capsys):
    import torch

    before = torch.get_num_threads()
    common = ["--env", "CartPole-P-v0", "--policy", "mlp", "--timesteps", "64", "--n-envs", "1",
              "--eval-episodes", "1", "--no-progress-bar", "--save", ""]
    try:
        assert train_pomdp.main(common + ["--threads", "2"]) == 0
        assert "torch threads 2" in capsys.readouterr().out
        assert train_pomdp.main(common) == 0
        assert "torch threads 1" in capsys.readouterr().out and torch.get_num_threads() == 1
        with pytest.raises(SystemExit):
            train_pomdp.main(common + ["--threads", "0"])
    finally:
        torch.set_num_threads(before)


def test_every_task_has_a_complete_config():
    for env_id in policies.POMDP_ENV_IDS:
        cfg = zoo.config_for(env_id)
        for key in ("n_timesteps", "n_envs", "n_steps", "batch_size", "learning_rate"):
            assert cfg[key] > 0, (env_id, key)
        assert cfg["policy_kwargs"]["lstm_hidden_size"] > 0, env_id
        assert cfg["policy"] == "policies.GRSNPolicy"
    assert set(zoo.hyperparams) == set(policies.POMDP_ENV_IDS)
    for task in ("spread-PO", "speaker-listener"):
        cfg = zoo.config_for(task)
        assert cfg["n_copies"] > 0 and cfg["n_timesteps"] > 0 and "n_envs" not in cfg


def test_config_for_returns_a_copy_and_names_unknown_tasks():
    cfg = zoo.config_for("Pendulum-P-v0")
    cfg["policy_kwargs"]["net_arch"]["pi"].append(1)
    cfg["n_envs"] = 99
    fresh = zoo.config_for("Pendulum-P-v0")
    assert fresh["policy_kwargs"]["net_arch"] == dict(pi=[64], vf=[64]) and fresh["n_envs"] == 4
    with pytest.raises(ValueError, match="'NoSuchTask-v0'.*CartPole-P-v0"):
        zoo.config_for("NoSuchTask-v0")


def test_train_marl_cli_reports_team_return(tmp_path, capsys):
    rc = train_marl.main(["--policy", "grsn", "--timesteps", "384", "--copies", "2",
                          "--eval-episodes", "3", "--no-progress-bar",
                          "--save", str(tmp_path / "marl")])
    out = capsys.readouterr().out
    assert rc == 0 and (tmp_path / "marl.zip").exists()
    line = next(x for x in out.splitlines() if "team return" in x)
    assert "over 3 episodes" in line
    mean = float(line.split("team return ")[1].split(" ")[0])
    assert -1000 < mean < 0  # spread rewards are negative distances


def test_train_marl_centralised_critic(tmp_path, capsys):
    from sb3_contrib import RecurrentPPO

    rc = train_marl.main(["--policy", "gru", "--timesteps", "384", "--copies", "2",
                          "--eval-episodes", "2", "--no-progress-bar", "--centralised-critic",
                          "--save", str(tmp_path / "marl")])
    assert rc == 0 and "over 2 episodes, deterministic" in capsys.readouterr().out
    policy = RecurrentPPO.load(tmp_path / "marl.zip", device="cpu").policy
    assert policy.centralised_critic and policy.vf_features_extractor.features_dim == 48
    with pytest.raises(SystemExit) as exc:
        train_marl.main(["--policy", "mlp", "--centralised-critic"])
    assert exc.value.code == 2
    assert "--centralised-critic is an option of the recurrent policies" in \
        capsys.readouterr().err


def test_reproduce_quick_writes_rows_plots_and_resumes(tmp_path):
    import csv


    out = str(tmp_path / "repro")
    args = ["--quick", "--tasks", "CueRecall-v0", "--policies", "grsn", "mlp", "--out", out]
    assert reproduce.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "repro" / "results.csv")))
    assert [(r["task"], r["policy"]) for r in rows] == [("CueRecall-v0", "grsn"),
                                                         ("CueRecall-v0", "mlp")]
    grsn, mlp = rows
    assert 0 < float(grsn["firing_rate"]) < 1 and mlp["firing_rate"] == "nan"
    assert float(grsn["energy_core_nj"]) > 0 and float(mlp["energy_core_nj"]) == 0
    assert float(grsn["acs_agent"]) > 0 and float(mlp["acs_agent"]) == 0
    for r in rows:  # both evaluation modes, each a mean over episodes of CueRecall's range
        assert -1.0 <= float(r["eval_return"]) <= 1.0
        assert -1.0 <= float(r["eval_return_sampled"]) <= 1.0
    for name in ("learning_curves.png", "energy.png", "return_vs_energy.png", "summary.md"):
        assert (tmp_path / "repro" / name).stat().st_size > 0
    summary = (tmp_path / "repro" / "summary.md").read_text()
    assert "| CueRecall-v0 |" in summary and "; sampled " in summary
    assert reproduce.main(args) == 0  # resumes: nothing new to run
    assert len(list(csv.DictReader(open(tmp_path / "repro" / "results.csv")))) == 2
    # another budget for the same task would mix in the tables: refused, with the fix
    with pytest.raises(SystemExit):
        reproduce.main(args + ["--timesteps", "1024"])
    assert reproduce.main(["--quick", "--tasks", "CueRecall-v0", "--policies", "mlp",
                           "--timesteps", "1024", "--out", out + "_1024"]) == 0
    row, = csv.DictReader(open(tmp_path / "repro_1024" / "results.csv"))
    assert row["timesteps"] == "1024"
    # --normalize (RL Zoo's normalize: true) is another protocol: refused in the same CSV
    with pytest.raises(SystemExit):
        reproduce.main(args + ["--normalize"])
    norm = ["--quick", "--normalize", "--tasks", "CueRecall-v0", "--policies", "mlp", "--out",
            out + "_norm"]
    assert reproduce.main(norm) == 0
    row, = csv.DictReader(open(tmp_path / "repro_norm" / "results.csv"))
    assert row["normalize"] == "True" and -1.0 <= float(row["eval_return"]) <= 1.0
    assert "| CueRecall-v0 (VecNormalize) |" in (tmp_path / "repro_norm" / "summary.md").read_text()


def test_reproduce_normalize_refuses_the_pettingzoo_tasks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["--quick", "--normalize", "--out", str(tmp_path)])  # default: spread-PO too
    assert exc.value.code == 2
    assert "['spread-PO'] are PettingZoo tasks: leave them out of --tasks" in \
        capsys.readouterr().err


def test_reproduce_plots_give_each_policy_one_colour_on_every_panel(tmp_path, monkeypatch):
    # a task that only some policies ran must not shift the colours of the others (matplotlib's
    # cycle advances per drawn line): the legend of the first panel names every panel's colours
    import json

    import matplotlib.colors as mcolors

    os.makedirs(tmp_path / "curves")
    rows = []
    for task, pols in (("A-v0", ["grsn", "lif", "lstm"]), ("B-v0", ["grsn", "lstm"])):
        for pol in pols:
            rows.append(dict(task=task, policy=pol, seed="0", eval_return="1.0",
                             energy_agent_nj="1.0", energy_core_nj="0.5"))
            with open(tmp_path / "curves" / f"{task}_{pol}_0.json", "w") as f:
                json.dump([[0, 0.0], [100, 1.0], [200, 2.0]], f)
    figs = []
    monkeypatch.setattr(reproduce, "_save", lambda fig, out, name, made: figs.append(fig))
    reproduce.plots(rows, str(tmp_path))
    axes = [ax for ax in figs[0].axes if ax.get_lines()]
    colour = {}
    for ax in axes:
        for line in ax.get_lines():
            colour.setdefault(line.get_label(), set()).add(mcolors.to_hex(line.get_color()))
    assert set(colour) == {"grsn", "lif", "lstm"}
    assert all(len(c) == 1 for c in colour.values()), colour  # the same colour on both panels
    assert len({next(iter(c)) for c in colour.values()}) == 3  # and different policies differ
    legend = axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["grsn", "lif", "lstm"]


def test_levers_change_what_they_say_and_the_runner_resumes(tmp_path):
    import csv

    import levers

    cfg = zoo.config_for("CartPole-P-v0")
    env = policies.make_env("CartPole-P-v0", 1, 0)
    built = {}
    for name in ("default", "learnable_tau", "surrogate_alpha_4", "tau_2", "tau_4",
                 "two_layers"):
        policy, make_kwargs, _, _ = levers.LEVERS[name]
        model = training.build_model(policy, env, cfg, 0, "cpu", policy_kwargs=make_kwargs())
        built[name] = model.policy.lstm_actor.grsn
    nodes = {name: grsn.layers[0].node for name, grsn in built.items()}
    assert not nodes["default"].learnable_tau and nodes["learnable_tau"].learnable_tau
    assert nodes["default"].surrogate_function.alpha == 2.0
    assert nodes["surrogate_alpha_4"].surrogate_function.alpha == 4.0
    assert nodes["default"].beta == 0.0 and nodes["tau_2"].beta == 0.5
    assert nodes["tau_4"].beta == 0.75
    assert built["default"].num_layers == 1 and built["two_layers"].num_layers == 2

    out = str(tmp_path / "lev")
    args = ["--quick", "--levers", "default", "prev_action_reward", "--seeds", "3",
            "--out", out]
    assert levers.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "lev" / "results.csv")))
    assert [(r["lever"], r["policy"], r["seed"]) for r in rows] == [
        ("default", "grsn", "3"), ("prev_action_reward", "grsn", "3")]
    summary = (tmp_path / "lev" / "summary.md").read_text()
    assert "| default |" in summary and "| prev_action_reward |" in summary
    assert levers.main(args) == 0  # resumes: nothing new
    assert len(list(csv.DictReader(open(tmp_path / "lev" / "results.csv")))) == 2
    with pytest.raises(SystemExit):  # another protocol in the same CSV: refused
        levers.main(args + ["--normalize"])
    policy, make_kwargs, _, _ = levers.LEVERS["gru_critic_symexp"]
    model = training.build_model(policy, env, cfg, 0, "cpu", policy_kwargs=make_kwargs())
    from policies.cores import PaddedGRUCore
    from policies.value_head import SymExpValueHead

    assert isinstance(model.policy.lstm_critic, PaddedGRUCore)
    assert isinstance(model.policy.value_net, SymExpValueHead)


def test_reproduce_runs_jobs_as_ray_tasks(tmp_path):
    import csv

    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[sweep]')")
    out = str(tmp_path / "par")
    args = ["--quick", "--tasks", "CueRecall-v0", "--policies", "grsn", "lstm", "--out", out,
            "--jobs", "2", "--threads", "1"]
    assert reproduce.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "par" / "results.csv")))
    assert sorted((r["task"], r["policy"]) for r in rows) == [("CueRecall-v0", "grsn"),
                                                               ("CueRecall-v0", "lstm")]
    assert all(-1.0 <= float(r["eval_return"]) <= 1.0 for r in rows)  # CueRecall's range
    for r in rows:
        assert (tmp_path / "par" / "curves" / f"CueRecall-v0_{r['policy']}_0.json").exists()
    with pytest.raises(SystemExit):
        reproduce.main(["--jobs", "0", "--out", out])


def test_sweep_marl_quick_runs_with_and_without_the_critic_and_resumes(tmp_path):
    import csv
    import json

    out = str(tmp_path / "sw")
    args = ["--quick", "--envs", "spread-PO", "--policies", "gru", "mlp", "--out", out]
    assert sweep_marl.main(args) == 0
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    # the MLP has no centralised-critic variant; the recurrent policy runs both
    assert [(r["policy"], r["critic"]) for r in rows] == [("gru", "none"), ("gru", "env"),
                                                          ("mlp", "none")]
    for r in rows:
        assert r["eval_episodes"] == "4" and float(r["eval_return"]) < 0
        assert r["win_rate"] == ""  # spread-PO reports no win flag
        assert float(r["energy_agent_nj"]) > 0
    # the deployed actor is the same network with or without the training-only critic
    assert rows[0]["macs_agent"] == rows[1]["macs_agent"]
    with open(training.team_curve_path(out, "spread-PO", "gru", "env", 0)) as f:
        curve = json.load(f)
    assert curve["return"] and curve["win"] == []
    summary = open(os.path.join(out, "summary.md")).read()
    assert "| spread-PO | gru + critic (env state) | 1 | – |" in summary
    assert os.path.getsize(os.path.join(out, "learning_curves.png")) > 0
    assert sweep_marl.main(args) == 0  # resumes: nothing new to run
    assert len(list(csv.DictReader(open(os.path.join(out, "results.csv"))))) == 3


def test_run_team_and_train_one_refuse_what_they_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="run_team runs the PettingZoo tasks"):
        training.run_team("CartPole-P-v0", "grsn", 0, str(tmp_path), quick=True)
    with pytest.raises(ValueError, match="centralised critic is an option of the recurrent"):
        training.train_one("spread-PO", "mlp", 0, True, critic="joint_obs")
    with pytest.raises(ValueError, match="centralised_critic needs a multi-agent task"):
        training.train_one("CartPole-P-v0", "grsn", 0, True, critic="env")
    with pytest.raises(ValueError, match=r"critic must be one of \('none', 'joint_obs', "
                                         r"'env'\), got True"):
        training.train_one("spread-PO", "grsn", 0, True, critic=True)


def test_sweep_clis_without_ray_refuse_parallel_runs_naming_the_extra(tmp_path, monkeypatch,
                                                                     capsys):
    import levers
    import memory_gap

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = str(tmp_path / "r")
    for main, args in ((reproduce.main, ["--quick", "--jobs", "2", "--out", out]),
                       (sweep_marl.main, ["--quick", "--jobs", "2", "--out", out]),
                       (levers.main, ["--quick", "--address", "auto", "--out", out]),
                       (memory_gap.main, ["--jobs", "2", "--csv", out + "/m.csv"])):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        assert "needs Ray, which is not installed: pip install -e '.[sweep]'" in (
            capsys.readouterr().err)
    assert not os.path.exists(os.path.join(out, "results.csv"))


def test_levers_reports_a_failed_run_with_its_arguments_and_keeps_the_others(tmp_path,
                                                                            monkeypatch, capsys):
    import csv

    import levers

    monkeypatch.setitem(levers.LEVERS, "tau_4", ("grsn", lambda: dict(bogus_option=4), {},
                                                 "a lever that cannot be built"))
    out = str(tmp_path / "lev")
    assert levers.main(["--quick", "--levers", "tau_4", "default", "--seeds", "0",
                        "--out", out]) == 1
    rows = list(csv.DictReader(open(tmp_path / "lev" / "results.csv")))
    assert [(r["lever"], r["seed"]) for r in rows] == [("default", "0")]
    err = capsys.readouterr().err
    assert "1 job(s) failed" in err and "{'lever': 'tau_4', 'task': 'CartPole-P-v0'" in err
    assert "bogus_option" in err
    assert "| default |" in (tmp_path / "lev" / "summary.md").read_text()


@pytest.mark.parametrize("policy", ["grsn", "lif", "notap", "lstm", "mlp"])
def test_pendulum_config_gives_every_policy_the_same_zoo_settings(policy):
    import torch

    cfg = zoo.config_for("Pendulum-P-v0")
    env = policies.make_env("Pendulum-P-v0", 1, 0)
    model = training.build_model(policy, env, cfg, 0, "cpu")
    assert model.use_sde and model.sde_sample_freq == 4 and model.gamma == 0.9
    assert model.policy.activation_fn is torch.nn.ReLU and not model.policy.ortho_init
    # the recurrent policies get the zoo's one-layer heads; the memoryless MLP two layers
    expected = [64, 64] if policy == "mlp" else dict(pi=[64], vf=[64])
    assert model.policy.net_arch == expected
    # a caller's policy_kwargs still win over the table's
    model = training.build_model(policy, env, cfg, 0, "cpu",
                                 policy_kwargs=dict(activation_fn=torch.nn.Tanh))
    assert model.policy.activation_fn is torch.nn.Tanh


class _AlwaysAction:
    """A stand-in model that always takes one discrete action and counts episode starts."""

    def __init__(self, action: int):
        self.action = action
        self.starts = 0

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        import numpy as np

        self.starts += int(np.sum(episode_start))
        return np.full(len(obs), self.action), state


def test_eval_modes_rollout_counts_episodes_returns_and_actions():
    import numpy as np

    import eval_modes

    env = policies.make_env("CartPole-P-v0", 3, 0)
    model = _AlwaysAction(1)
    res = eval_modes.rollout(model, env, 7, deterministic=True)
    # 7 episodes spread over 3 copies as evaluate_policy spreads them (2, 2, 3)
    assert len(res["returns"]) == len(res["lengths"]) == 7
    # CartPole pays 1 per step, so the return is the length; always pushing right falls fast
    np.testing.assert_array_equal(res["returns"], res["lengths"])
    assert res["lengths"].max() < 50 and res["timeouts"] == 0.0
    np.testing.assert_array_equal(res["actions"], [0.0, 1.0])
    # the recurrent state is reset at the first step (3 copies) and after every episode end
    # that another decision follows (all but at most one last episode per copy)
    assert model.starts >= 3 + 7 - 3
    with pytest.raises(ValueError, match="positive integer"):
        eval_modes.rollout(model, env, 0, deterministic=True)
    env.close()


def test_eval_modes_cli_evaluates_both_modes_and_resumes(tmp_path):
    import csv

    import eval_modes

    out = str(tmp_path / "modes")
    args = ["--quick", "--env", "CartPole-P-v0", "--policies", "grsn", "--out", out]
    assert eval_modes.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "modes" / "results.csv")))
    assert [(r["policy"], r["seed"]) for r in rows] == [("grsn", "0")]
    for r in rows:
        for mode in ("det", "sto"):
            # CartPole-P pays 1 per step: the mean return equals the mean length (kept to 0.1)
            assert float(r[f"{mode}_return"]) == pytest.approx(float(r[f"{mode}_len"]), abs=0.06)
            freq = [float(a) for a in r[f"{mode}_actions"].split("/")]
            assert len(freq) == 2 and sum(freq) == pytest.approx(1.0, abs=2e-3)
    summary = (tmp_path / "modes" / "summary.md").read_text()
    assert "| CartPole-P-v0 | grsn | 1 |" in summary
    assert eval_modes.main(args) == 0  # resumes: nothing new
    assert len(list(csv.DictReader(open(tmp_path / "modes" / "results.csv")))) == 1
    with pytest.raises(SystemExit):
        eval_modes.main(args + ["--timesteps", "1024"])


def test_probe_cv_r2_scores_linear_and_unrelated_targets():
    import numpy as np

    import probe_velocity

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[:, 4] = 3.0  # a constant column (a neuron that never fires) is dropped, not a NaN
    y = np.stack([x[:, 0] - 2 * x[:, 1], 0.5 * x[:, 2]], axis=1)
    groups = [slice(0, 100), slice(100, 200), slice(200, 300), slice(300, 400)]
    assert probe_velocity.cv_r2([x[g] for g in groups], [y[g] for g in groups]) > 0.999
    noise = rng.normal(size=(400, 1))
    assert probe_velocity.cv_r2([x[g] for g in groups], [noise[g] for g in groups]) < 0.05
    # a nearly collinear pair whose small difference is the target (a finite difference) is
    # still found: the penalty is small enough
    pos = rng.normal(size=400)
    step = 0.01 * rng.normal(size=400)
    xd = np.stack([pos + step, pos], axis=1)
    assert probe_velocity.cv_r2([xd[g] for g in groups],
                                [step[g, None] for g in groups]) > 0.999
    pred = probe_velocity.ridge_predict(x[:300], y[:300], x[300:])
    np.testing.assert_allclose(pred, y[300:], atol=1e-3)
    with pytest.raises(ValueError, match="at least 3 groups"):
        probe_velocity.cv_r2([x[:200], x[200:]], [y[:200], y[200:]])
    with pytest.raises(ValueError, match="at least 2 training"):
        probe_velocity.ridge_predict(x[:1], y[:1], x[300:])


def test_probe_velocity_cli_probes_and_resumes(tmp_path):
    import csv

    import probe_velocity

    out = str(tmp_path / "probe")
    args = ["--quick", "--env", "CartPole-P-v0", "--policies", "grsn", "--out", out]
    assert probe_velocity.main(args) == 0
    row, = csv.DictReader(open(tmp_path / "probe" / "results.csv"))
    assert (row["policy"], row["seed"]) == ("grsn", "0") and int(row["episodes"]) > 0
    # positions alone hold little velocity; the previous step (positions, products, action) gives
    # it almost exactly: checks that the probe's inputs and targets line up in time
    assert float(row["r2_obs"]) < 0.6 < 0.95 < float(row["r2_prev_step"]) <= 1.0
    assert -1.0 < float(row["r2_readout"]) <= 1.0 and -1.0 < float(row["r2_state"]) <= 1.0
    assert "| CartPole-P-v0 | grsn | 1 |" in (tmp_path / "probe" / "summary.md").read_text()
    assert probe_velocity.main(args) == 0  # resumes: nothing new
    assert len(list(csv.DictReader(open(tmp_path / "probe" / "results.csv")))) == 1
    with pytest.raises(ValueError, match="recurrent core"):
        probe_velocity.probe_one("CartPole-P-v0", "mlp", 0, True)
    with pytest.raises(ValueError, match="task must be one of"):
        probe_velocity.probe_one("CartPole-V-v0", "grsn", 0, True)


def test_memory_gap_runs_resumes_and_refuses_bad_grsn_kwargs(tmp_path, capsys):
    import csv

    import memory_gap

    path = str(tmp_path / "mg.csv")
    args = ["--gaps", "3", "--seeds", "0", "--policies", "grsn", "--timesteps", "64",
            "--csv", path]
    assert memory_gap.main(args) == 0
    row, = csv.DictReader(open(path))
    assert (row["policy"], row["tag"], row["gap"], row["timesteps"]) == ("grsn", "default", "3",
                                                                         "64")
    assert -1.0 <= float(row["return"]) <= 1.0  # CueRecall's range
    assert memory_gap.main(args) == 0  # resumes: nothing new
    assert len(list(csv.DictReader(open(path)))) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        memory_gap.main(args + ["--grsn-kwargs", "bogus=1"])
    assert exc.value.code == 2 and "'bogus'" in capsys.readouterr().err


def test_quick_levers_normalize_evaluates_with_the_training_statistics(capsys):
    from stable_baselines3.common.vec_env import VecNormalize

    train = VecNormalize(policies.make_env("CartPole-P-v0", 2, 0), norm_reward=False)
    train.reset()
    for _ in range(20):
        train.step(np.array([train.action_space.sample() for _ in range(2)]))
    ev = quick_levers.eval_env("CartPole-P-v0", 0, train)
    assert isinstance(ev, VecNormalize) and not ev.training and not ev.norm_reward
    np.testing.assert_array_equal(ev.obs_rms.mean, train.obs_rms.mean)
    raw = ev.venv.reset()
    np.testing.assert_allclose(ev.normalize_obs(raw),
                               np.clip((raw - train.obs_rms.mean) / np.sqrt(train.obs_rms.var + 1e-8),
                                       -10, 10), rtol=1e-5)
    assert not isinstance(quick_levers.eval_env("CartPole-P-v0", 0, train.venv), VecNormalize)
    with pytest.raises(SystemExit) as exc:
        quick_levers.main(["--task", "perf", "--normalize"])
    assert exc.value.code == 2 and "normalises its observations already" in capsys.readouterr().err


def _one_rollout(task: str, **overrides) -> dict:
    """The task's settings with a budget of one rollout (and ``overrides``)."""
    cfg = zoo.hyperparams[task]
    return {**cfg, "n_timesteps": cfg["n_envs"] * cfg["n_steps"], **overrides}


def test_quick_levers_reports_the_deployed_actors_energy(monkeypatch):
    monkeypatch.setattr(quick_levers.zoo, "config_for", _one_rollout)
    row = quick_levers.run("CueRecall-v0", "grsn", 0, {})
    assert row["energy_agent_nj"] > row["energy_core_nj"] > 0
    assert row["macs_agent"] > 0 and row["acs_agent"] > 0
    # under VecNormalize the actor sees other inputs than reproduce.py's: no energy
    row = quick_levers.run("CueRecall-v0", "grsn", 0, {}, normalize=True)
    assert "energy_agent_nj" not in row and {"det", "sampled"} <= set(row)


def test_quick_levers_normalize_reward_normalises_training_rewards_only(monkeypatch, capsys):
    from stable_baselines3.common.vec_env import VecNormalize

    made = []

    class Spy(VecNormalize):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(quick_levers.zoo, "config_for",
                        lambda task: _one_rollout(task, gamma=0.95))  # another discount
    monkeypatch.setattr(training, "VecNormalize", Spy)  # normalize_env / frozen_normalization
    for reward in (False, True):
        made.clear()
        row = quick_levers.run("CueRecall-v0", "grsn", 0, {}, normalize=True,
                               normalize_reward=reward)
        assert made[0].training and made[0].norm_reward is reward   # the training env
        assert made[0].gamma == 0.95  # the algorithm's discount, as RL Zoo sets it
        assert all(not e.norm_reward for e in made[1:])             # evaluation: raw returns
        assert row["task"] == "CueRecall-v0+VecNormalize" + ("(obs,reward)" if reward else "")
    with pytest.raises(SystemExit) as exc:
        quick_levers.main(["--task", "CueRecall-v0", "--normalize-reward"])
    assert exc.value.code == 2 and "pass --normalize too" in capsys.readouterr().err


def test_quick_levers_acrobot_zoo_env_hides_the_velocities_and_freezes_its_statistics():
    from stable_baselines3.common.vec_env import VecNormalize

    train = quick_levers.acrobot_zoo_env(2, 0)
    assert isinstance(train, VecNormalize) and train.training and train.norm_reward
    assert train.observation_space.shape == (4,)  # cos/sin of the two angles, no velocities
    train.reset()
    raw = train.get_original_obs()
    np.testing.assert_allclose(raw[:, 0] ** 2 + raw[:, 1] ** 2, 1.0, rtol=1e-5)
    np.testing.assert_allclose(raw[:, 2] ** 2 + raw[:, 3] ** 2, 1.0, rtol=1e-5)
    for _ in range(10):
        train.step(np.array([train.action_space.sample() for _ in range(2)]))
    ev = quick_levers.acrobot_zoo_env(4, 10_000, train)
    assert not ev.training and not ev.norm_reward and ev.num_envs == 4
    np.testing.assert_array_equal(ev.obs_rms.mean, train.obs_rms.mean)
    mean = ev.obs_rms.mean.copy()
    for _ in range(10):  # training goes on; the evaluation env's statistics stay where they were
        train.step(np.array([train.action_space.sample() for _ in range(2)]))
    assert not np.array_equal(train.obs_rms.mean, mean)
    np.testing.assert_array_equal(ev.obs_rms.mean, mean)


def test_quick_levers_acrobot_zoo_trains_with_rl_zoos_settings(monkeypatch, capsys):
    built = []

    def spy(*args, **kwargs):
        built.append(RecurrentPPO(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(quick_levers, "ACROBOT_ZOO_STEPS", 16 * 256)  # one rollout
    monkeypatch.setattr(quick_levers, "EVAL_EPISODES", 4)
    monkeypatch.setitem(quick_levers.POLICIES, "grsn", (spy, quick_levers.POLICIES["grsn"][1]))
    row = quick_levers.run("acrobot-zoo", "grsn", 0, {}, hyperparams=dict(n_epochs=1))
    model = built[0]
    assert (model.n_envs, model.n_steps, model.gae_lambda, model.gamma, model.ent_coef) == (
        16, 256, 0.94, 0.99, 0.0)
    assert model.n_epochs == 1 and model.learning_rate == 3e-4  # --hyperparams on top
    assert model.num_timesteps == 16 * 256
    assert -500.0 <= row["det"] <= 0.0 and -500.0 <= row["sampled"] <= 0.0
    assert row["energy_agent_nj"] > row["energy_core_nj"] > 0
    with pytest.raises(SystemExit) as exc:
        quick_levers.main(["--task", "acrobot-zoo", "--hyperparams", "n_timesteps=10"])
    assert exc.value.code == 2 and "n_timesteps" in capsys.readouterr().err


def test_quick_levers_hyperparams_reach_the_algorithm(monkeypatch, capsys):
    built = []
    real_build = quick_levers.build_model

    def spy(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(quick_levers.zoo, "config_for", _one_rollout)
    monkeypatch.setattr(quick_levers, "build_model", spy)
    row = quick_levers.run("CueRecall-v0", "grsn", 0, {},
                           hyperparams=dict(learning_rate=5e-4, n_epochs=2))
    assert built[0].learning_rate == 5e-4 and built[0].n_epochs == 2
    assert built[0].n_steps == zoo.hyperparams["CueRecall-v0"]["n_steps"]  # the rest: the table
    assert row["hyperparams"] == repr(dict(learning_rate=5e-4, n_epochs=2))
    with pytest.raises(SystemExit) as exc:
        quick_levers.main(["--task", "CueRecall-v0", "--hyperparams", "n_timesteps=10"])
    assert exc.value.code == 2 and "n_timesteps" in capsys.readouterr().err


def test_diagnose_learning_normalize_trains_under_vecnormalize(tmp_path, monkeypatch):
    import diagnose_learning
    from stable_baselines3.common.vec_env import VecNormalize

    made = []
    real = diagnose_learning.normalize_env

    def spy(env, cfg):
        made.append(real(env, cfg))
        return made[-1]

    monkeypatch.setattr(diagnose_learning, "normalize_env", spy)
    args = ["--env", "CueRecall-v0", "--policies", "grsn", "--timesteps", "256", "--probe-every",
            "1", "--out", str(tmp_path)]
    assert diagnose_learning.main(args + ["--normalize"]) == 0
    assert isinstance(made[-1], VecNormalize) and made[-1].norm_reward
    assert (tmp_path / "CueRecall-v0_grsn_s0.csv").stat().st_size > 0
    assert diagnose_learning.main(args) == 0
    assert not isinstance(made[-1], VecNormalize)  # the table's protocol: raw
