"""The auxiliary self-predictive loss of the spiking policies, the GRU baseline and the
learning-signal instrument (policies.diagnostics)."""
import math

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO

import policies
from policies import GRSNPolicy, GRUPolicy
from policies.diagnostics import FIELDS, LearningSignalCallback, ridge_cv_r2
from policies.recurrent import AUX_SHARE_SWITCH, ScaledStep, _InjectGrad, _obs_diff_loss

SMALL = dict(n_steps=32, batch_size=64, n_epochs=2, verbose=0)


def _model(policy=GRSNPolicy, n_envs=2, seed=0, **policy_kwargs):
    env = policies.make_env("CartPole-P-v0", n_envs, seed)
    return RecurrentPPO(policy, env, seed=seed, policy_kwargs=policy_kwargs, **SMALL)


# ------------------------------------------------------------------ the auxiliary loss

def test_obs_diff_loss_uses_only_steps_with_a_previous_step_of_the_same_episode():
    torch.manual_seed(0)
    T, N, F = 6, 3, 2
    feats = torch.randn(T, N, F)
    feats[4:, 2] = 0.0                      # copy 2: padded after its 4th step
    starts = torch.zeros(T, N)
    starts[3, 1] = 1.0                      # copy 1: an episode starts at t = 3
    latent = torch.randn(T, N, 5)
    decoder = torch.nn.Linear(5, F)
    loss = _obs_diff_loss(decoder, feats, latent, starts, (feats == 0).all(-1))
    pairs = [(t, n) for t in range(1, T) for n in range(N)
             if not (n == 1 and t == 3) and not (n == 2 and t >= 4)]
    diff = torch.stack([feats[t, n] - feats[t - 1, n] for t, n in pairs])
    target = diff / (diff.std(0, keepdim=True) + 1e-6)
    pred = torch.stack([decoder(latent[t, n]) for t, n in pairs])
    assert torch.allclose(loss, ((pred - target) ** 2).mean(), atol=1e-6)


def test_inject_grad_adds_the_aux_gradient_to_the_same_backward():
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    v = torch.randn(3, requires_grad=True)
    carrier, aux = (w * 2).sum(0, keepdim=True), (v ** 2).sum()
    out = _InjectGrad.apply(carrier, aux, 0.5)
    assert torch.equal(out, carrier)
    (out * 3).sum().backward()
    ref_w, ref_v = w.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    ((ref_w * 2).sum() * 3 + 0.5 * (ref_v ** 2).sum()).backward()
    assert torch.allclose(w.grad, ref_w.grad) and torch.allclose(v.grad, ref_v.grad)


def test_aux_loss_trains_the_decoder_and_leaves_outputs_unchanged():
    model = _model(aux_loss="obs_diff", readout="spikes+obs", grsn_hidden_size=16)
    pol = model.policy
    before = [p.detach().clone() for p in pol.aux_decoder.parameters()]
    opt = {id(p) for g in pol.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in opt for p in pol.aux_decoder.parameters())
    model.learn(256)
    assert np.isfinite(pol.last_aux_loss) and pol.last_aux_loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, pol.aux_decoder.parameters()))
    # evaluate_actions returns the same values with and without the injected loss
    batch = next(model.rollout_buffer.get(None)) if model.rollout_buffer.full else None
    if batch is not None:
        acts = batch.actions.long().flatten()
        out = pol.evaluate_actions(batch.observations, acts, batch.lstm_states,
                                   batch.episode_starts)
        pol.aux_inject = False
        ref = pol.evaluate_actions(batch.observations, acts, batch.lstm_states,
                                   batch.episode_starts)
        pol.aux_inject = True
        for a, b in zip(out, ref):
            assert torch.equal(a, b)


