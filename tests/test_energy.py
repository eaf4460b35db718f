"""grsn_sj.energy and policies.energy: operation counts checked against numbers worked out by
hand."""
import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

import policies
from grsn_sj.energy import GRSN_NEURON_OPS, EnergyConstants, count_ops
from policies.energy import collect_observations, estimate_energy

OBS = gym.spaces.Box(-1, 1, (2,))
ACT = gym.spaces.Discrete(2)
LR = lambda _: 1e-3  # noqa: E731

# Two envs, six steps. env 0 starts a new episode at t = 3, env 1 runs one episode.
STARTS = np.array([[1, 1], [0, 0], [0, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
# With _set_pattern: neurons 0, 1 fire every step, neuron 3 never, neuron 2 at the 2nd, 4th,
# 6th ... step of an episode. env 0: 2 * 6 + 2 = 14 spikes, env 1: 2 * 6 + 3 = 15 -> 29 over
# 12 decisions (30 if the state were not reset at env 0's second episode).
SPIKES = 29
DECISIONS = 12


def _obs(T=6, n_envs=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (T, n_envs, 2)).astype(np.float32)


def _set_pattern(grsn_layer):
    """Zero weights; forget bias -30 (F ~ 0, so c = I); input currents 4, 4, 1.5, 0.

    c = 4: u = 2, 2.5, 2.75, ... >= 1: fires every step. c = 0: never fires. c = 1.5:
    u = 0.75 (no), 0.375 + 0.75 = 1.125 (fire, u^ = 0.125), 0.8125 (no), 1.156 (fire), ...
    """
    with torch.no_grad():
        grsn_layer.fc.weight.zero_()
        grsn_layer.fc.bias.copy_(torch.tensor([-30.0] * 4 + [4.0, 4.0, 1.5, 0.0]))


def _grsn_policy(**kw):
    """A small GRSNPolicy counted by hand: spikes-only readout unless a test asks for another
    (the policy's default adds the observation shortcut, counted in its own test), and no
    auxiliary decoder (training-only: it must not change the counts, see below). ``tau=2``
    (the paper's; GRSNPolicy's default is 1 since 0.11): :func:`_set_pattern`'s spike counts
    come from the membrane's reset dynamics."""
    kw.setdefault("tau", 2.0)
    kw.setdefault("grsn_hidden_size", 4)
    kw.setdefault("net_arch", [5])
    kw.setdefault("readout", "spikes")
    kw.setdefault("aux_loss", None)
    return policies.GRSNPolicy(OBS, ACT, LR, **kw)


# ------------------------------------------------------------------ (a) Linear, spikes vs real

def test_linear_on_spikes_costs_one_ac_per_spike_per_synapse():
    lin = nn.Linear(4, 3)
    spikes = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 1]])  # 5 spikes
    c = count_ops(lin, spikes, spike_columns={lin: 4})
    assert (c.synaptic_acs, c.synaptic_macs, c.acs, c.macs) == (15, 0, 15, 0)
    real = count_ops(lin, torch.tensor([[0.3, -1.2, 0.5, 2.0]]))
    assert (real.synaptic_macs, real.synaptic_acs) == (12, 0)
    # binary values that are not declared as spikes (e.g. a one-hot observation) are data: MACs
    assert count_ops(lin, spikes).macs == 2 * 12
    # declared as spikes but not binary: MACs, not ACs
    assert count_ops(lin, torch.full((1, 4), 0.5), spike_columns={lin: 4}).macs == 12
    # mixed columns: the first two carry spikes (1 spike), the last two are real
    mixed = count_ops(lin, torch.tensor([[1.0, 0.0, 0.5, -2.0]]), spike_columns={lin: 2})
    assert (mixed.synaptic_acs, mixed.synaptic_macs) == (1 * 3, 2 * 3)


# ------------------------------------------------------------------ (b) LSTM cell

def test_lstm_one_step_gate_macs_plus_elementwise():
    lstm = nn.LSTM(2, 3)
    c = count_ops(lstm, torch.randn(1, 1, 2))
    assert c.synaptic_macs == 4 * 3 * (2 + 3)  # 60
    # c = f*c' + i*g: 2 MACs, h = o*tanh(c): 1 MAC per hidden unit; 3 sigmoid + 2 tanh
    assert (c.neuron_macs, c.neuron_acs, c.activations) == (3 * 3, 0, 5 * 3)
    assert c.macs == 69 and c.acs == 0
    # 2 steps x 2 sequences = 4 cell updates
    assert count_ops(lstm, torch.randn(2, 2, 2)).macs == 4 * 69


