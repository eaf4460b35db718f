"""Recurrent spiking policies for sb3-contrib's RecurrentPPO.

``RecurrentPPO(GRSNPolicy, env)`` instead of ``RecurrentPPO("MlpLstmPolicy", env)``; everything
else (learn, predict with state, save/load, evaluate_policy, VecNormalize, logging) is
sb3-contrib's own code, unchanged.

How they fit: RecurrentPPO sizes its state buffers from ``policy.lstm_actor.num_layers`` and
``.hidden_size`` and passes ``RNNStates(pi=(h, c), vf=(h, c))``. These policies keep the
attribute names ``lstm_actor`` / ``lstm_critic`` but hold a spiking memory core there
(:mod:`policies.cores`) whose state is two tensors per layer -- for GRSN the membrane ``v`` and
the gated current ``c`` -- packed into the ``(h, c)`` slots. ``_process_sequence`` is overridden
so a whole training sequence, episode starts included, goes through the core in one call (the
LSTM policy falls back to a per-step Python loop whenever a sequence contains an episode start).
The LSTMs built by the parent constructor are replaced before the optimizer is rebuilt, so no
LSTM parameter remains in the module or the optimizer.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Callable, Optional

import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import Schedule
from spikingjelly.activation_based import surrogate
from torch import nn

from grsn_sj.functional import ForgetBias, check_positive_int

from .central import central_critic_extractor, central_policy_kwargs
from .cores import GRSNCore, GRUCore, LIFCore, NoTAPCore, PaddedGRUCore, SpikingCore
from .obs_norm import ObservationNormalizer
from .value_head import SymExpValueHead

__all__ = ["SpikingRecurrentPolicy", "GRSNPolicy", "PaperGRSNPolicy", "LIFPolicy", "NoTAPPolicy", "GRUPolicy",
           "CnnGRSNPolicy", "MultiInputGRSNPolicy", "CnnLIFPolicy", "MultiInputLIFPolicy",
           "CnnNoTAPPolicy", "MultiInputNoTAPPolicy", "LSTMPolicy"]

_CRITIC_CORES = ("same", "shared", "gru")
_AUX_LOSSES = (None, "obs_diff")
_VALUE_HEADS = ("symexp", "linear")
_AUX_CLIPS = ("auto", "joint", "scaled", "none")
#: the modes that need RecurrentPPO's gradient norm from before its clip
_AUX_CLIPS_UNCLIPPED = ("auto", "scaled")
_GRAD_CLIPS = ("joint", "split")
#: ``aux_clip="auto"``: the decay per optimizer step of the running mean of log(J / B) ...
AUX_SHARE_DECAY = 0.99
#: ... and the level of J / B from which the auxiliary gradient counts as dominating the norm
AUX_SHARE_SWITCH = 2.0
#: GRSNPolicy keeps this in its state dict (``defaults_version``): the version whose defaults
#: it was built with, 11 for 0.11 (the first to record it: tau=1.0)
DEFAULTS_VERSION = 11
_DEFAULTS_KEY = "defaults_version"
_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
_LSTM_ALIASES = {"lstm_hidden_size": "grsn_hidden_size", "n_lstm_layers": "n_grsn_layers",
                 "shared_lstm": "shared_grsn", "enable_critic_lstm": "enable_critic_grsn"}


class SpikingRecurrentPolicy(RecurrentActorCriticPolicy):
    """Base class: a RecurrentActorCriticPolicy whose memory is a spiking core.

    Subclasses override only :meth:`_make_core`, so every spiking policy (GRSN and the LIF and
    no-TAP baselines) is the same agent around a different core. Its defaults differ from
    ``MlpLstmPolicy``'s, because with them a spiking memory learns what the LSTM learns on
    position-only POMDPs (docs/RESULTS.md, "The learning gap" and the version sections):

    - ``readout="spikes+obs"``: the heads see the spikes and an embedding of the current
      observation (the paper's shortcut), so the spikes need to carry only what the observation
      does not; ``shortcut_dim=None``, i.e. the embedding as wide as the spiking layer: a
      wider one (64 beside 32 neurons) crowded the spikes out of the heads and lost a 15-step
      cue recall on 2 seeds of 5, a narrower one (32 beside 64) gave blunter actions
      (docs/RESULTS.md, "Version 0.3");
    - ``aux_loss="obs_diff"`` with ``aux_coef=30.0``: the training-only self-predictive loss
      described below, which makes the spikes carry the previous observation. Weight 30 (0.8;
      3 before, 1 in 0.2). The decoder's gradient reaches the core beside the policy
      gradient; with weight 30 the policy gradient is under 1% of it (3: 6-9%), so the core is
      trained almost only as a predictor of the input's change, which the heads learn to read.
      Over six seeds CartPole-P 484.6 +- 13.4 (weight 3: 321.9 +- 131.6; 10: 447.3; 100:
      447.6) and Pendulum-P -240.9 +- 65.9 (3: -358.4 +- 167.8; 10 and 100 lower on three
      seeds), a held-out velocity-masked Acrobot learned on 7 seeds of 10 as with 3 (under
      the suite's settings; under RL Zoo's Acrobot-v1 settings, learning rate 3e-4, on 3 of
      20 against the LSTM's 8 of 15), the 15-step cue recall kept (docs/RESULTS.md,
      "Version 0.8");
    - ``core_learning_rate=1e-3``: the spiking cores (and the observation embedding inside
      them) start at a learning rate of 1e-3 whatever the algorithm's, and follow its schedule
      in proportion (0.9; the algorithm's rate before). Trained almost only by the auxiliary
      loss, the cores were the part short of learning rate at RecurrentPPO's default 3e-4: on
      a held-out velocity-masked Acrobot under RL Zoo's Acrobot-v1 settings, with each part
      at about 1e-3 in turn, the cores learned it on 6 seeds of 20, the actor's heads on 2 of
      10, the critic's on 0 of 6 (all at 3e-4: 3 of 20; the whole policy at 1e-3: 8 of 20);
      this default on 5 of 20, within the spread of 0.8's 3, and below the LSTM. A faster
      core is not better: at 3e-3 two Pendulum-P seeds of six fell. The project's suite
      runs at 1e-3, where this default trains exactly as 0.8 (docs/RESULTS.md, "Version 0.9");
    - ``normalize_obs=True``: the observations are standardised inside the policy (VecNormalize's
      rule, clipped to 10, with statistics that change only between PPO updates). A spiking
      neuron resolves input changes only down to a scale set by its threshold: on raw
      CartPole-P the pole angle stays within about +-0.1 rad and its changes were below what the
      spikes resolved; with standardised inputs GRSN's return there goes from 176 to 426 (6
      seeds), and CartPole-V, Pendulum-P and LunarLander-P/-V gain too (docs/RESULTS.md,
      "Version 0.4"). With a ``VecNormalize`` env already, the policy's statistics stay near
      zero mean and unit variance, and ``normalize_obs=False`` is the leaner choice.
    - ``net_arch=dict(pi=[64, 32], vf=[64, 64])``: SB3's two-layer heads with the actor's
      second layer 32 wide instead of 64. Most of the deployed actor's energy is its dense head,
      not the spiking core (SB3's second 64x64 layer alone was 18.8 of 31.3 nJ per decision on
      the 15-step cue recall); with 32 the whole actor costs 0.24-0.43x the LSTM's on the POMDP
      suite and spread-PO. On a held-out velocity-masked Acrobot it learned as often as SB3's
      heads (7 seeds of 10 each, mean -198.7 against -190.9); on CartPole-P its six-seed mean
      was lower (321.9 against 432.8, both above the LSTM's 252.3) and on CartPole-V and
      LunarLander-P higher (docs/RESULTS.md, "Version 0.7"). One hidden layer (``pi=[64]``)
      lost the held-out task on 5 seeds of 6. The critic, training-only, keeps ``[64, 64]``.
      ``net_arch=dict(pi=[], vf=[64, 64])`` is the leanest option measured (0.03-0.06x the
      LSTM's energy; the held-out task learned on fewer seeds, at lower returns).
    - ``grad_clip="split"`` (0.11): RecurrentPPO's ``max_grad_norm`` clips the critic's
      gradient and the actor's each by its own norm instead of both by their joint norm, so
      the critic's gradient, 10-100 times the actor's with raw rewards, no longer sets the
      actor's step. With it (and GRSN's ``tau=1.0``) raw Pendulum-P went from -332.0 +- 115.5
      to -247.4 +- 59.2 over twelve seeds (worst -476.9 to -350.8) and raw CartPole-P from
      446.9 to 493.9 (docs/RESULTS.md, "Version 0.11").

    ``readout="spikes", aux_loss=None, normalize_obs=False`` gives the earlier, purely spiking
    policy. Arguments beyond the parent's
    (:class:`sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy`):

    :param grsn_hidden_size: neurons per spiking layer (``lstm_hidden_size`` is accepted as an
        alias so ``policy_kwargs`` written for ``MlpLstmPolicy`` keep working).
    :param n_grsn_layers: stacked spiking layers (alias ``n_lstm_layers``).
    :param shared_grsn: actor and critic share one core (the critic does not backpropagate into
        it) (alias ``shared_lstm``).
    :param enable_critic_grsn: the critic has its own core; with both False the critic is
        feed-forward (alias ``enable_critic_lstm``).
    :param readout: ``"spikes"`` or ``"spikes+obs"`` (spikes concatenated with a ``tanh``
        embedding of the current observation, the paper's shortcut); GRSNPolicy also takes
        ``"spikes+membrane"`` (spikes and the membrane before reset: a non-spiking readout,
        not in the paper, whose heads cost MACs).
    :param shortcut_dim: size of that embedding; ``None``: the core's hidden size.
    :param input_bias: added to the initial bias of the neurons' input projection. Default 1.0, a
        departure from PyTorch's default init (which the paper does not change): with it, the
        steady-state membrane ``relu(a_i)`` of a GRSN (or the input of a LIF) is about the
        threshold for observations of order 0.1-1, so neurons fire at initialisation; with 0 no
        neuron fires on CartPole-P and the readout starts as a constant zero.
    :param tau, v_threshold, v_reset, surrogate_function, detach_reset: neuron options
        (see :class:`grsn_sj.GRSNNode`).
    :param aux_loss: ``None`` or ``"obs_diff"``: a training-only self-predictive loss. A small
        decoder (``Linear(readout, aux_hidden) -> ReLU -> Linear(aux_hidden, features)``) reads
        the actor core's readout at step ``t`` and regresses the change of the core's input,
        ``x_t - x_{t-1}``, standardised per dimension over the minibatch (steps without a
        previous step in the same episode, and RecurrentPPO's padding, are left out). To
        predict it the readout must carry what the current input does not hold -- the previous
        input, i.e. the hidden velocity on a position-only POMDP -- so the loss gives the
        spiking memory a direct learning signal that the policy gradient, which reaches the core
        only through the heads, does not. Its gradient joins RecurrentPPO's optimizer step (for
        the gradient clip see ``aux_clip``); RecurrentPPO itself is unchanged.
        The decoder is not used by ``predict`` and not counted in the energy estimate; it is
        saved and loaded with the model. ``last_aux_loss`` holds the last minibatch's value.
    :param aux_coef: weight of that loss against the PPO loss.
    :param aux_clip: how the auxiliary gradient meets RecurrentPPO's ``max_grad_norm`` clip.
        With ``B`` the norm of RecurrentPPO's own gradient as the backward pass leaves it, ``f``
        the factor its clip applies to it (``min(1, max_grad_norm / B)``) and ``J`` the norm of
        that gradient plus the auxiliary one:

        - ``"auto"`` (the default since 0.10): the auxiliary gradient joins after the clip.
          The parameters it reaches (the actor's core, the observation embedding inside it,
          and the decoder) get both gradients times ``f * B / J``, the joint clip's factor
          wherever RecurrentPPO's gradient is clipped: their step is normalised by the norm of
          the whole gradient, as up to 0.9. The heads and the critic get the same factor while
          RecurrentPPO's gradient dominates the norm -- the running mean of ``J / B`` over the
          optimizer's steps below ``AUX_SHARE_SWITCH`` (2; a geometric mean with decay
          ``AUX_SHARE_DECAY``, 0.99, kept in the optimizer's first parameter group as
          ``"aux_log_share"`` and so saved and loaded with the model) -- and RecurrentPPO's own
          clip factor ``f`` from then on, so the auxiliary gradient's norm no longer shrinks
          their steps. With raw rewards the critic's gradient dominates (the running mean
          stayed near 1.0-1.6 on the suite's tasks, the joint clip's step; a few runs passed 2
          late in training, up to 3.1); under ``VecNormalize`` rewards (RL Zoo's
          ``normalize: true``) and on sparse-reward tasks such as the cue recall the auxiliary
          gradient (weight 30) is 4-130 times RecurrentPPO's, and the joint clip cut the heads'
          and the critic's steps by that much, down to the level of Adam's ``eps``.
        - ``"joint"`` (the default up to 0.9): the auxiliary gradient is part of the gradient
          that is clipped (factor ``min(1, max_grad_norm / J)``) for every parameter.
        - ``"scaled"``: the auxiliary gradient times ``f``, added after the clip: every
          parameter gets RecurrentPPO's own clip factor, whichever gradient dominates (0.9's
          ``"auto"`` once the auxiliary gradient dominated).
        - ``"none"``: the auxiliary gradient added after the clip as it is.

        Measured in docs/RESULTS.md, "Version 0.10" (twelve seeds unless said): under
        ``VecNormalize`` rewards ``"auto"`` learns Pendulum-P as the LSTM does (-181.5 +- 24.5,
        the LSTM -195.8, ``"joint"`` -269.0), and is within ``"joint"``'s spread on CartPole-P
        (431.2 against 443.8; the LSTM 500.0) and issue 7's cue recall (36 seeds of 40 against
        37), and above it on CartPole-V (470.6 against 410.8, six seeds); with raw rewards its
        step is ``"joint"``'s up to rounding (but for late steps of a few runs). ``"scaled"``
        failed raw Pendulum-P seeds that ``"joint"`` and ``"auto"`` do not.
        Every mode but ``"joint"`` works through step hooks on the optimizer the constructor
        builds (like ``core_learning_rate``): an optimizer put in ``policy.optimizer`` later
        gets the auxiliary gradient from none of them. No effect without an auxiliary loss.
    :param grad_clip: how RecurrentPPO's ``max_grad_norm`` clip meets the two halves of the
        policy. ``"split"`` (the default since 0.11): the critic's gradient (its core, its
        branch of the MLP, the value head) and the actor's (its core, heads, the decoder and
        the auxiliary gradient, joined as ``aux_clip`` says) are each clipped to
        ``max_grad_norm`` by their own norm, as if each half had its own clip. ``"joint"``
        (SB3's rule, the default up to 0.10): one clip over the whole gradient, so the actor's
        step is scaled by the critic's gradient norm. With raw rewards the critic's gradient
        is 10-100 times the actor's and moves from update to update, and each change of it
        changed the actor's step through the clip: on a raw Pendulum-P seed that failed with
        ``"joint"`` (and ``tau=1``) the critic's gradient norm fell fourfold in the last
        update and that update's approx-KL was 3.4 against 0.1 before. The split is the
        policy's own (through a step hook on the optimizer the constructor builds, like
        ``core_learning_rate``); RecurrentPPO is unchanged. Measured in docs/RESULTS.md,
        "Version 0.11".
    :param aux_hidden: width of the decoder's hidden layer.
    :param critic_core: the critic's memory when it has its own (``enable_critic_grsn``):
        ``"same"`` (a second core of the actor's kind), ``"shared"`` (the actor's core, run a
        second time for the critic with its own carried state, so the value loss also trains
        the actor's memory) or ``"gru"`` (a non-spiking GRU of the same hidden size,
        :class:`policies.cores.PaddedGRUCore`, its latent zero-padded to the readout's width;
        trained at ``core_learning_rate`` like the spiking cores). The deployed actor, and so its
        energy, is the same for all three (the critic is training-only). ``"gru"`` is for
        settings with few PPO updates at a low learning rate: on a held-out velocity-masked
        Acrobot under RL Zoo's Acrobot-v1 settings (20 updates at 3e-4) it learned on 20 seeds
        of 40 against the default's 13 (the LSTM 11 of 20; normalised to the LSTM 0.88
        deterministic and 0.86 sampled, the default 0.66 / 0.56), but with the suite's settings
        it lost CartPole-P (320.0 ± 117.2 against 484.6 over six seeds), two Pendulum-P seeds
        of three and that Acrobot (1 seed of 10 against 7), so it is not the default
        (docs/RESULTS.md, "Giving the critic the velocity"). Likely not for long-memory tasks:
        on the cue recall with a 15-step gap (``CueRecall-v0``, ``gap=15``), where the value
        itself depends on a cue seen 15 steps ago, it returned 1.0 / 0.2 / -0.5 on seeds 0-2
        against the default's 1.0 on each (the default recalls on 16 seeds of 20; three seeds
        are a warning, not a verdict; docs/RESULTS.md, "The suite under RL Zoo's
        normalisation").
    :param value_head: ``"linear"`` (SB3's ``value_net``) or ``"symexp"``
        (:class:`policies.value_head.SymExpValueHead`: the same ``Linear`` through
        ``symexp(y) = sign(y) (exp|y| - 1)``, so the critic's ``tanh`` MLP needs only
        ``log(1 + |V|)`` of range; RecurrentPPO's value loss is unchanged). For
        ``critic_core="gru"`` with rewards that are not normalised: there the GRU critic's
        ``tanh`` MLP saturates and the value is one constant (explained variance 0 for the whole
        run on CartPole-P, as for sb3-contrib's LSTM critic), and with ``"symexp"`` it follows
        the returns (CartPole-P over six seeds 468.2 ± 42.8 against 320.0 ± 117.2). Not a
        default: with the spiking critic it lost Pendulum-P (-720.7 over three seeds against
        -240.9 over six) and some CartPole-P (441.9), and the GRU critic with it still loses
        Pendulum-P (-423.5 ± 187.1 over six seeds) (docs/RESULTS.md, "What the critics
        predict"). With ``VecNormalize`` rewards the two heads are close (``symexp(y) ~ y``
        near 0).
    :param centralised_critic: a training-only critic that also reads a global state (MAPPO
        style, :mod:`policies.central`): observations must be a ``Dict`` with keys ``"obs"``
        and ``"state"`` (wrap a :class:`policies.PettingZooVecEnv` in
        :class:`policies.marl.VecCentralState`); the actor and the auxiliary loss read
        ``"obs"`` only, the critic core ``"obs"`` and ``"state"``. Needs a critic core of its
        own (``critic_core="same"``).
    :param normalize_obs: standardise the observations inside the policy
        (:class:`policies.obs_norm.ObservationNormalizer`): VecNormalize's rule (running mean
        and variance, clipped to ``clip_obs``), but the statistics change only between PPO
        updates, so each update sees the inputs its rollout saw. Non-image ``Box`` entries only;
        the first rollout passes unchanged. The statistics are saved with the model and used by
        ``predict``.
    :param core_learning_rate: the cores' learning rate (the actor's core and the critic's,
        each with its observation embedding) at the start of training; it follows the
        algorithm's schedule in proportion (the cores' step is the optimizer's step times
        ``core_learning_rate / learning_rate(start)``, :class:`ScaledStep`; exact for SGD, Adam,
        AdamW and RMSprop). ``None``: the algorithm's learning rate, like the rest of the policy
        (up to 0.8). The scaling is attached to the optimizer the constructor builds; an
        optimizer put in ``policy.optimizer`` later runs at its own rates. An algorithm whose
        rate starts at 0 (RL Zoo's ``enjoy`` loads models that way; a warm-up from 0) leaves
        the cores at its rate: there is no start to scale from.
    :param clip_obs: the clip of the normalised observations, in standard deviations
        (VecNormalize's default 10).
    :param obs_scale: the standard deviation of the normalised observations (VecNormalize: 1).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: Optional[list[int] | dict[str, list[int]]] = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: Optional[dict[str, Any]] = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: Optional[dict[str, Any]] = None,
        grsn_hidden_size: Optional[int] = None,
        n_grsn_layers: Optional[int] = None,
        shared_grsn: Optional[bool] = None,
        enable_critic_grsn: Optional[bool] = None,
        readout: str = "spikes+obs",
        shortcut_dim: Optional[int] = None,
        input_bias: float = 1.0,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = None,
        surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(),
        detach_reset: bool = False,
        aux_loss: Optional[str] = "obs_diff",
        aux_coef: float = 30.0,
        aux_hidden: int = 64,
        critic_core: str = "same",
        centralised_critic: bool = False,
        normalize_obs: bool = True,
        clip_obs: float = 10.0,
        obs_scale: float = 1.0,
        core_learning_rate: Optional[float] = 1e-3,
        value_head: str = "linear",
        aux_clip: str = "auto",
        grad_clip: str = "split",
        **lstm_style_kwargs: Any,
    ):
        central = central_policy_kwargs(type(self).__name__, observation_space, dict(
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            share_features_extractor=share_features_extractor,
            shared_grsn=shared_grsn, **lstm_style_kwargs), centralised_critic)
        features_extractor_class = central["features_extractor_class"]
        features_extractor_kwargs = central["features_extractor_kwargs"]
        share_features_extractor = central["share_features_extractor"]
        if centralised_critic:
            if critic_core == "shared":
                raise ValueError(f"{type(self).__name__}: critic_core='shared' runs the actor's "
                                 "core for the critic, which cannot read the state: use "
                                 "critic_core='same' with centralised_critic=True")
        _check_spaces(type(self).__name__, observation_space, action_space,
                      features_extractor_class)
        opts = _resolve_aliases(type(self).__name__, lstm_style_kwargs, {
            "grsn_hidden_size": grsn_hidden_size, "n_grsn_layers": n_grsn_layers,
            "shared_grsn": shared_grsn, "enable_critic_grsn": enable_critic_grsn})
        hidden = opts["grsn_hidden_size"] if opts["grsn_hidden_size"] is not None else 64
        layers = opts["n_grsn_layers"] if opts["n_grsn_layers"] is not None else 1
        shared = bool(opts["shared_grsn"]) if opts["shared_grsn"] is not None else False
        critic = (bool(opts["enable_critic_grsn"]) if opts["enable_critic_grsn"] is not None
                  else not shared)
        if shortcut_dim is None:  # as wide as the spiking layer
            shortcut_dim = hidden
        if shared and critic:
            raise ValueError("choose shared_grsn=True (actor and critic share one core) or "
                             "enable_critic_grsn=True (a separate critic core), not both")
        if critic_core not in _CRITIC_CORES:
            raise ValueError(f"{type(self).__name__}: critic_core must be one of "
                             f"{_CRITIC_CORES}, got {critic_core!r}")
        if critic_core != "same" and not critic:
            raise ValueError(f"critic_core={critic_core!r} needs a critic core of its own "
                             "(enable_critic_grsn=True, shared_grsn=False)")
        if aux_loss not in _AUX_LOSSES:
            raise ValueError(f"{type(self).__name__}: aux_loss must be one of {_AUX_LOSSES}, "
                             f"got {aux_loss!r}")
        if not _finite_real(aux_coef) or aux_coef < 0:
            raise ValueError(f"{type(self).__name__}: aux_coef must be a finite number >= 0 "
                             f"(0 trains the decoder's loss with no weight), got {aux_coef!r}")
        check_positive_int(aux_hidden, "aux_hidden")
        if value_head not in _VALUE_HEADS:
            raise ValueError(f"{type(self).__name__}: value_head must be one of {_VALUE_HEADS}, "
                             f"got {value_head!r}")
        if aux_clip not in _AUX_CLIPS:
            raise ValueError(f"{type(self).__name__}: aux_clip must be one of {_AUX_CLIPS}, got "
                             f"{aux_clip!r}")
        if grad_clip not in _GRAD_CLIPS:
            raise ValueError(f"{type(self).__name__}: grad_clip must be one of {_GRAD_CLIPS}, "
                             f"got {grad_clip!r}")
        core_scale = _core_step_scale(type(self).__name__, core_learning_rate, lr_schedule)
        if not isinstance(normalize_obs, bool):
            raise TypeError(f"{type(self).__name__}: normalize_obs must be True or False, got "
                            f"{normalize_obs!r}")
        if net_arch is None:  # a narrower second actor layer (class docstring); a copy per policy
            net_arch = dict(pi=[64, 32], vf=[64, 64])
        # built (and clip_obs checked) before the parent constructor, like the core options
        obs_normalizer = (ObservationNormalizer(observation_space, clip_obs, scale=obs_scale)
                          if normalize_obs else None)
        self.core_kwargs = dict(readout=readout, shortcut_dim=shortcut_dim,
                                input_bias=input_bias, tau=tau,
                                v_threshold=v_threshold, v_reset=v_reset,
                                surrogate_function=surrogate_function, detach_reset=detach_reset)
        # validate the core options before the (heavier) parent constructor runs
        probe = self._make_core(1, hidden, layers)
        self._latent_dim = probe.output_dim
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch, activation_fn, ortho_init,
            use_sde, log_std_init, full_std, use_expln, squash_output, features_extractor_class,
            features_extractor_kwargs, share_features_extractor, normalize_images,
            optimizer_class, optimizer_kwargs, lstm_hidden_size=hidden, n_lstm_layers=layers,
            shared_lstm=shared, enable_critic_lstm=critic,
        )
        # replace the parent's LSTMs (and a feed-forward critic sized for them)
        vf_dim = central_critic_extractor(self) if centralised_critic else self.features_dim
        self.lstm_actor = self._make_core(self.features_dim, hidden, layers)
        if self.lstm_critic is not None and critic_core == "same":
            self.lstm_critic = self._make_core(vf_dim, hidden, layers)
        elif self.lstm_critic is not None and critic_core == "shared":
            # one core, run for the actor and for the critic (each with its own carried
            # state): the value loss backpropagates into the actor's memory
            self.lstm_critic = self.lstm_actor
        elif self.lstm_critic is not None and critic_core == "gru":
            # a training-only GRU whose state takes the spiking core's slots, its latent
            # zero-padded to the readout's width so the value head keeps the actor's input width
            self.lstm_critic = PaddedGRUCore(vf_dim, hidden, self._latent_dim, layers)
        self.aux_kwargs = dict(aux_loss=aux_loss, aux_coef=aux_coef, aux_hidden=aux_hidden,
                               critic_core=critic_core, centralised_critic=centralised_critic,
                               normalize_obs=normalize_obs, clip_obs=clip_obs,
                               obs_scale=obs_scale,
                               core_learning_rate=core_learning_rate, value_head=value_head,
                               aux_clip=aux_clip, grad_clip=grad_clip)
        self.obs_normalizer = obs_normalizer
        self.aux_decoder = (nn.Sequential(nn.Linear(self._latent_dim, aux_hidden), nn.ReLU(),
                                          nn.Linear(aux_hidden, self.features_dim))
                            if aux_loss == "obs_diff" else None)
        self._aux_stash: Optional[list] = None
        self.last_aux_loss = float("nan")
        #: False: evaluate_actions leaves the auxiliary loss out of the returned graph and keeps
        #: it in ``last_aux_tensor`` instead (used by policies.diagnostics to measure it apart)
        self.aux_inject = True
        self.last_aux_tensor: Optional[th.Tensor] = None
        if self.critic is not None:
            self.critic = nn.Linear(vf_dim, self._latent_dim)
        if value_head == "symexp":  # the parent's initialised weights, through symexp
            head = SymExpValueHead(self.value_net.in_features, self.value_net.out_features)
            head.load_state_dict(self.value_net.state_dict())
            self.value_net = head
        self.to(self.device)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)
        if core_scale != 1.0:
            core_params = {id(p): p for core in (self.lstm_actor, self.lstm_critic)
                           if core is not None for p in core.parameters()}
            ScaledStep(list(core_params.values()), core_scale).attach(self.optimizer)
        #: the auxiliary loss's gradient of the last evaluate_actions, added to the parameters'
        #: gradients after the algorithm's clip (every ``aux_clip`` but "joint")
        self._aux_grads: Optional[tuple] = None
        #: squared norms of the parameters' gradients as the backward pass left them, before
        #: the algorithm's clip (``_AUX_CLIPS_UNCLIPPED``)
        self._unclipped_sq: dict[int, float] = {}
        aux_after = self.aux_decoder is not None and aux_clip != "joint"
        self._aux_params = (list(self.lstm_actor.parameters())
                            + list(self.aux_decoder.parameters()) if aux_after else [])
        #: ids of the parameters only the critic's loss reaches (``grad_clip="split"``)
        self._critic_ids = {id(p) for p in self._critic_parameters()}
        #: the rest, in ``parameters()`` order: the actor's half of ``grad_clip="split"``
        self._actor_params = [p for p in self.parameters() if id(p) not in self._critic_ids]
        if aux_after or grad_clip == "split":
            self.optimizer.register_step_pre_hook(self._before_step)
            if grad_clip == "split" or (aux_after and aux_clip in _AUX_CLIPS_UNCLIPPED):
                for param in self.parameters():
                    if param.requires_grad:
                        param.register_post_accumulate_grad_hook(self._record_unclipped)

    # ------------------------------------------------------------------ what subclasses change
    @abstractmethod
    def _make_core(self, input_size: int, hidden_size: int, num_layers: int) -> SpikingCore:
        """The memory core placed in ``lstm_actor`` (and ``lstm_critic``)."""

    # ------------------------------------------------------------------ overrides
    def _build_mlp_extractor(self) -> None:
        # the latent fed to the heads is the core's readout (spikes [+ shortcut])
        self.lstm_output_dim = self._latent_dim
        super()._build_mlp_extractor()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("lstm_hidden_size", "n_lstm_layers", "shared_lstm", "enable_critic_lstm",
                    "lstm_kwargs"):
            data.pop(key, None)
        data.update(grsn_hidden_size=self.lstm_actor.hidden_size,
                    n_grsn_layers=self.lstm_actor.num_layers, shared_grsn=self.shared_lstm,
                    enable_critic_grsn=self.enable_critic_lstm, **self.core_kwargs,
                    **self.aux_kwargs)
        return data

    # Observation normalisation: forward is RecurrentPPO's rollout pass, evaluate_actions its
    # update, get_distribution / predict_values serve predict (and the terminal bootstrap).
    def forward(self, obs, lstm_states, episode_starts, deterministic=False):
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.rollout(obs)
        return super().forward(obs, lstm_states, episode_starts, deterministic)

    def get_distribution(self, obs, lstm_states, episode_starts):
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize(obs)
        return super().get_distribution(obs, lstm_states, episode_starts)

    def predict_values(self, obs, lstm_states, episode_starts):
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize(obs)
        return super().predict_values(obs, lstm_states, episode_starts)

    def evaluate_actions(self, obs, actions, lstm_states, episode_starts):
        if self.aux_decoder is not None:
            # RecurrentPPO pads short sequences with all-zero observations; told apart on the
            # raw observations (normalisation moves the zeros)
            padding = _all_zero_rows(obs)
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.update(obs)
        if self.aux_decoder is None:
            return super().evaluate_actions(obs, actions, lstm_states, episode_starts)
        self._aux_stash = []
        try:
            values, log_prob, entropy = super().evaluate_actions(obs, actions, lstm_states,
                                                                 episode_starts)
            features, latent, starts = self._aux_stash[0]
        finally:
            self._aux_stash = None
        aux = _obs_diff_loss(self.aux_decoder, features, latent, starts,
                             _sequence_major(padding, starts.shape[1]))
        self.last_aux_loss = float(aux.detach())
        if not self.aux_inject:
            self.last_aux_tensor = aux
            return values, log_prob, entropy
        self.last_aux_tensor = None
        coef = float(self.aux_kwargs["aux_coef"])
        if self.aux_kwargs["aux_clip"] == "joint":
            return values, _InjectGrad.apply(log_prob, aux, coef), entropy
        # its own backward pass now (the graph is kept for the algorithm's); the gradient joins
        # the algorithm's after max_grad_norm's clip, just before the step (_before_step)
        self._aux_grads = (th.autograd.grad(aux * coef, self._aux_params, retain_graph=True,
                                            allow_unused=True)
                           if aux.requires_grad else None)
        return values, log_prob, entropy

    def _record_unclipped(self, param: nn.Parameter) -> None:
        self._unclipped_sq[id(param)] = float(param.grad.pow(2).sum())

    def _critic_parameters(self) -> list[nn.Parameter]:
        """The parameters that only the critic's loss reaches: the value head, the critic's
        branch of the MLP, and the critic's own core or feed-forward layer (not the actor's
        core when the critic runs it, ``critic_core="shared"``)."""
        modules = [self.value_net, self.mlp_extractor.value_net]
        if self.critic is not None:
            modules.append(self.critic)
        if self.lstm_critic is not None and self.lstm_critic is not self.lstm_actor:
            modules.append(self.lstm_critic)
        if not self.share_features_extractor:
            modules.append(self.vf_features_extractor)
        return list({id(p): p for m in modules for p in m.parameters()}.values())

    def _before_step(self, optimizer, args, kwargs) -> None:
        """Before the algorithm's optimizer steps (after its gradient clip): ``grad_clip``'s
        split clip, then the auxiliary gradient (every ``aux_clip`` but "joint")."""
        unclipped, self._unclipped_sq = self._unclipped_sq, {}
        scope = list(self.parameters())
        if self.aux_kwargs["grad_clip"] == "split" and unclipped:
            self._split_clip(unclipped)
            scope = self._actor_params
            unclipped = {k: v for k, v in unclipped.items() if k not in self._critic_ids}
        self._add_aux_grads(optimizer, unclipped, scope)

    def _split_clip(self, unclipped: dict[int, float]) -> None:
        """``grad_clip="split"``: undo the algorithm's clip and clip the critic's gradient
        and the rest (the actor's) each by its own norm, to the same bound. The bound is the
        clipped norm where the algorithm's clip acted (its ``max_grad_norm``); where it did not,
        no part is above it."""
        params = [q for q in self.parameters() if q.grad is not None]
        before = math.sqrt(sum(unclipped.get(id(q), 0.0) for q in params))
        if before == 0:
            return
        now = math.sqrt(sum(float(q.grad.pow(2).sum()) for q in params))
        clip = now / before
        bound = now if clip < 1.0 - 1e-6 else math.inf
        critic = [q for q in params if id(q) in self._critic_ids]
        actor = [q for q in params if id(q) not in self._critic_ids]
        for part in (critic, actor):
            norm = math.sqrt(sum(unclipped.get(id(q), 0.0) for q in part))
            own = min(1.0, bound / norm) if norm > 0 else 1.0
            for q in part:
                q.grad.mul_(own / clip)

    def _add_aux_grads(self, optimizer, unclipped: dict[int, float],
                       scope: list[nn.Parameter]) -> None:
        """The auxiliary gradient joins the gradients of ``scope`` (every parameter, or the
        actor's with ``grad_clip="split"``), once. ``"none"``: as it is. ``"scaled"``: times
        ``f``, the factor the clip applied to the algorithm's gradient (its norm now over its
        norm ``B`` as the backward pass left it). ``"auto"``: the parameters the auxiliary
        gradient reaches (the actor's core and the decoder) get both gradients times
        ``f * B / J`` (``J`` the norm of the two gradients' unclipped sum: the joint clip's
        factor wherever the algorithm's gradient is clipped); the others get the same factor
        while the running mean of ``J / B`` is below ``AUX_SHARE_SWITCH``, and keep ``f`` (the
        clip's own) from it on."""
        grads, self._aux_grads = self._aux_grads, None
        if grads is None:
            return
        mode = self.aux_kwargs["aux_clip"]
        common = 1.0  # what the algorithm's (clipped) gradient is multiplied by ...
        heads_keep_f = False  # ... on every parameter, or only on the auxiliary ones
        if mode in _AUX_CLIPS_UNCLIPPED and unclipped:
            before = math.sqrt(sum(unclipped.values()))
            now = math.sqrt(sum(float(q.grad.pow(2).sum()) for q in scope
                                if q.grad is not None))
            factor = now / before if before > 0 else 1.0
            if mode == "auto" and before > 0:
                by_param = dict(zip(map(id, self._aux_params), grads))
                joint_sq = 0.0
                for q in scope:
                    g = by_param.get(id(q))
                    if q.grad is None:
                        joint_sq += 0.0 if g is None else float(g.pow(2).sum())
                    else:
                        joint_sq += float((q.grad / factor + (0 if g is None else g)
                                           ).pow(2).sum())
                # the running mean lives in the optimizer's state, saved and loaded with it
                share = math.log(max(math.sqrt(joint_sq), 1e-12) / before)
                group = optimizer.param_groups[0]
                mean = group.get("aux_log_share")
                mean = share if mean is None else (AUX_SHARE_DECAY * mean
                                                   + (1 - AUX_SHARE_DECAY) * share)
                group["aux_log_share"] = mean
                common = math.exp(-share)  # the joint clip's factor, B / J
                factor *= common
                heads_keep_f = mean >= math.log(AUX_SHARE_SWITCH)  # it dominates
            grads = [None if g is None else g * factor for g in grads]
        if common != 1.0:
            for q in self._aux_params if heads_keep_f else scope:
                if q.grad is not None:
                    q.grad.mul_(common)
        for p, g in zip(self._aux_params, grads):
            if g is not None:
                p.grad = g.clone() if p.grad is None else p.grad + g

    def _process_sequence(self, features: th.Tensor, lstm_states: tuple[th.Tensor, th.Tensor],
                          episode_starts: th.Tensor, lstm: SpikingCore
                          ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        """The whole sequence in one core call, episode starts handled inside it."""
        stash = self._aux_stash if lstm is self.lstm_actor else None
        return _core_sequence(features, lstm_states, episode_starts, lstm, stash)

    def cores(self) -> list[SpikingCore]:
        """The spiking cores of this policy (actor, and critic if it has its own)."""
        cores = [self.lstm_actor]
        if isinstance(self.lstm_critic, SpikingCore) and self.lstm_critic is not self.lstm_actor:
            cores.append(self.lstm_critic)
        return cores


class GRSNPolicy(SpikingRecurrentPolicy):
    """Gated recurrent spiking neurons under TAP, for RecurrentPPO.

    Memory core: :class:`grsn_sj.RecurrentGRSN` (one neuron update per env step, state reset at
    episode starts inside the fused op). The agent around it (observation shortcut in the
    readout, the training-only ``obs_diff`` auxiliary loss, observation normalisation in the
    policy) has :class:`SpikingRecurrentPolicy`'s defaults, where each is explained; the paper's
    agent is :class:`PaperGRSNPolicy`. GRSN's own default:

    - ``forget_bias=(0.0, 3.0)``: the forget gates' initial biases spaced evenly from 0 to 3
      over the neurons, so the layer starts with a range of memory time scales: with no input
      the gated current of a neuron with bias ``b`` keeps ``sigmoid(b) ** k`` of itself after
      ``k`` steps (bias 0, the paper's: half per step, nothing after 15 steps; bias 3: about
      half after 15). With the paper's 0 everywhere a 15-step memory has no gradient path at
      initialisation, and standardised (larger) inputs made its discovery unreliable (15-step
      cue recall on 9 seeds of 20); one bias of 3 for all neurons recalls on 19 of 20 but lost a
      held-out velocity-masked POMDP (Acrobot) on 2 seeds of 3 and part of Pendulum-P, which
      need fast neurons; the range keeps both (docs/RESULTS.md, "Version 0.5").
    - ``tau=1.0`` (0.11; the paper's 2.0 before): no membrane time constant, so the membrane
      is the gated current each step (``h = c``) and a neuron fires while its gated current is
      above the threshold; the memory is the gated current's, whose time scales the forget
      gates set. With ``tau=2`` the soft reset makes the spike train a running quantisation of
      the gated current that depends on the spikes before it. With ``tau=1.0`` and the
      split clip (``grad_clip``, 0.11) CartPole-P under RL Zoo's ``VecNormalize`` reached the
      LSTM's level on 9 seeds of 12 (0.10: 4) and raw Pendulum-P no longer lost seeds
      (docs/RESULTS.md, "Version 0.11"). ``learnable_tau=True`` needs ``tau > 1`` (pass
      ``tau=2.0``).

    Extra arguments on top of :class:`SpikingRecurrentPolicy`'s:

    :param tau: membrane time constant (see above; ``beta = 1 - 1/tau``).
    :param learnable_tau: per-neuron learnable membrane decay (needs ``tau > 1``).
    :param forget_bias: initial forget-gate bias: one number for all neurons (0 = the paper's
        initialisation) or a ``(low, high)`` pair spaced evenly over the neurons
        (:func:`grsn_sj.functional.forget_bias_init`).
    :param backend: ``'auto'`` / ``'torch'`` / ``'numba'`` / ``'cupy'`` for the fused op.
    :param spike_recurrence: the spec's variant where the gates also see the previous spikes
        (per-step loop instead of the fused op; see :class:`grsn_sj.RecurrentGRSN`).

    Example::

        from sb3_contrib import RecurrentPPO
        import policies  # registers CartPole-P-v0 and the other POMDP ids
        model = RecurrentPPO(policies.GRSNPolicy, "CartPole-P-v0",
                             policy_kwargs=dict(grsn_hidden_size=64))
        model.learn(10_000)
    """

    def __init__(self, *args, tau: Optional[float] = None, learnable_tau: bool = False,
                 forget_bias: ForgetBias = (0.0, 3.0), backend: str = "auto",
                 spike_recurrence: bool = False, **kwargs):
        self.grsn_kwargs = dict(learnable_tau=learnable_tau, forget_bias=forget_bias,
                                backend=backend, spike_recurrence=spike_recurrence)
        #: whether ``tau`` was given: a model saved before 0.11 loads only with it (below)
        self._tau_given = tau is not None
        super().__init__(*args, tau=1.0 if tau is None else tau, **kwargs)
        # marks the state dicts of 0.11 on; one without it was saved with tau=2.0 as default
        self.register_buffer(_DEFAULTS_KEY, th.tensor(DEFAULTS_VERSION, device=self.device))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A state dict saved before 0.11 has no ``defaults_version``: its model ran at
        ``tau=2.0`` unless its policy_kwargs said otherwise, and a zip records only the
        policy_kwargs passed. Loaded with the current default (``tau=1.0``) it would load
        without an error and act differently, so a strict load (SB3's ``load``) of it is
        refused unless ``tau`` is given (README, "Upgrading"); a ``strict=False`` load of
        some of the parameters is the caller's choice and goes through."""
        if strict and _DEFAULTS_KEY not in state_dict:
            if not self._tau_given:
                raise ValueError(
                    f"{type(self).__name__}: this state dict has no {_DEFAULTS_KEY!r}: it was "
                    "saved by grsn_sj 0.10 or earlier, whose GRSNPolicy ran at tau=2.0 by "
                    "default (1.0 since 0.11). Load it with its tau given, e.g. "
                    "RecurrentPPO.load(path, custom_objects={'policy_kwargs': "
                    "{**its_policy_kwargs, 'tau': 2.0}}) (README, 'Upgrading')")
            state_dict = {**state_dict, _DEFAULTS_KEY: getattr(self, _DEFAULTS_KEY).clone()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _make_core(self, input_size, hidden_size, num_layers):
        return GRSNCore(input_size, hidden_size, num_layers, **self.core_kwargs,
                        **self.grsn_kwargs)

    def _get_constructor_parameters(self):
        data = super()._get_constructor_parameters()
        data.update(self.grsn_kwargs)
        return data


class PaperGRSNPolicy(GRSNPolicy):
    """The paper's GRSN agent as far as the policy goes: the observation shortcut in the readout
    (an embedding of 32), no auxiliary loss, no observation normalisation in the policy,
    PyTorch's default initialisation (``input_bias=0``, ``forget_bias=0``), 128 neurons, SB3's
    default heads (``pi=[64, 64]``, ``vf=[64, 64]``), one learning rate for the whole policy
    (``core_learning_rate=None``), the paper's ``tau=2.0`` and SB3's one clip over the whole
    gradient (``grad_clip="joint"``). Every
    argument of :class:`GRSNPolicy` still applies and overrides these. The paper's agent also
    feeds the previous action and reward: wrap the env in :class:`policies.PrevActionRewardWrapper`
    (``policies.make_env(..., prev_action_reward=True)``)."""

    def __init__(self, *args, readout: str = "spikes+obs", shortcut_dim: int = 32,
                 aux_loss: Optional[str] = None, input_bias: float = 0.0,
                 normalize_obs: bool = False, forget_bias: ForgetBias = 0.0,
                 net_arch: Optional[list[int] | dict[str, list[int]]] = None,
                 core_learning_rate: Optional[float] = None, tau: float = 2.0,
                 grad_clip: str = "joint", **kwargs):
        if not any(k in kwargs for k in ("grsn_hidden_size", "lstm_hidden_size")):
            kwargs["grsn_hidden_size"] = 128
        if net_arch is None:
            net_arch = dict(pi=[64, 64], vf=[64, 64])
        super().__init__(*args, readout=readout, shortcut_dim=shortcut_dim, aux_loss=aux_loss,
                         input_bias=input_bias, normalize_obs=normalize_obs,
                         forget_bias=forget_bias, net_arch=net_arch,
                         core_learning_rate=core_learning_rate, tau=tau,
                         grad_clip=grad_clip, **kwargs)


class LIFPolicy(SpikingRecurrentPolicy):
    """LIF under TAP (the paper's baseline): ``Linear + LIF`` layers whose membrane is carried
    across env steps; no gate, memory only through the membrane leak. The same agent and
    defaults as :class:`GRSNPolicy` (:class:`SpikingRecurrentPolicy`'s), so the two differ in the
    neuron only."""

    def _make_core(self, input_size, hidden_size, num_layers):
        return LIFCore(input_size, hidden_size, num_layers, **self.core_kwargs)


class NoTAPPolicy(SpikingRecurrentPolicy):
    """Spiking without TAP (the paper's baseline): the GRSN stack runs ``sub_steps`` steps on the
    same input for every decision from a fresh state, the latent is the spike rate; no memory
    across env steps. The same agent and defaults as :class:`GRSNPolicy`
    (:class:`SpikingRecurrentPolicy`'s; its auxiliary loss cannot be met without a memory, which
    is the point of the ablation).

    :param sub_steps: simulation steps per decision (4 in the paper's description).
    """

    def __init__(self, *args, sub_steps: int = 4, **kwargs):
        self.sub_steps = sub_steps
        super().__init__(*args, **kwargs)

    def _make_core(self, input_size, hidden_size, num_layers):
        return NoTAPCore(input_size, hidden_size, num_layers, sub_steps=self.sub_steps,
                         **self.core_kwargs)

    def _get_constructor_parameters(self):
        data = super()._get_constructor_parameters()
        data["sub_steps"] = self.sub_steps
        return data


def _with_extractor(base: type, extractor: type, kind: str) -> type:
    """``base`` with another default features extractor (sb3-contrib's Cnn / MultiInput
    pattern): every argument of ``base`` still applies."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = extractor,
                 **kwargs):
        base.__init__(self, *args, features_extractor_class=features_extractor_class, **kwargs)

    doc = (f"{base.__name__} for {kind} observations: the same policy with SB3's "
           f"``{extractor.__name__}`` as its default features extractor (like sb3-contrib's "
           f"``{'CnnLstmPolicy' if extractor is NatureCNN else 'MultiInputLstmPolicy'}``). "
           f"Every argument of :class:`{base.__name__}` applies.")
    prefix = "Cnn" if extractor is NatureCNN else "MultiInput"
    return type(prefix + base.__name__, (base,), {"__init__": __init__, "__doc__": doc,
                                                  "__module__": __name__})


CnnGRSNPolicy = _with_extractor(GRSNPolicy, NatureCNN, "image")
MultiInputGRSNPolicy = _with_extractor(GRSNPolicy, CombinedExtractor, "Dict")
CnnLIFPolicy = _with_extractor(LIFPolicy, NatureCNN, "image")
MultiInputLIFPolicy = _with_extractor(LIFPolicy, CombinedExtractor, "Dict")
CnnNoTAPPolicy = _with_extractor(NoTAPPolicy, NatureCNN, "image")
MultiInputNoTAPPolicy = _with_extractor(NoTAPPolicy, CombinedExtractor, "Dict")


class _RNNPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic plus ``centralised_critic``; subclasses say which
    core they build (:meth:`_core`) and whether it replaces the actor's LSTM too."""

    _replaces_actor = False

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 lr_schedule: Schedule, *args, centralised_critic: bool = False, **kwargs):
        name = type(self).__name__
        kwargs = central_policy_kwargs(name, observation_space, kwargs, centralised_critic)
        if centralised_critic and args:
            raise TypeError(f"{name}(centralised_critic=True): pass the policy's arguments "
                            f"by keyword (got {len(args)} positional after lr_schedule)")
        self.centralised_critic = centralised_critic
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)
        vf_dim = central_critic_extractor(self) if centralised_critic else self.features_dim
        if not (self._replaces_actor or centralised_critic):
            return  # the parent's modules are the policy
        if self._replaces_actor:
            self.lstm_actor = self._core(self.features_dim)
        if self.lstm_critic is not None:
            self.lstm_critic = self._core(vf_dim)
        elif self.critic is not None:
            self.critic = nn.Linear(vf_dim, self.lstm_output_dim)
        self.to(self.device)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)

    def _core(self, input_size: int) -> nn.Module:
        return nn.LSTM(input_size, self.lstm_hidden_state_shape[-1],
                       num_layers=self.lstm_hidden_state_shape[0], **self.lstm_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["centralised_critic"] = self.centralised_critic
        return data


class LSTMPolicy(_RNNPolicy):
    """sb3-contrib's ``MlpLstmPolicy`` with one more option, ``centralised_critic``: the LSTM
    baseline of a MAPPO-style comparison. Every argument of ``MlpLstmPolicy`` applies; with
    ``centralised_critic=False`` it is that policy.

    :param centralised_critic: the actor reads the ``"obs"`` entry of a ``Dict`` observation,
        the critic (its LSTM, or its feed-forward critic) ``"obs"`` and ``"state"`` together
        (wrap the multi-agent VecEnv in :class:`policies.marl.VecCentralState`; see
        :mod:`policies.central`). Training-only: the deployed actor is unchanged.
    """


class GRUPolicy(_RNNPolicy):
    """sb3-contrib's recurrent actor-critic with a GRU (:class:`policies.cores.GRUCore`) in
    place of each LSTM: the paper's RNN baseline, for RecurrentPPO. It takes exactly
    ``MlpLstmPolicy``'s arguments, and :class:`LSTMPolicy`'s ``centralised_critic``;
    ``lstm_hidden_size``, ``n_lstm_layers``, ``shared_lstm``, ``enable_critic_lstm`` and
    ``lstm_kwargs`` (passed to :class:`torch.nn.GRU`) configure the GRU. The GRU's state ``h``
    travels in the first of RecurrentPPO's ``(h, c)`` slots (the second stays zero), and whole
    training sequences go through the fused GRU between episode starts.

    Example::

        from sb3_contrib import RecurrentPPO
        import policies
        model = RecurrentPPO(policies.GRUPolicy, "CartPole-P-v0",
                             policy_kwargs=dict(lstm_hidden_size=64))
        model.learn(10_000)
    """

    _replaces_actor = True

    def _core(self, input_size: int) -> nn.Module:
        return GRUCore(input_size, self.lstm_hidden_state_shape[-1],
                       self.lstm_hidden_state_shape[0], **self.lstm_kwargs)

    def _process_sequence(self, features, lstm_states, episode_starts, lstm):
        return _core_sequence(features, lstm_states, episode_starts, lstm)


# ---------------------------------------------------------------------------------- helpers

def _core_sequence(features: th.Tensor, states: tuple[th.Tensor, th.Tensor],
                   episode_starts: th.Tensor, core: nn.Module,
                   stash: Optional[list] = None) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
    """RecurrentPPO's flat (sequence-major) rows through a core in one call: ``[n_seq * T, F]``
    -> ``[T, n_seq, F]`` -> core -> back to rows. ``stash`` (a list) receives the core's input
    sequence, readout and starts, for an auxiliary loss."""
    n_seq = states[0].shape[1]
    features_sequence = features.reshape((n_seq, -1, features.shape[-1])).swapaxes(0, 1)
    starts = _sequence_major(episode_starts, n_seq)
    latent, states = core(features_sequence, states, starts)
    if stash is not None:
        stash.append((features_sequence, latent, starts))
    return th.flatten(latent.transpose(0, 1), start_dim=0, end_dim=1), states


class ScaledStep:
    """Multiplies the optimizer's step of some parameters by ``scale``: hooks around
    ``optimizer.step()`` that keep each parameter ``p`` before the step (``p0``) and set it to
    ``p0 + scale * (p - p0)`` after it.

    For an optimizer whose step is proportional to its learning rate (SGD, Adam, AdamW,
    RMSprop: their states do not depend on the rate) this is those parameters' learning rate
    times ``scale``, a rate of their own that follows the algorithm's schedule: SB3 sets every
    parameter group's ``lr`` before each update, so a parameter group with a rate of its own
    would be overwritten, and the optimizer keeps one group (its saved state loads into a
    policy built with any scale).

    An optimizer class whose ``step`` calls ``super().step()`` runs PyTorch's step hooks once
    per level; only the outermost pair acts, so the step is scaled once."""

    def __init__(self, params: list[nn.Parameter], scale: float):
        self.params, self.scale = params, scale
        self._before: Optional[list[th.Tensor]] = None
        self._depth = 0

    def attach(self, optimizer: th.optim.Optimizer) -> None:
        optimizer.register_step_pre_hook(self._keep)
        optimizer.register_step_post_hook(self._scale)

    def _keep(self, optimizer, args, kwargs) -> None:
        self._depth += 1
        if self._depth == 1:
            self._before = [p.detach().clone() for p in self.params]

    def _scale(self, optimizer, args, kwargs) -> None:
        self._depth -= 1
        if self._depth:
            return
        with th.no_grad():
            for p, p0 in zip(self.params, self._before):
                p.sub_(p0).mul_(self.scale).add_(p0)
        self._before = None


class _InjectGrad(th.autograd.Function):
    """Identity on ``carrier``; its backward also gives the scalar ``aux`` the gradient
    ``weight``, so ``aux`` is minimised in the same backward pass (and optimizer step, and
    gradient clip) as whatever loss uses ``carrier``."""

    @staticmethod
    def forward(ctx, carrier, aux, weight):
        ctx.weight = weight
        return carrier.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, grad.new_full((), ctx.weight), None


def _all_zero_rows(obs) -> th.Tensor:
    """[rows] bool: the rows of a batch of observations (a tensor or a dict of them) whose
    every entry is zero."""
    parts = obs.values() if isinstance(obs, dict) else [obs]
    nonzero = th.stack([(part != 0).reshape(part.shape[0], -1).any(-1) for part in parts]).any(0)
    return ~nonzero


def _sequence_major(rows: th.Tensor, n_seq: int) -> th.Tensor:
    """RecurrentPPO's flat sequence-major rows ``[n_seq * T]`` -> ``[T, n_seq]`` (as
    :func:`_core_sequence` arranges the features)."""
    return rows.reshape((n_seq, -1)).swapaxes(0, 1)


def _obs_diff_loss(decoder: nn.Module, features: th.Tensor, latent: th.Tensor,
                   starts: th.Tensor, zero_obs: th.Tensor) -> th.Tensor:
    """MSE of ``decoder(latent_t)`` against the standardised ``features_t - features_{t-1}``.

    ``features`` [T, N, F] (the core's input), ``latent`` [T, N, D] (the core's readout),
    ``starts`` [T, N], ``zero_obs`` [T, N] (the raw observation is all zeros). Steps with no
    previous step in the same episode (t = 0, an episode start) and the zero padding
    RecurrentPPO appends to short sequences (an all-zero suffix of a sequence) are left out."""
    target = features.detach()
    diff = target[1:] - target[:-1]
    nonzero = (~zero_obs).float()
    real = th.flip(th.cummax(th.flip(nonzero, [0]), 0).values, [0]) > 0
    valid = real[1:] & real[:-1] & (starts[1:] == 0)
    if int(valid.sum()) < 2:
        return latent.sum() * 0.0
    diff = diff[valid]
    target = diff / (diff.std(0, keepdim=True) + 1e-6)
    pred = decoder(latent[1:][valid])
    return ((pred - target) ** 2).mean()


def _finite_real(value: Any) -> bool:
    """A finite int or float (``True``/``False`` are not numbers here)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _core_step_scale(name: str, core_learning_rate: Optional[float],
                     lr_schedule: Schedule) -> float:
    """The factor :class:`ScaledStep` applies to the cores' step so they start at
    ``core_learning_rate`` (and follow the algorithm's schedule in proportion); 1 for ``None``."""
    if core_learning_rate is None:
        return 1.0
    if not _finite_real(core_learning_rate) or core_learning_rate <= 0:
        raise ValueError(f"{name}: core_learning_rate must be a finite number > 0, or None for "
                         f"the algorithm's learning rate; got {core_learning_rate!r}")
    start = float(lr_schedule(1))
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"{name}: core_learning_rate={core_learning_rate!r} is set relative to "
                         f"the algorithm's learning rate, which starts at {start!r}; give the "
                         "algorithm a finite learning rate >= 0 or pass core_learning_rate=None")
    if start == 0:  # no step to scale (RL Zoo's enjoy loads models with learning rate 0)
        return 1.0
    return float(core_learning_rate) / start


def _check_spaces(name: str, observation_space: spaces.Space, action_space: spaces.Space,
                  features_extractor_class: Callable) -> None:
    if isinstance(observation_space, spaces.Tuple):
        raise TypeError(
            f"{name} takes Box, Discrete, MultiDiscrete, MultiBinary or Dict observations (what "
            f"RecurrentPPO supports); got Tuple. Wrap the env in gymnasium's FlattenObservation")
    if isinstance(observation_space, spaces.Dict) and features_extractor_class is FlattenExtractor:
        raise TypeError(
            f"{name} got a Dict observation space {observation_space}; use its MultiInput "
            "variant (e.g. policies.MultiInputGRSNPolicy, which defaults to SB3's "
            "CombinedExtractor) or pass policy_kwargs=dict(features_extractor_class="
            "stable_baselines3.common.torch_layers.CombinedExtractor)")
    if (is_image_space(observation_space, check_channels=False)
            and features_extractor_class is FlattenExtractor):
        raise TypeError(
            f"{name} got an image observation space {observation_space}; use its Cnn variant "
            "(e.g. policies.CnnGRSNPolicy, which defaults to SB3's NatureCNN) or pass "
            "policy_kwargs=dict(features_extractor_class=stable_baselines3.common.torch_layers"
            ".NatureCNN) (or another CNN extractor)")
    if not isinstance(action_space, _ACTION_SPACES):
        raise TypeError(
            f"{name} supports Box, Discrete, MultiDiscrete and MultiBinary action spaces (what "
            f"RecurrentPPO supports); got {type(action_space).__name__}")


def _resolve_aliases(name: str, extra: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    extra = dict(extra)
    if "lstm_kwargs" in extra:
        raise TypeError(f"{name} has no LSTM: lstm_kwargs does not apply; neuron options are "
                        "keyword arguments (tau, v_threshold, v_reset, surrogate_function, ...)")
    for alias, key in _LSTM_ALIASES.items():
        if alias in extra:
            value = extra.pop(alias)
            if opts[key] is not None:
                raise ValueError(f"{name}: pass either {key} or its alias {alias}, not both")
            opts[key] = value
    if extra:
        raise TypeError(f"{name} got unexpected policy_kwargs {sorted(extra)}")
    return opts