def test_aux_decoder_is_training_only_and_saved(tmp_path):
    model = _model(aux_loss="obs_diff", grsn_hidden_size=16)
    model.learn(128)
    obs = model.get_env().reset()
    act, _ = model.predict(obs, deterministic=True)
    with torch.no_grad():
        for p in model.policy.aux_decoder.parameters():
            p.add_(1.0)   # the decoder takes no part in acting
    act2, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(act, act2)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip")
    for a, b in zip(model.policy.aux_decoder.parameters(), loaded.policy.aux_decoder.parameters()):
        assert torch.equal(a, b)
    assert loaded.policy.aux_kwargs["aux_loss"] == "obs_diff"


def _one_update(seed=0, max_grad_norm=0.5, log_share=None, **kw):
    """A GRSN policy after exactly one optimizer step (one epoch, one minibatch of 64 rows);
    ``log_share``: the running mean aux_clip="auto" starts from (None: the step's own). The
    aux_clip tests run under SB3's one clip over the whole gradient (``grad_clip="joint"``)
    unless ``grad_clip`` is given."""
    kw.setdefault("grad_clip", "joint")
    env = policies.make_env("CartPole-P-v0", 2, seed)
    model = RecurrentPPO(GRSNPolicy, env, seed=seed, n_steps=32, batch_size=64, n_epochs=1,
                         max_grad_norm=max_grad_norm,
                         policy_kwargs=dict(grsn_hidden_size=16, **kw))
    if log_share is not None:
        model.policy.optimizer.param_groups[0]["aux_log_share"] = log_share
    model.learn(64)
    return model


def _grads_seen_by_adam(model, params):
    """Adam's first moment after one step, divided by (1 - beta1): that step's gradient."""
    opt = model.policy.optimizer
    beta1 = opt.param_groups[0]["betas"][0]
    return [opt.state[p]["exp_avg"] / (1 - beta1) for p in params]


def _stepped(model):
    """The policy's parameters the optimizer stepped (those with Adam state)."""
    return [p for p in model.policy.parameters() if p in model.policy.optimizer.state]


#: the parameters the auxiliary gradient reaches (the actor's core and the decoder)
_AUX_REACHED = ("lstm_actor.", "aux_decoder.")


def _aux_reached(model):
    return [p for n, p in model.policy.named_parameters() if n.startswith(_AUX_REACHED)]


def _heads_and_critic(model):
    """The parameters the auxiliary gradient does not reach."""
    return [p for n, p in model.policy.named_parameters() if not n.startswith(_AUX_REACHED)]


def _norm_of(tensors):
    return float(torch.sqrt(sum(t.pow(2).sum() for t in tensors)))