# ------------------------------------------------------------------ (c) GRSN policy by hand

def test_grsn_policy_counts_match_hand_count():
    pol = _grsn_policy()
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    assert r.n_decisions == DECISIONS
    # core: gate projection Linear(2, 8) = 16 MACs + 4 GRSN neurons (4 MACs + 3 ACs + 2 act)
    assert r.core.synaptic_macs == 2 * 4 * 2 == 16
    assert (r.core.neuron_macs, r.core.neuron_acs, r.core.activations) == (16, 12, 8)
    assert (r.core.macs, r.core.acs, r.core.neuron_ops) == (32, 12, 28)
    assert r.core.synaptic_acs == 0
    # readout spikes feed Linear(4, 5): 5 ACs per spike
    head = r.per_module["mlp_extractor.policy_net.0"]
    assert head.synaptic_acs == pytest.approx(SPIKES * 5 / DECISIONS)
    assert head.synaptic_macs == 0
    assert r.firing_rate == pytest.approx(SPIKES / (DECISIONS * 4))
    assert r.notes == ()
    # agent = core + head ACs + action_net Linear(5, 2) (10 MACs) + Tanh(5)
    assert r.agent.macs == pytest.approx(32 + 10)
    assert r.agent.acs == pytest.approx(12 + SPIKES * 5 / DECISIONS)
    assert r.agent.activations == pytest.approx(8 + 5)
    # critic: its own GRSN core (32 MACs) + value_net Linear(5, 1) (5 MACs); the critic's
    # spikes cost ACs in its MLP, none in the actor's
    assert r.agent_with_critic.macs - r.agent.macs == pytest.approx(32 + 5)
    critic_head = r.per_module["mlp_extractor.value_net.0"]
    assert critic_head.synaptic_acs == pytest.approx(
        r.critic_firing_rate * 4 * 5)
    # the state is reset at env 0's second episode: without it neuron 2 fires once more
    no_reset = estimate_energy(pol, _obs(), None)
    assert no_reset.per_module["mlp_extractor.policy_net.0"].synaptic_acs == pytest.approx(
        (SPIKES + 1) * 5 / DECISIONS)


def test_observations_are_threaded_per_environment():
    """Neuron 2 now gets its current from the observation: 1.5 in env 0, 0 in env 1."""
    pol = _grsn_policy()
    layer = pol.lstm_actor.grsn.layers[0]
    _set_pattern(layer)
    with torch.no_grad():
        layer.fc.bias[6] = 0.0
        layer.fc.weight[6, 0] = 1.5
    obs = np.zeros((6, 2, 2), np.float32)
    obs[:, 0, 0] = 1.0
    r = estimate_energy(pol, obs, STARTS)
    # env 0: 12 + 2 (2nd step of each of its two episodes); env 1: 12 + 0
    assert r.per_module["mlp_extractor.policy_net.0"].synaptic_acs == pytest.approx(
        26 * 5 / DECISIONS)
    # the same observations as a torch tensor give the same counts
    assert estimate_energy(pol, torch.from_numpy(obs), torch.from_numpy(STARTS)).as_dict() == (
        r.as_dict())


def test_a_critic_running_the_actors_core_is_not_counted_in_the_agent():
    """critic_core="shared" runs the actor's core a second time for the critic: the deployed
    agent is counted as with a critic core of its own, the training pass with both runs."""
    shared = _grsn_policy(critic_core="shared")
    assert shared.lstm_critic is shared.lstm_actor
    own = _grsn_policy()
    own.load_state_dict(shared.state_dict(), strict=False)  # same actor; the critic core differs
    for pol in (shared, own):
        _set_pattern(pol.lstm_actor.grsn.layers[0])
    a, b = estimate_energy(shared, _obs(), STARTS), estimate_energy(own, _obs(), STARTS)
    assert a.agent.as_dict() == b.agent.as_dict() and a.core.as_dict() == b.core.as_dict()
    assert a.per_module["lstm_actor.grsn.layers.0.fc"] == b.per_module["lstm_actor.grsn.layers.0.fc"]
    assert a.firing_rate == b.firing_rate and a.critic_firing_rate is None
    # the training pass: the core twice (32 MACs each) + value_net Linear(5, 1)
    assert a.agent_with_critic.macs - a.agent.macs == pytest.approx(32 + 5)


