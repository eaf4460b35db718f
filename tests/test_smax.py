"""policies.make_smax: JaxMARL's SMAX as a PettingZoo ParallelEnv (API, seeding, episode ends,
dead units, win flag) and through PettingZooVecEnv with RecurrentPPO. Needs the ``smax`` extra."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch as th

pytest.importorskip("jaxmarl", reason="SMAX needs JaxMARL: pip install -e '.[smax]' "
                                      "(Python >= 3.11)")

from pettingzoo.test import parallel_api_test  # noqa: E402
from sb3_contrib import RecurrentPPO  # noqa: E402
from stable_baselines3.common.logger import configure  # noqa: E402

from policies import GRSNPolicy, PettingZooVecEnv, TeamMetricsCallback, make_smax  # noqa: E402
from policies.marl import evaluate_team  # noqa: E402

STOP, EAST, ATTACK_0 = 4, 1, 5  # SMAX's discrete actions: 4 moves, stop, attack enemy j


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n)


def scripted(t: int, n_enemies: int) -> int:
    """Walk east for 4 steps, then cycle the attack over the enemies (out of range: no-op)."""
    return EAST if t < 4 else ATTACK_0 + t % n_enemies


def play(env, policy, seed=None, max_steps=1000):
    """One episode; returns the list of step results."""
    env.reset(seed=seed)
    steps = []
    for t in range(max_steps):
        if not env.agents:
            break
        steps.append(env.step({a: policy(t, a) for a in env.agents}))
    return steps


def test_parallel_api():
    env = make_smax("2s3z")
    parallel_api_test(env, num_cycles=150)
    assert env.possible_agents == [f"ally_{i}" for i in range(5)]
    assert env.observation_space("ally_0").shape == (127,)
    assert env.action_space("ally_0").n == 5 + 5
    assert env.state().shape == env.state_space.shape == (120,)


def test_seeding_gives_identical_trajectories():
    def run(env, seed):
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(150):  # crosses episode ends: reset() continues the key stream
            if not env.agents:
                obs, _ = env.reset()
                out.append(obs)
            out.append(env.step({a: int(rng.integers(0, 10)) for a in env.agents}))
        return out

    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (tuple, list)):
            return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
        return np.array_equal(x, y)

    env_a, env_b = make_smax("2s3z"), make_smax("2s3z")
    first = run(env_a, 7)
    assert same(first, run(env_b, 7))
    assert same(first, run(env_a, 7))  # reset(seed) restarts the stream
    assert not same(first[0], run(env_b, 8)[0])
    with pytest.raises(ValueError, match="seed must be an integer in"):
        env_a.reset(seed=-1)


def test_dead_units_leave_and_a_wiped_team_terminates():
    env = make_smax("3m")  # standing still, the allies are shot one by one
    steps = play(env, lambda t, a: STOP, seed=0)
    agents = set(env.possible_agents)
    deaths = 0
    for obs, rew, term, trunc, info in steps[:-1]:
        left = {a for a in term if term[a]}
        assert not any(trunc.values())
        assert all(a in rew for a in left)  # the reward of the dying step is kept
        deaths += len(left)
        agents -= left
    assert 1 <= deaths < 3
    _, _, term, trunc, info = steps[-1]
    assert set(term) == agents and all(term.values()) and not any(trunc.values())
    assert all(i["battle_won"] is False for i in info.values())
    assert "battle_won" not in steps[0][4][next(iter(steps[0][4]))]


def test_time_limit_truncates():
    env = make_smax("3m", enemy_shoots=False)  # nobody dies when the allies stand still
    steps = play(env, lambda t, a: STOP, seed=0)
    # JaxMARL tests its step counter before incrementing it: max_steps=100 ends on step 101
    assert len(steps) == 101
    assert not any(any(s[2].values()) for s in steps)
    _, _, term, trunc, info = steps[-1]
    assert all(trunc.values()) and len(trunc) == 3 and not any(term.values())
    assert all(i["battle_won"] is False for i in info.values())
    assert env.agents == []


def test_win_flag():
    env = make_smax("3m", enemy_shoots=False)
    steps = play(env, lambda t, a: scripted(t, 3), seed=0)
    _, rew, term, trunc, info = steps[-1]
    assert all(term.values()) and not any(trunc.values())
    assert all(i["battle_won"] is True for i in info.values())
    assert all(r >= 1.0 for r in rew.values())  # the won-battle bonus


class _ScriptedModel:
    """The scripted win above as an SB3-like model over the adapter's rows."""

    def __init__(self, n_enemies):
        self.n_enemies = n_enemies
        self.t = None

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        starts = np.asarray(episode_start, dtype=bool)
        self.t = np.where(starts, 0, self.t + 1) if self.t is not None else np.zeros(len(obs), int)
        return np.array([scripted(int(t), self.n_enemies) for t in self.t]), None