def test_aux_clip_sets_what_max_grad_norm_sees():
    """aux_clip="joint" (the default up to 0.9): the auxiliary gradient is clipped with
    RecurrentPPO's, so its norm sets the clip's scale for every parameter. "none" and
    "scaled": max_grad_norm clips RecurrentPPO's own gradient and the auxiliary gradient is
    added after the clip, so the heads and the critic get exactly the step of a run without an
    auxiliary loss; "scaled" multiplies it by the factor the clip applied to RecurrentPPO's
    gradient, "none" adds it as it is."""
    joint, none, scaled = (_one_update(aux_clip=c) for c in ("joint", "none", "scaled"))
    no_aux = _one_update(aux_coef=0.0)
    heads = _heads_and_critic
    for model in (none, scaled):
        for a, b in zip(_grads_seen_by_adam(model, heads(model)),
                        _grads_seen_by_adam(no_aux, heads(no_aux))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-10)
    shrunk = [float(a.abs().max() / b.abs().max()) for a, b in zip(
        _grads_seen_by_adam(joint, heads(joint)), _grads_seen_by_adam(no_aux, heads(no_aux)))
        if b.abs().max() > 0]
    # with the auxiliary gradient inside, the clip cuts them all down by one factor
    assert max(shrunk) < 0.99 and max(shrunk) - min(shrunk) < 1e-4
    max_norm = joint.max_grad_norm
    assert _norm_of(_grads_seen_by_adam(joint, _stepped(joint))) <= max_norm * (1 + 1e-4)
    # "none": the decoder's gradient is the loss's own, far above max_grad_norm
    decoder = lambda m: list(m.policy.aux_decoder.parameters())
    raw = _grads_seen_by_adam(none, decoder(none))
    assert _norm_of(raw) > 10 * max_norm
    # "scaled": the same gradient times the clip's factor on RecurrentPPO's own gradient (that
    # gradient as the backward pass left it: a run whose clip never acts)
    unclipped = _one_update(aux_coef=0.0, max_grad_norm=1e9)
    ppo_norm = _norm_of(_grads_seen_by_adam(unclipped, _stepped(unclipped)))
    factor = min(1.0, max_norm / ppo_norm)
    assert factor < 0.99
    for a, b in zip(_grads_seen_by_adam(scaled, decoder(scaled)), raw):
        torch.testing.assert_close(a, factor * b, rtol=1e-3, atol=1e-9)
    # the actor's core gets both: the clipped policy gradient plus the auxiliary one
    core = lambda m: list(m.policy.lstm_actor.parameters())
    assert any(not torch.allclose(a, b) for a, b in zip(_grads_seen_by_adam(none, core(none)),
                                                        _grads_seen_by_adam(no_aux, core(no_aux))))
    assert none.policy._aux_grads is None and not scaled.policy._unclipped_sq  # used once


def test_aux_clip_auto_is_joint_while_the_policy_gradient_dominates(tmp_path):
    """aux_clip="auto": while the running mean of J / B (the norm of RecurrentPPO's gradient
    plus the auxiliary one over RecurrentPPO's own) is below AUX_SHARE_SWITCH, every parameter
    gets the joint clip's step (here raw CartPole-P returns, whose critic gradient dominates, at
    the default weight: J / B about 1.1). From it on (weight 1000: J / B about 14; or a
    running mean already above the switch) only the parameters the auxiliary gradient reaches
    -- the actor's core and the decoder -- keep the joint clip's step; the heads and the critic
    get "scaled"'s, RecurrentPPO's own clip. The running mean is kept in the optimizer's
    state."""
    def same_step(a, b, part=_stepped):
        for x, y in zip(_grads_seen_by_adam(a, part(a)), _grads_seen_by_adam(b, part(b))):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-9)

    aux_part, rest = _aux_reached, _heads_and_critic
    auto, joint, scaled = (_one_update(aux_clip=c) for c in ("auto", "joint", "scaled"))
    unclipped = _one_update(aux_coef=0.0, max_grad_norm=1e9)
    assert joint.max_grad_norm < _norm_of(_grads_seen_by_adam(unclipped, _stepped(unclipped)))
    same_step(auto, joint)
    # the first step's share is the running mean: log(J / B), scaled's norm over joint's
    log_share = auto.policy.optimizer.param_groups[0]["aux_log_share"]
    assert log_share == pytest.approx(math.log(
        _norm_of(_grads_seen_by_adam(scaled, _stepped(scaled)))
        / _norm_of(_grads_seen_by_adam(joint, _stepped(joint)))), rel=1e-3)
    assert 0 < log_share < math.log(AUX_SHARE_SWITCH)
    with pytest.raises(AssertionError):
        same_step(auto, scaled, rest)  # the heads differ here
    # a running mean above the switch: the core and the decoder keep the joint clip's step,
    # the heads and the critic get RecurrentPPO's own clip (scaled's step)
    above = _one_update(aux_clip="auto", log_share=math.log(AUX_SHARE_SWITCH) + 1.0)
    same_step(above, joint, aux_part)
    same_step(above, scaled, rest)
    with pytest.raises(AssertionError):
        same_step(above, joint, rest)
    with pytest.raises(AssertionError):
        same_step(above, scaled, aux_part)
    # the auxiliary gradient dominating from the first step: the same split
    strong = {c: _one_update(aux_coef=1000.0, aux_clip=c) for c in ("auto", "scaled", "joint")}
    assert strong["auto"].policy.optimizer.param_groups[0]["aux_log_share"] > math.log(
        AUX_SHARE_SWITCH)
    same_step(strong["auto"], strong["joint"], aux_part)
    same_step(strong["auto"], strong["scaled"], rest)
    # saved and loaded with the optimizer's state, so training goes on from the same mean
    auto.save(tmp_path / "m")
    loaded = RecurrentPPO.load(tmp_path / "m")
    assert loaded.policy.optimizer.param_groups[0]["aux_log_share"] == log_share