def test_spikes_plus_obs_readout_splits_ac_and_mac_columns():
    pol = _grsn_policy(readout="spikes+obs", shortcut_dim=3)
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    head = r.per_module["mlp_extractor.policy_net.0"]  # Linear(4 + 3, 5)
    assert head.synaptic_acs == pytest.approx(SPIKES * 5 / DECISIONS)
    assert head.synaptic_macs == 3 * 5
    assert r.per_module["lstm_actor.shortcut.0"].synaptic_macs == 2 * 3
    # the core alone excludes the shortcut embedding, the agent includes it
    assert r.core.macs == 32
    assert r.agent.macs == pytest.approx(32 + 6 + 15 + 10)


def test_membrane_readout_counts_the_membrane_columns_as_macs():
    pol = _grsn_policy(readout="spikes+membrane")
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    head = r.per_module["mlp_extractor.policy_net.0"]  # Linear(4 spikes + 4 membrane, 5)
    assert head.synaptic_acs == pytest.approx(SPIKES * 5 / DECISIONS)
    assert head.synaptic_macs == 4 * 5
    # the core is unchanged: the membrane is a readout, not an extra layer
    assert (r.core.macs, r.core.acs) == (32, 12)


def test_second_grsn_layer_is_spike_driven():
    pol = _grsn_policy(n_grsn_layers=2)
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    second = r.per_module["lstm_actor.grsn.layers.1.fc"]  # Linear(4, 8) fed by layer-1 spikes
    assert second.synaptic_acs == pytest.approx(SPIKES * 8 / DECISIONS)
    assert second.synaptic_macs == 0
    assert r.core.synaptic_macs == 16
    assert (r.core.neuron_macs, r.core.neuron_acs) == (2 * 16, 2 * 12)


def test_lif_policy_counts():
    pol = policies.LIFPolicy(OBS, ACT, LR, grsn_hidden_size=4, net_arch=[5], readout="spikes")
    r = estimate_energy(pol, _obs(), STARTS)
    # Linear(2, 4) = 8 MACs; 4 LIF neurons x (1 MAC + 3 ACs); no activation
    assert (r.core.synaptic_macs, r.core.neuron_macs, r.core.neuron_acs) == (8, 4, 12)
    assert r.core.activations == 0
    head = r.per_module["mlp_extractor.policy_net.0"]
    assert head.synaptic_macs == 0
    assert head.synaptic_acs == pytest.approx(r.firing_rate * 4 * 5)


# ------------------------------------------------------------------ (d) energy

def test_energy_uses_the_constants():
    pol = _grsn_policy()
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    for scope in (r.core, r.agent, r.agent_with_critic):
        assert scope.energy_pj == pytest.approx(4.6 * scope.macs + 0.9 * scope.acs)
        assert scope.energy_nj == pytest.approx(scope.energy_pj / 1000)
    assert r.core.energy_pj == pytest.approx(4.6 * 32 + 0.9 * 12)
    mine = EnergyConstants(mac_pj=2.0, ac_pj=0.5, activation_pj=1.0)
    r2 = estimate_energy(pol, _obs(), STARTS, constants=mine)
    assert r2.core.energy_pj == pytest.approx(2.0 * 32 + 0.5 * 12 + 1.0 * 8)
    assert r.with_constants(mine).agent.energy_pj == pytest.approx(r2.agent.energy_pj)
    # a Linear(4, 3) on 5 spikes (15 ACs) and on one real row (12 MACs)
    lin = nn.Linear(4, 3)
    spikes = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 1]])
    assert count_ops(lin, spikes, spike_columns={lin: 4}).energy_pj() == pytest.approx(15 * 0.9)
    assert count_ops(lin, torch.randn(1, 4)).energy_pj(mine) == pytest.approx(12 * 2.0)
    d = r.as_dict()
    assert d["agent"]["energy_pj"] == pytest.approx(r.agent.energy_pj)
    assert d["core"]["macs"] == 32 and d["constants"]["mac_pj"] == 4.6
    text = str(r)
    assert "core" in text and "agent + critic" in text and "firing rate" in text


# ------------------------------------------------------------------ (e) MLP