def test_win_and_dead_units_through_the_adapter():
    venv = PettingZooVecEnv(lambda: make_smax("3m", enemy_shoots=False), 2)
    result = evaluate_team(_ScriptedModel(3), venv, 4)
    assert result.win_rate == 1.0 and len(result.episodes) == 4
    venv.close()
    venv = PettingZooVecEnv(lambda: make_smax("3m"), 1, dead_agents="terminate")
    venv.seed(0)
    venv.reset()
    for _ in range(100):
        obs, rew, dones, infos = venv.step(np.full(3, STOP))
        if dones.any():
            break
    row = int(np.flatnonzero(dones)[0])
    assert not dones.all() and not infos[row]["agent_active"]  # one unit died, the copy goes on
    assert infos[row]["TimeLimit.truncated"] is False
    assert not np.any(infos[row]["terminal_observation"])  # SMAX observes a dead unit as zeros
    assert all(infos[r]["agent_active"] for r in range(3) if r != row)
    venv.close()


def test_recurrent_ppo_learns_through_the_adapter(tmp_path):
    venv = PettingZooVecEnv(lambda: make_smax("2s3z"), n_copies=2)
    model = RecurrentPPO(GRSNPolicy, venv, n_steps=128, batch_size=320, n_epochs=1, seed=0,
                         device="cpu", policy_kwargs=dict(lstm_hidden_size=16))
    model.set_logger(configure(str(tmp_path), ["csv"]))
    team = TeamMetricsCallback()
    model.learn(total_timesteps=128 * venv.num_envs, callback=team)
    assert model.num_timesteps == 128 * venv.num_envs
    assert team.n_episodes >= 2 and len(team.wins) == team.n_episodes  # max_steps is 100
    row, = csv.DictReader(open(tmp_path / "progress.csv"))
    assert 0.0 <= float(row["team/win_rate"]) <= 1.0
    mean, std, episodes = evaluate_team(model, venv, 2)
    assert len(episodes) == 2 and np.isfinite(mean)
    venv.close()


def test_the_centralised_critic_can_read_smax_s_world_state():
    from policies.marl import VecCentralState

    venv = VecCentralState(PettingZooVecEnv(lambda: make_smax("2s3z"), n_copies=2,
                                            env_state=True), state="env")
    world = make_smax("2s3z").state_space
    assert venv.observation_space["state"] == world
    venv.seed(3)
    obs = venv.reset()
    assert obs["state"].shape == (10,) + world.shape
    for c in range(2):  # every row of a copy: its copy's own world state
        np.testing.assert_array_equal(obs["state"][5 * c:5 * c + 5],
                                      np.tile(venv.venv.env_method("state", indices=[5 * c])[0],
                                              (5, 1)))
    assert not np.array_equal(obs["state"][0], obs["state"][5])  # copies seeded 3 and 4
    for _ in range(3):
        obs, _, _, _ = venv.step(np.full(10, STOP))
    np.testing.assert_array_equal(obs["state"][0], venv.venv.env_method("state", indices=[0])[0])
    venv.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown SMAX map '2s3x'.*'2s3z'"):
        make_smax("2s3x")
    with pytest.raises(TypeError, match="map by name"):
        make_smax("2s3z", scenario=None)
    env = make_smax("3m")
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_train_marl_cli_on_smax_with_a_centralised_critic(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "train_marl", Path(__file__).resolve().parents[1] / "examples" / "train_marl.py")
    train_marl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_marl)
    rc = train_marl.main(["--env", "smax-3s_vs_5z", "--policy", "grsn", "--timesteps", "96",
                          "--copies", "1", "--eval-episodes", "1", "--no-progress-bar",
                          "--centralised-critic", "--central-state", "env",
                          "--save", str(tmp_path / "m")])
    line = next(x for x in capsys.readouterr().out.splitlines() if "team return" in x)
    assert rc == 0 and "win rate" in line and "over 1 episodes, deterministic" in line