def _critic_part(model):
    return model.policy._critic_parameters()


def _actor_part(model):
    ids = {id(p) for p in model.policy._critic_parameters()}
    return [p for p in model.policy.parameters() if id(p) not in ids]


def test_grad_clip_split_clips_the_critic_and_the_actor_each_by_its_own_norm():
    """grad_clip="split": the critic's gradient (its core, its MLP branch, the value head) and
    the actor's are each clipped to max_grad_norm by their own norm, so a change of the
    critic's gradient no longer changes the actor's step (RecurrentPPO's one clip over the
    whole gradient, "joint", scales both by one factor)."""
    unclipped = _one_update(aux_coef=0.0, max_grad_norm=1e9)
    split = _one_update(aux_coef=0.0, grad_clip="split")
    joint = _one_update(aux_coef=0.0)
    max_norm = split.max_grad_norm
    names = {id(p): n for n, p in split.policy.named_parameters()}
    assert {names[id(p)].split(".")[0] for p in _critic_part(split)} == {
        "value_net", "mlp_extractor", "lstm_critic"}
    raw_critic = _grads_seen_by_adam(unclipped, _critic_part(unclipped))
    raw_actor = _grads_seen_by_adam(unclipped, _actor_part(unclipped))
    # raw CartPole-P returns: the critic's gradient is far above the bound, the actor's below
    assert _norm_of(raw_critic) > 10 * max_norm and _norm_of(raw_actor) < max_norm
    for part, raw in ((_critic_part, raw_critic), (_actor_part, raw_actor)):
        own = min(1.0, max_norm / _norm_of(raw))
        for a, b in zip(_grads_seen_by_adam(split, part(split)), raw):
            torch.testing.assert_close(a, own * b, rtol=1e-4, atol=1e-9)
    # the joint clip shrinks the actor's gradient by the critic's norm
    whole = _norm_of(raw_critic + raw_actor)
    for a, b in zip(_grads_seen_by_adam(joint, _actor_part(joint)), raw_actor):
        torch.testing.assert_close(a, max_norm / whole * b, rtol=1e-4, atol=1e-9)
    # with the auxiliary loss (aux_clip="auto"), the critic's step is the same as without it:
    # the auxiliary gradient joins the actor's part only
    with_aux = _one_update(grad_clip="split")
    for a, b in zip(_grads_seen_by_adam(with_aux, _critic_part(with_aux)),
                    _grads_seen_by_adam(split, _critic_part(split))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)
    with_aux_joint = _one_update()
    assert not all(torch.allclose(a, b, rtol=1e-3) for a, b in zip(
        _grads_seen_by_adam(with_aux_joint, _critic_part(with_aux_joint)),
        _grads_seen_by_adam(joint, _critic_part(joint))))
    assert not split.policy._unclipped_sq  # used once


def test_a_skipped_step_does_not_carry_the_auxiliary_gradient_over():
    """RecurrentPPO may stop an epoch (target_kl) after evaluate_actions without stepping: the
    next minibatch's evaluate_actions replaces the kept auxiliary gradient."""
    model = _one_update(aux_clip="scaled")
    pol = model.policy
    batch = next(model.rollout_buffer.get(32))
    acts = batch.actions.long().flatten()
    pol.evaluate_actions(batch.observations, acts, batch.lstm_states, batch.episode_starts)
    first = pol._aux_grads
    batch2 = next(model.rollout_buffer.get(16))
    pol.evaluate_actions(batch2.observations, batch2.actions.long().flatten(),
                         batch2.lstm_states, batch2.episode_starts)
    assert pol._aux_grads is not first and pol._aux_grads is not None