def test_mlp_policy_has_no_acs():
    pol = ActorCriticPolicy(OBS, ACT, LR, net_arch=[5])
    r = estimate_energy(pol, _obs(), STARTS)
    assert r.core is None and r.firing_rate is None
    assert r.agent.acs == 0 and r.agent_with_critic.acs == 0
    assert r.agent.macs == 2 * 5 + 5 * 2
    assert r.agent_with_critic.macs == 2 * 5 + 5 * 2 + 2 * 5 + 5 * 1
    assert "-" in str(r)


def test_lstm_policy_core_is_the_lstm():
    pol = RecurrentActorCriticPolicy(OBS, ACT, LR, lstm_hidden_size=3, net_arch=[5])
    r = estimate_energy(pol, _obs(), STARTS)
    assert (r.core.macs, r.core.acs, r.core.activations) == (69, 0, 15)
    assert r.agent.macs == 69 + 3 * 5 + 5 * 2
    assert r.agent_with_critic.macs == 2 * (69 + 3 * 5) + 5 * 2 + 5 * 1


# ------------------------------------------------------------------ (f) without TAP

@pytest.mark.parametrize("sub_steps", [2, 4])
def test_notap_counts_scale_with_sub_steps(sub_steps):
    pol = policies.NoTAPPolicy(OBS, ACT, LR, grsn_hidden_size=4, net_arch=[5],
                               sub_steps=sub_steps, readout="spikes")
    r = estimate_energy(pol, _obs(), STARTS)
    assert r.core.macs == sub_steps * 32
    assert r.core.acs == sub_steps * 12
    # the readout is a spike rate (real): the head costs MACs, no ACs
    head = r.per_module["mlp_extractor.policy_net.0"]
    assert (head.synaptic_macs, head.synaptic_acs) == (4 * 5, 0)


def test_notap_rate_is_real_even_when_it_is_all_zero_or_one():
    pol = policies.NoTAPPolicy(OBS, ACT, LR, grsn_hidden_size=4, net_arch=[5], sub_steps=4,
                               readout="spikes")
    layer = pol.lstm_actor.grsn.layers[0]
    _set_pattern(layer)
    with torch.no_grad():
        layer.fc.bias[6] = 0.0  # neurons 0, 1 fire at every sub-step, 2, 3 never: rates 1, 1, 0, 0
    r = estimate_energy(pol, _obs(), STARTS)
    assert r.firing_rate == 0.5
    head = r.per_module["mlp_extractor.policy_net.0"]
    assert (head.synaptic_macs, head.synaptic_acs) == (4 * 5, 0)
    assert r.notes == ()


def test_notap_with_one_sub_step_reads_out_spikes():
    pol = policies.NoTAPPolicy(OBS, ACT, LR, grsn_hidden_size=4, net_arch=[5], sub_steps=1,
                               readout="spikes")
    _set_pattern(pol.lstm_actor.grsn.layers[0])
    r = estimate_energy(pol, _obs(), STARTS)
    # fresh state every decision: neurons 0, 1 fire, neuron 2 (first step: u = 0.75) does not
    head = r.per_module["mlp_extractor.policy_net.0"]
    assert (head.synaptic_macs, head.synaptic_acs) == (0, 2 * 5)


# ------------------------------------------------------------------ (g) bad input

def test_bad_input_is_rejected_with_a_clear_message():
    pol = _grsn_policy()
    with pytest.raises(ValueError, match=r"\[T, n_envs, 2\]"):
        estimate_energy(pol, np.zeros((6, 2, 3), np.float32))
    with pytest.raises(ValueError, match="observations"):
        estimate_energy(pol, np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match="episode_starts"):
        estimate_energy(pol, _obs(), np.zeros((6, 3)))
    with pytest.raises(ValueError, match="0/1"):
        estimate_energy(pol, _obs(), STARTS * 2)
    with pytest.raises(ValueError, match="NaN"):
        estimate_energy(pol, np.full((2, 1, 2), np.nan, np.float32))
    with pytest.raises(TypeError, match="actor-critic policy"):
        estimate_energy(nn.Linear(2, 2), _obs())
    with pytest.raises(TypeError, match="actor-critic policy"):
        estimate_energy("GRSNPolicy", _obs())
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        estimate_energy(pol, [[[0.0, 0.0]]])
    with pytest.raises(TypeError, match="EnergyConstants"):
        estimate_energy(pol, _obs(), constants={"mac_pj": 4.6})
    with pytest.raises(ValueError, match="mac_pj"):
        EnergyConstants(mac_pj=-1.0)
    with pytest.raises(TypeError, match="ac_pj"):
        EnergyConstants(ac_pj="0.9")
    mlp = ActorCriticPolicy(OBS, ACT, LR, net_arch=[5])
    mlp.mlp_extractor.policy_net[0] = nn.BatchNorm1d(5)
    with pytest.raises(TypeError, match="BatchNorm1d"):
        estimate_energy(mlp, _obs())
    with pytest.raises(TypeError, match="nn.Module"):
        count_ops(lambda x: x, torch.zeros(1))
    lin = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="in_features"):
        count_ops(lin, torch.zeros(1, 4), spike_columns={lin: 5})
    with pytest.raises(TypeError, match="SB3 algorithm"):
        collect_observations(pol, policies.make_env("CartPole-V-v0", 1, 0), 4)