def test_step_batch_steps_several_envs_as_one_call_with_their_own_key_streams():
    from policies.marl.smax import SMAXParallelEnv

    def stepped_together(seeds, maps, n_steps=6):
        envs = [make_smax(m) for m in maps]
        for env, seed in zip(envs, seeds):
            env.reset(seed=seed)
        return [SMAXParallelEnv.step_batch(envs, [{a: scripted(t, env.num_allies)
                                                   for a in env.agents} for env in envs])
                for t in range(n_steps)]

    def stepped_alone(seed, map_name, n_steps=6):
        env = make_smax(map_name)
        env.reset(seed=seed)
        return [env.step({a: scripted(t, env.num_allies) for a in env.agents})
                for t in range(n_steps)]

    maps = ["2s3z", "3m", "2s3z"]  # two maps in one call: one vmapped call per map
    together = stepped_together([1, 2, 3], maps)
    for i, (seed, map_name) in enumerate(zip([1, 2, 3], maps)):
        alone = stepped_alone(seed, map_name)
        for t in range(6):
            obs_b, rew_b, term_b, trunc_b, _ = together[t][i]
            obs_a, rew_a, term_a, trunc_a, _ = alone[t]
            assert obs_b.keys() == obs_a.keys() and term_b == term_a and trunc_b == trunc_a
            for a in obs_a:  # the same keys: equal up to the float rounding of the vmapped step
                np.testing.assert_allclose(obs_b[a], obs_a[a], atol=1e-5)
                assert rew_b[a] == pytest.approx(rew_a[a], abs=1e-5)
    # seeds other than the neighbours' give other battles: each env has its own stream
    assert not np.array_equal(together[0][0][0]["ally_0"], together[0][2][0]["ally_0"])
    with pytest.raises(ValueError, match="2 envs and 1 action dicts"):
        SMAXParallelEnv.step_batch([make_smax("3m"), make_smax("3m")], [{}])
    with pytest.raises(RuntimeError, match="reset"):
        SMAXParallelEnv.step_batch([make_smax("3m")], [{}])


def test_vecenv_copies_step_together_and_stay_seeded():
    def run():
        venv = PettingZooVecEnv(lambda: make_smax("3m"), n_copies=3)
        assert venv._backend._step_batch is not None  # one vmapped call per vector step
        venv.seed(5)
        rows = [venv.reset()]
        rng = np.random.default_rng(0)
        for _ in range(120):  # crosses episode ends (max_steps 100): resets inside the batch
            obs, rew, dones, infos = venv.step(rng.integers(0, 8, size=venv.num_envs))
            rows += [obs, rew, dones]
        venv.close()
        return rows

    first = run()
    assert all(np.array_equal(a, b) for a, b in zip(first, run()))


def test_every_smax_task_of_the_tables_builds_one_row_per_allied_unit():
    from policies import training, zoo

    units = {"smax-2s3z": 5, "smax-3s_vs_5z": 3, "smax-8m": 8}
    assert {t for t in zoo.marl_hyperparams if t.startswith("smax-")} == set(units)
    for task, n in units.items():
        venv = training.make_task_env(task, 2, 0)
        assert venv.num_envs == 2 * n, task
        assert venv.reset().shape[0] == 2 * n
        venv.close()