def test_shared_critic_core_is_the_actors_and_gets_the_value_gradient():
    model = _model(critic_core="shared", grsn_hidden_size=16)
    pol = model.policy
    assert pol.lstm_critic is pol.lstm_actor and pol.cores() == [pol.lstm_actor]
    batch = None
    model.learn(64)
    batch = next(model.rollout_buffer.get(None))
    values = pol.predict_values(batch.observations, batch.lstm_states.vf, batch.episode_starts)
    grads = torch.autograd.grad(values.sum(), list(pol.lstm_actor.parameters()),
                                allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="critic_core"):
        _model(critic_core="lstm")
    with pytest.raises(ValueError, match="own"):
        _model(critic_core="shared", shared_grsn=True, enable_critic_grsn=False)
    with pytest.raises(ValueError, match="aux_loss"):
        _model(aux_loss="next_obs")
    for bad in (-1.0, float("nan"), "3"):
        with pytest.raises(ValueError, match="aux_coef must be a finite number >= 0"):
            _model(aux_coef=bad)
    with pytest.raises(ValueError, match="aux_hidden"):
        _model(aux_hidden=0)


# ------------------------------------------------------------------ the cores' learning rate

def _train_beside_a_group_rate(make_opt, scale: float, lr: float, steps: int):
    """Trains two copies of a layer side by side, one with its weight in a parameter group at
    ``scale * lr``, the other with one group at ``lr`` and :class:`ScaledStep` on its weight,
    and checks that they stay equal. Returns the second copy's optimizer."""
    torch.manual_seed(0)
    ref, net = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    net.load_state_dict(ref.state_dict())
    ref_opt = make_opt([dict(params=[ref.weight], lr=scale * lr), dict(params=[ref.bias], lr=lr)])
    opt = make_opt([dict(params=list(net.parameters()), lr=lr)])
    ScaledStep([net.weight], scale).attach(opt)
    for _ in range(steps):
        x = torch.randn(8, 4)
        for model, o in ((ref, ref_opt), (net, opt)):
            o.zero_grad()
            (model(x) ** 2).sum().backward()
            o.step()
    torch.testing.assert_close(net.weight, ref.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(net.bias, ref.bias, atol=1e-6, rtol=1e-5)
    return opt


@pytest.mark.parametrize("make_opt", [
    lambda groups: torch.optim.Adam(groups, eps=1e-5),
    lambda groups: torch.optim.AdamW(groups, eps=1e-5, weight_decay=0.1),
    lambda groups: torch.optim.SGD(groups, momentum=0.9),
    lambda groups: torch.optim.RMSprop(groups, alpha=0.99, eps=1e-5),
])
def test_scaled_step_is_a_learning_rate_of_its_own(make_opt):
    opt = _train_beside_a_group_rate(make_opt, 4.0, 3e-3, 30)
    assert len(opt.param_groups) == 1  # a saved optimizer state loads whatever the scale


def test_scaled_step_scales_once_when_the_optimizer_calls_super_step():
    # PyTorch runs the step hooks at each level of a subclass's step that calls super().step(),
    # once Adam.step itself is hooked, i.e. once any plain Adam exists (as in a policy)
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])

    class ClippingAdam(torch.optim.Adam):
        def step(self, closure=None):
            torch.nn.utils.clip_grad_norm_([p for g in self.param_groups for p in g["params"]],
                                           0.1)
            return super().step(closure)

    _train_beside_a_group_rate(ClippingAdam, 3.0, 1e-3, 10)