# ------------------------------------------------------------------ rollouts

def test_rollout_observations_reproduce_the_rollout_spikes():
    env = policies.make_env("CartPole-V-v0", 2, seed=0)
    model = RecurrentPPO(policies.GRSNPolicy, env, seed=0, n_steps=16, batch_size=32,
                         policy_kwargs=dict(grsn_hidden_size=8))
    core = model.policy.lstm_actor
    core.reset_firing_stats()
    obs, starts = collect_observations(model, env, 40)
    assert obs.shape == (40, 2, 2) and starts.shape == (40, 2)
    assert starts[0].all() and starts[1:].sum() > 0  # some episode ended inside the rollout
    rollout_rate = core.firing_rate()  # spikes of predict(), step by step with state
    r = estimate_energy(model, obs, starts)  # one sequence per env, resets at the starts
    assert r.firing_rate == pytest.approx(rollout_rate)
    assert core.firing_rate() == pytest.approx(rollout_rate)  # counters restored
    part = estimate_energy(model, obs[:7], starts[:7])
    assert part.firing_rate != pytest.approx(rollout_rate)
    assert core.firing_rate() == pytest.approx(rollout_rate)
    assert r.core.synaptic_macs == 2 * 16 and r.core.neuron_macs == 8 * GRSN_NEURON_OPS.macs

    lstm = RecurrentPPO("MlpLstmPolicy", env, seed=0, n_steps=16, batch_size=32,
                        policy_kwargs=dict(lstm_hidden_size=3))
    obs, starts = collect_observations(lstm, env, 20)
    assert estimate_energy(lstm, obs, starts).core.macs == 69
    mlp = PPO("MlpPolicy", env, seed=0, n_steps=16, batch_size=32,
              policy_kwargs=dict(net_arch=[5]))
    obs, starts = collect_observations(mlp, env, 5)
    assert estimate_energy(mlp, obs, starts).agent.acs == 0


# ------------------------------------------------------------------ the example script

def test_energy_report_example_loads_models_and_prints_ratio(tmp_path, capsys):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import energy_report

    env = policies.make_env("CartPole-V-v0", 2, seed=0)
    paths = {}
    for label, algo, policy, kw in (
            ("grsn", RecurrentPPO, policies.GRSNPolicy, dict(grsn_hidden_size=4)),
            ("lstm", RecurrentPPO, "MlpLstmPolicy", dict(lstm_hidden_size=4)),
            ("mlp", PPO, "MlpPolicy", {})):
        paths[label] = tmp_path / label
        algo(policy, env, n_steps=16, batch_size=32, policy_kwargs=kw).save(paths[label])
    rc = energy_report.main(["--models"] + [f"{k}={v}.zip" for k, v in paths.items()]
                            + ["--steps", "5", "--n-envs", "2", "--details"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "GRSN / LSTM energy: agent" in out
    table = out.split("core = recurrent memory alone")[1]
    assert all(f"\n{k} " in table for k in paths)
    with pytest.raises(SystemExit):
        energy_report.main(["--models", "grsn"])
    with pytest.raises(SystemExit):
        energy_report.main(["--timesteps", "0"])
    with pytest.raises(SystemExit):
        energy_report.main(["--mac-pj", "-1"])


# ------------------------------------------------------------------ layering

def test_grsn_sj_energy_imports_no_rl_library():
    """grsn_sj (energy counting included) stands alone: no policies, SB3, sb3-contrib or
    gymnasium module is imported by it."""
    import subprocess
    import sys

    code = ("import sys, grsn_sj, grsn_sj.energy, grsn_sj.rnn, grsn_sj.ops; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'policies', 'stable_baselines3', 'sb3_contrib', 'gymnasium'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_grsn_stack_counting_counts_the_neurons_without_a_policy():
    from grsn_sj import RecurrentGRSN
    from grsn_sj.energy import grsn_stack_counting

    core = RecurrentGRSN(2, 4, num_layers=2)
    _set_pattern(core.layers[0])
    c = count_ops(core, torch.zeros(6, 1, 2), counting=grsn_stack_counting(core))
    # layer 1: Linear(2, 8) on real input, 6 steps; layer 2 fed by layer-1 spikes (neurons 0, 1
    # every step, neuron 2 at steps 2, 4, 6: 15 spikes, 8 outgoing synapses each)
    assert c.synaptic_macs == 6 * 2 * 8
    assert c.synaptic_acs == 15 * 8
    assert (c.neuron_macs, c.neuron_acs, c.activations) == (2 * 6 * 4 * 4, 2 * 6 * 4 * 3,
                                                             2 * 6 * 4 * 2)


def test_a_core_that_declares_no_counting_is_refused():
    pol = _grsn_policy()

    class Opaque(policies.SpikingCore):
        def __init__(self):
            super().__init__(2, 4, 1, "spikes", 32)

    pol.lstm_actor = Opaque()
    with pytest.raises(TypeError, match="op_counting"):
        estimate_energy(pol, _obs(), STARTS)


def test_training_only_parts_do_not_count():
    """The auxiliary decoder is not part of the deployed actor: the same weights with and
    without it give identical counts, and no decoder module appears in the report."""
    torch.manual_seed(0)
    plain = _grsn_policy(readout="spikes+obs", shortcut_dim=3)
    torch.manual_seed(0)
    with_aux = _grsn_policy(readout="spikes+obs", shortcut_dim=3, aux_loss="obs_diff")
    with_aux.load_state_dict(plain.state_dict(), strict=False)
    a = estimate_energy(plain, _obs(), STARTS)
    b = estimate_energy(with_aux, _obs(), STARTS)
    assert a.agent == b.agent and a.core == b.core
    assert not any("aux_decoder" in name for name in b.per_module)


def test_a_convolution_costs_its_macs_and_a_cnn_policy_is_counted():
    """Conv layers on real inputs: in_channels / groups * prod(kernel) MACs per output element;
    so CnnGRSNPolicy's NatureCNN is counted with the deployed agent."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.envs import FakeImageEnv

    conv = nn.Conv2d(3, 4, kernel_size=(3, 2), stride=1, groups=1)
    counts = count_ops(conv, torch.randn(2, 3, 5, 6))
    assert counts.macs == 2 * 4 * 3 * 5 * (3 * 3 * 2) and counts.acs == 0
    grouped = nn.Conv1d(4, 6, kernel_size=3, groups=2)
    assert count_ops(grouped, torch.randn(1, 4, 10)).macs == 6 * 8 * (2 * 3)
    env = make_vec_env(lambda: FakeImageEnv(screen_height=36, screen_width=36), n_envs=2)
    model = RecurrentPPO(policies.CnnGRSNPolicy, env, n_steps=8, seed=0,
                         policy_kwargs=dict(lstm_hidden_size=8))
    with pytest.raises(ValueError, match="height-width-channel.*model.get_env"):
        collect_observations(model, env, 3)  # the user's env, not the transposed one
    obs, starts = collect_observations(model, model.get_env(), 3)
    report = estimate_energy(model.policy, obs, starts)
    cnn = sum(c.macs for name, c in report.per_module.items()
              if name.startswith("features_extractor.cnn"))
    # NatureCNN on 1x36x36: 32x8x8 s4 -> 8x8, 64x4x4 s2 -> 3x3, 64x3x3 s1 -> 1x1
    assert cnn == 32 * 8 * 8 * (1 * 8 * 8) + 64 * 3 * 3 * (32 * 4 * 4) + 64 * 1 * 1 * (64 * 3 * 3)
    assert report.agent.macs > cnn and report.core.macs < report.agent.macs