def test_core_learning_rate_scales_the_step_of_the_cores_only():
    """One PPO update with one minibatch: the same rollout and gradient for both models, so with
    the algorithm at 2.5e-4 and the cores at 1e-3 the cores (actor, critic, and the observation
    embedding inside them) move 4 times as far as with one rate, every other parameter the
    same; at the algorithm's own rate the policy is the one-rate policy, bit for bit."""
    one = dict(n_steps=32, batch_size=64, n_epochs=1, verbose=0)
    params = {}
    for lr, core_lr in ((2.5e-4, None), (2.5e-4, 1e-3), (1e-3, None), (1e-3, 1e-3)):
        env = policies.make_env("CartPole-P-v0", 2, 0)
        model = RecurrentPPO(GRSNPolicy, env, seed=0, learning_rate=lr, **one, policy_kwargs=dict(
            grsn_hidden_size=16, core_learning_rate=core_lr))
        before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
        model.learn(64)
        params[lr, core_lr] = {n: (p.detach(), p.detach() - before[n])
                               for n, p in model.policy.named_parameters()}
    core = [n for n in params[2.5e-4, None] if n.startswith(("lstm_actor.", "lstm_critic."))]
    assert any("shortcut" in n for n in core) and any(n.startswith("lstm_critic.") for n in core)
    for name, (_, d1) in params[2.5e-4, None].items():
        factor = 4.0 if name in core else 1.0
        torch.testing.assert_close(params[2.5e-4, 1e-3][name][1], factor * d1, atol=1e-6,
                                   rtol=1e-4)
        assert torch.equal(params[1e-3, None][name][0], params[1e-3, 1e-3][name][0])
    assert all(params[2.5e-4, None][n][1].abs().max() > 0 for n in core)


def test_core_learning_rate_is_saved_and_checked(tmp_path):
    model = _model(grsn_hidden_size=16, core_learning_rate=2e-3)
    model.save(tmp_path / "m")
    loaded = RecurrentPPO.load(tmp_path / "m")
    assert loaded.policy.aux_kwargs["core_learning_rate"] == 2e-3
    for bad in (0, -1.0, float("nan"), float("inf"), "1e-3", True):
        with pytest.raises(ValueError, match="core_learning_rate must be a finite number > 0"):
            _model(core_learning_rate=bad)
    env = policies.make_env("CartPole-P-v0", 2, 0)
    with pytest.raises(ValueError, match="starts at -0.001.*core_learning_rate=None"):
        RecurrentPPO(GRSNPolicy, env, learning_rate=-1e-3, **SMALL)
    # RL Zoo's enjoy loads with learning rate 0: nothing to scale, the model loads and predicts
    loaded = RecurrentPPO.load(tmp_path / "m", custom_objects={
        "learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0})
    obs = np.zeros((1, 2), dtype=np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0],
                          model.predict(obs, deterministic=True)[0])


# ------------------------------------------------------------------ GRU baseline

def test_gru_sequences_with_resets_equal_single_steps():
    model = _model(GRUPolicy, lstm_hidden_size=8)
    core = model.policy.lstm_actor
    assert isinstance(core.gru, torch.nn.GRU)
    torch.manual_seed(1)
    x = torch.randn(10, 3, core.input_size)
    starts = torch.zeros(10, 3)
    starts[0, 2] = starts[4, 1] = starts[7, 0] = 1
    h0 = (torch.randn(1, 3, 8), torch.zeros(1, 3, 8))
    out, (h, c) = core(x, h0, starts)
    state, outs = h0, []
    for t in range(10):
        o, state = core(x[t:t + 1], state, starts[t:t + 1])
        outs.append(o)
    assert torch.allclose(out, torch.cat(outs), atol=1e-6)
    assert torch.allclose(h, state[0], atol=1e-6) and torch.count_nonzero(c) == 0


def test_gru_policy_trains_saves_and_loads(tmp_path):
    model = _model(GRUPolicy, lstm_hidden_size=8)
    model.learn(128)
    assert not any(isinstance(m, torch.nn.LSTM) for m in model.policy.modules())
    model.save(tmp_path / "gru.zip")
    loaded = RecurrentPPO.load(tmp_path / "gru.zip")
    assert type(loaded.policy) is GRUPolicy
    obs = model.get_env().reset()
    a1, s1 = model.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    assert np.array_equal(a1, a2) and np.array_equal(s1[0], s2[0])


def test_gru_critic_core_is_training_only_and_saved(tmp_path):
    """critic_core="gru": the critic's memory is a GRU in the spiking core's state slots, its
    latent [h, 0...] as wide as the actor's readout; the deployed actor is the default's."""
    from policies.callbacks import FiringRateCallback
    from policies.cores import PaddedGRUCore
    from policies.energy import estimate_energy

    model = _model(grsn_hidden_size=8, critic_core="gru")
    pol = model.policy
    assert isinstance(pol.lstm_critic, PaddedGRUCore) and pol.cores() == [pol.lstm_actor]
    assert pol.lstm_critic.hidden_size == 8 and pol.lstm_critic.output_dim == 16  # spikes + obs
    # values over a sequence with resets == one step at a time; the padding is zeros
    torch.manual_seed(0)
    x = torch.randn(9, 2, pol.lstm_critic.input_size)
    starts = torch.zeros(9, 2)
    starts[0] = starts[5, 1] = 1
    zeros = (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
    out, _ = pol.lstm_critic(x, zeros, starts)
    state, steps = zeros, []
    for t in range(9):
        o, state = pol.lstm_critic(x[t:t + 1], state, starts[t:t + 1])
        steps.append(o)
    torch.testing.assert_close(out, torch.cat(steps))
    assert torch.count_nonzero(out[..., 8:]) == 0 and torch.count_nonzero(out[..., :8]) > 0
    # it trains (the firing-rate callback logs the actor's core only), at the cores' rate
    before = [p.detach().clone() for p in pol.lstm_critic.parameters()]
    model.learn(128, callback=FiringRateCallback())
    assert all(not torch.equal(a, b) for a, b in zip(before, pol.lstm_critic.parameters()))
    # the deployed actor is the one a spiking critic would have: same counts, same actions
    own = _model(grsn_hidden_size=8)
    own.policy.load_state_dict({k: v for k, v in pol.state_dict().items()
                                if not k.startswith("lstm_critic.")}, strict=False)
    obs = np.random.default_rng(0).normal(size=(12, 2, 2)).astype(np.float32)
    a, b = estimate_energy(pol, obs), estimate_energy(own.policy, obs)
    assert a.agent.as_dict() == b.agent.as_dict() and a.critic_firing_rate is None
    assert a.agent_with_critic.macs > a.agent.macs
    assert np.array_equal(model.predict(obs[0], deterministic=True)[0],
                          own.predict(obs[0], deterministic=True)[0])
    model.save(tmp_path / "m")
    loaded = RecurrentPPO.load(tmp_path / "m")
    assert isinstance(loaded.policy.lstm_critic, PaddedGRUCore)
    for (n1, p1), (n2, p2) in zip(pol.state_dict().items(), loaded.policy.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    with pytest.raises(ValueError, match="critic core of its own"):
        _model(critic_core="gru", shared_grsn=True, enable_critic_grsn=False)
    with pytest.raises(ValueError, match="output_dim must be at least hidden_size"):
        PaddedGRUCore(2, 8, 4)


# ------------------------------------------------------------------ the instrument

def test_ridge_probe_recovers_a_linear_target_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    assert ridge_cv_r2(x, x @ np.array([1.0, -2, 0, 0, 3])) > 0.99
    assert ridge_cv_r2(x, rng.normal(size=400)) < 0.1
    with pytest.raises(ValueError, match="at least 8 samples"):
        ridge_cv_r2(x[:5], x[:5, 0])


@pytest.mark.parametrize("policy,kw", [(GRSNPolicy, dict(grsn_hidden_size=16,
                                                          aux_loss="obs_diff")),
                                       ("MlpLstmPolicy", dict(lstm_hidden_size=16))])
def test_instrument_logs_every_update_and_does_not_change_training(tmp_path, policy, kw):
    def train(callback):
        model = _model(policy, **kw)
        model.learn(3 * 64, callback=callback)
        return model
    cb = LearningSignalCallback(csv_path=str(tmp_path / "d.csv"), probe_every=1,
                                probe_target=lambda env: np.asarray(env.state)[[1, 3]])
    with_cb, without = train(cb), train(None)
    # equal up to float32 rounding: with OMP_NUM_THREADS=1 the instrument's own allocations can
    # move BLAS onto other kernels (differences up to about 4e-7 measured); a real change --
    # a random draw or a statistics update taken by the instrument -- moves them far more
    for a, b in zip(with_cb.policy.parameters(), without.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert len(cb.rows) == 3
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0].split(",") == FIELDS and len(lines) == 4
    # the critic's statistics are RecurrentPPO's own: the last update's explained variance is
    # the one SB3 computes from the rollout buffer it trained on
    from stable_baselines3.common.utils import explained_variance
    buf = with_cb.rollout_buffer
    assert cb.rows[-1]["explained_variance"] == pytest.approx(
        float(explained_variance(buf.values.flatten(), buf.returns.flatten())), abs=1e-6)
    for row in cb.rows:
        assert row["explained_variance"] <= 1 and row["value_loss"] > 0
        assert row["grad_core_actor"] > 0 and row["grad_core_critic"] > 0
        assert row["grad_total"] > 0 and 0 <= row["clipped_fraction"] < 1
        assert np.isfinite(row["probe_r2"])
        if policy is GRSNPolicy:
            assert row["grad_core_aux"] > 0
            assert 0 <= row["flip_rate"] <= 1 and 0 <= row["firing_rate"] <= 1
        else:
            assert row["grad_core_aux"] == 0 and np.isnan(row["flip_rate"])


def test_gru_energy_counts_three_gates_per_step():
    from policies.energy import collect_observations, estimate_energy

    model = _model(GRUPolicy, lstm_hidden_size=16)
    obs, starts = collect_observations(model, policies.make_env("CartPole-P-v0", 2, 1), 10)
    report = estimate_energy(model.policy, obs, starts)
    H, d = 16, 2
    assert report.core.macs == 3 * H * (d + H) + 3 * H        # gate products + cell updates
    assert report.core.acs == 0 and report.agent.macs > report.core.macs


def test_instrument_measures_the_gradient_the_clip_sees():
    """grad_total is the norm max_grad_norm clips: with aux_clip="joint" it includes the
    auxiliary loss's gradient, with "scaled" or "none" it does not (that gradient joins later)."""
    model = _model(GRSNPolicy, grsn_hidden_size=16, aux_clip="scaled")
    cb = LearningSignalCallback(probe_every=0)
    model.learn(64, callback=cb)
    pol = model.policy
    params = [p for p in pol.parameters() if p.requires_grad]

    def norm_of(include_aux):
        pol.set_training_mode(True)
        terms = cb._loss_terms(cb._batch)
        loss = sum(v for k, v in terms.items() if include_aux or k != "aux")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        pol.set_training_mode(False)
        return _norm_of([g for g in grads if g is not None])

    for mode, include_aux in (("scaled", False), ("auto", False), ("none", False),
                              ("joint", True)):
        pol.aux_kwargs["aux_clip"] = mode
        row = cb._gradients(cb._batch)
        assert row["grad_total"] == pytest.approx(norm_of(include_aux), rel=1e-4)
    assert norm_of(True) != pytest.approx(norm_of(False), rel=1e-2)
