"""Memory cores for the recurrent policies: GRSN under TAP, LIF under TAP, spiking without TAP.

Every core has the interface RecurrentPPO expects of ``policy.lstm_actor`` (``num_layers``,
``hidden_size``, ``input_size``) and one call:

``core(features [T, N, F], state (a, b) each [num_layers, N, hidden_size], episode_starts [T, N])
-> (latent [T, N, output_dim], (a, b))``

The state travels in the two slots of an LSTM's ``(h, c)``, so sb3-contrib's buffers, ``predict``
and ``evaluate_policy`` work unchanged. Zeros in both slots always mean "episode start" (that is
what RecurrentPPO and ``predict(state=None)`` pass).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import surrogate

from grsn_sj import RecurrentGRSN
from grsn_sj.energy import (
    LIF_NEURON_OPS,
    LIF_NEURON_OPS_NONZERO_RESET,
    CoreCounting,
    LinearCounting,
    grsn_stack_counting,
)
from grsn_sj.functional import (
    check_finite,
    check_positive_int,
    check_tau_above_one,
    check_threshold,
    check_v_reset,
    initial_membrane,
    reset_membrane,
)

__all__ = ["SpikingCore", "GRSNCore", "LIFCore", "NoTAPCore", "GRUCore", "PaddedGRUCore"]

State = tuple[torch.Tensor, torch.Tensor]


def segments(episode_starts: torch.Tensor) -> list[tuple[int, int]]:
    """``[(a, b), ...]``: the time ranges of a ``[T, N]`` episode-start mask inside which no
    copy starts an episode (a start may only fall on a range's first step ``a``)."""
    T = episode_starts.shape[0]
    starts = episode_starts.bool().any(1).tolist()
    cut = [0] + [t for t in range(1, T) if starts[t]] + [T]
    return list(zip(cut[:-1], cut[1:]))


class SpikingCore(nn.Module):
    """Common part of the cores: the optional observation shortcut of the readout and the
    firing-rate counter (of the readout layer) that :class:`policies.FiringRateCallback` logs.

    ``readout="spikes"``: the latent is the spikes of the last layer. ``"spikes+obs"``: spikes
    concatenated with ``tanh(Linear(features, shortcut_dim))``, the paper's "shortcut"
    embedding of the current observation (spec §5). ``"spikes+membrane"`` (:class:`GRSNCore`
    only): spikes concatenated with the last layer's membrane before reset, a non-spiking
    readout of the neurons' state (not in the paper; the heads then see real values and cost
    MACs). ``READOUTS`` lists what a core accepts.
    """

    READOUTS: tuple[str, ...] = ("spikes", "spikes+obs")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, readout: str,
                 shortcut_dim: int):
        super().__init__()
        if readout not in self.READOUTS:
            raise ValueError(f"{type(self).__name__}: readout must be one of {self.READOUTS}, "
                             f"got {readout!r}")
        self.input_size = input_size
        self.hidden_size = check_positive_int(hidden_size, "hidden size")
        self.num_layers = check_positive_int(num_layers, "number of layers")
        check_positive_int(shortcut_dim, "shortcut_dim")
        self.readout = readout
        self.shortcut = (nn.Sequential(nn.Linear(input_size, shortcut_dim), nn.Tanh())
                         if readout == "spikes+obs" else None)
        extra = {"spikes+obs": shortcut_dim, "spikes+membrane": hidden_size}
        self.output_dim = hidden_size + extra.get(readout, 0)
        self.register_buffer("spike_sum", torch.zeros((), dtype=torch.float64),
                             persistent=False)
        self.register_buffer("neuron_steps", torch.zeros((), dtype=torch.float64),
                             persistent=False)

    def reset_firing_stats(self) -> None:
        self.spike_sum.zero_()
        self.neuron_steps.zero_()

    def firing_rate(self) -> float:
        """Mean firing rate of the readout layer (spikes per neuron per step) since the last
        :meth:`reset_firing_stats`; NaN if no step was taken."""
        return float(self.spike_sum / self.neuron_steps)

    def op_counting(self) -> CoreCounting:
        """How :func:`policies.energy.estimate_energy` counts this core (a
        :class:`grsn_sj.energy.CoreCounting`); every concrete core declares it."""
        raise TypeError(f"{type(self).__name__} does not declare how its operations are "
                        "counted: implement op_counting() returning a grsn_sj.energy.CoreCounting "
                        "(see GRSNCore.op_counting)")

    def _outside_core(self) -> tuple[nn.Module, ...]:
        """The observation shortcut embedding is part of the agent, not of the memory."""
        return () if self.shortcut is None else (self.shortcut,)

    def _count(self, spikes: torch.Tensor) -> None:
        with torch.no_grad():
            self.spike_sum += spikes.sum(dtype=torch.float64)
            self.neuron_steps += spikes.numel()

    def _readout(self, spikes: torch.Tensor, features: torch.Tensor,
                 membrane: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.readout == "spikes+obs":
            return torch.cat([spikes, self.shortcut(features)], dim=-1)
        if self.readout == "spikes+membrane":
            return torch.cat([spikes, membrane], dim=-1)
        return spikes


class GRSNCore(SpikingCore):
    """GRSN under TAP: a :class:`grsn_sj.RecurrentGRSN`, one neuron update per env step, state
    carried across steps and reset at episode starts inside the fused op.

    State slots: ``(v - v_init, c)`` per layer (``v_init`` = 0 for soft reset, ``v_reset`` for
    hard reset; ``h - v_init`` with ``spike_recurrence``, see :class:`grsn_sj.GRSN`), so that
    all-zero slots are exactly the initial state. Also accepts
    ``readout="spikes+membrane"`` (see :class:`SpikingCore`).
    """

    READOUTS = SpikingCore.READOUTS + ("spikes+membrane",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 readout: str = "spikes", shortcut_dim: int = 32, **grsn_kwargs):
        super().__init__(input_size, hidden_size, num_layers, readout, shortcut_dim)
        self.grsn = RecurrentGRSN(input_size, hidden_size, num_layers, **grsn_kwargs)
        self._v_init = initial_membrane(self.grsn.v_reset)

    def op_counting(self) -> CoreCounting:
        """The GRSN stack's layers (:func:`grsn_sj.energy.grsn_stack_counting`); the readout's
        first ``hidden_size`` columns are spikes."""
        return CoreCounting(grsn_stack_counting(self.grsn), self.hidden_size,
                            self._outside_core())

    def forward(self, features: torch.Tensor, state: State,
                episode_starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        v, c = state
        spikes, membrane, (v, c) = self.grsn.forward_sequence(
            features, (v + self._v_init, c), episode_starts=episode_starts)
        self._count(spikes)
        return self._readout(spikes, features, membrane), (v - self._v_init, c)


class LIFCore(SpikingCore):
    """LIF under TAP (spec §4 baseline): ``Linear(in, H)`` then a LIF neuron (SpikingJelly's
    ``lif_step``: ``h = v + (x - v) / tau``, fire at ``h >= theta``), per layer; the membrane is
    carried across env steps and reset at episode starts. No gate: memory only through the
    membrane leak. State slots: ``(v - v_init, 0)``. ``input_bias`` is added to the initial
    bias of each Linear (as for GRSN's input gate).

    Sequences without an episode start use SpikingJelly's fused ``lif_multi_step``; a sequence
    with starts is cut into segments at the starts.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 readout: str = "spikes", shortcut_dim: int = 32, input_bias: float = 0.0,
                 tau: float = 2.0, v_threshold: float = 1.0, v_reset: Optional[float] = None,
                 surrogate_function=surrogate.ATan(), detach_reset: bool = False):
        super().__init__(input_size, hidden_size, num_layers, readout, shortcut_dim)
        self.tau = check_tau_above_one(tau, "LIFCore")
        self.v_threshold = check_threshold(v_threshold)
        self.v_reset = check_v_reset(v_reset)
        self.surrogate_function = surrogate_function
        self.detach_reset = detach_reset
        self._v_init = initial_membrane(self.v_reset)
        self.fcs = nn.ModuleList(nn.Linear(input_size if i == 0 else hidden_size, hidden_size)
                                 for i in range(num_layers))
        with torch.no_grad():
            for fc in self.fcs:
                fc.bias.add_(float(input_bias))

    def op_counting(self) -> CoreCounting:
        """Each ``Linear`` drives ``H`` LIF neurons (spike input from layer 2 on); the readout is
        spikes."""
        ops = (LIF_NEURON_OPS_NONZERO_RESET if self.v_reset not in (None, 0.0)
               else LIF_NEURON_OPS)
        linears = {fc: LinearCounting(spike_columns=0 if i == 0 else fc.in_features, neuron=ops,
                                      neuron_label=" (LIF neurons)")
                   for i, fc in enumerate(self.fcs)}
        return CoreCounting(linears, self.hidden_size, self._outside_core())

    def _layer(self, x: torch.Tensor, v: torch.Tensor, starts: torch.Tensor):
        """One layer over [T, N, H] inputs: fused between episode starts."""
        outs = []
        for a, b in segments(starts):
            v = reset_membrane(v, starts[a], self.v_reset)
            spikes, v, _ = sj_functional.lif_multi_step(
                x[a:b], v, self.tau, True, self.v_threshold, self.v_reset,
                self.surrogate_function, self.detach_reset, False)
            outs.append(spikes)
        return torch.cat(outs), v

    def forward(self, features, state, episode_starts):
        # a NaN would make the membrane NaN for ever (as in GRSN): refuse it, naming it
        check_finite(features, "LIFCore", "features")
        v_all = state[0] + self._v_init
        x, vs = features, []
        for i, fc in enumerate(self.fcs):
            x, v = self._layer(fc(x), v_all[i], episode_starts)
            vs.append(v)
        self._count(x)
        return self._readout(x, features), (torch.stack(vs) - self._v_init,
                                            torch.zeros_like(state[1]))


class NoTAPCore(SpikingCore):
    """Spiking without TAP (spec §4 baseline, "conventional spiking RL"): for every decision the
    GRSN stack is run for ``sub_steps`` (default 4) steps on the same input from a fresh state,
    and the latent is the spike rate over those sub-steps. Nothing is carried between decisions
    (the state slots stay zero), so this policy has no memory across env steps.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 readout: str = "spikes", shortcut_dim: int = 32, sub_steps: int = 4,
                 **grsn_kwargs):
        super().__init__(input_size, hidden_size, num_layers, readout, shortcut_dim)
        self.sub_steps = check_positive_int(sub_steps, "sub_steps")
        self.grsn = RecurrentGRSN(input_size, hidden_size, num_layers, **grsn_kwargs)

    def op_counting(self) -> CoreCounting:
        """The GRSN stack, counted at every sub-step; the readout is a spike rate over the
        sub-steps (real-valued, so the heads cost MACs) unless there is one sub-step."""
        return CoreCounting(grsn_stack_counting(self.grsn),
                            self.hidden_size if self.sub_steps == 1 else 0, self._outside_core())

    def forward(self, features, state, episode_starts):
        T, N, F = features.shape
        x = features.reshape(1, T * N, F).expand(self.sub_steps, T * N, F)
        spikes, _ = self.grsn(x)
        self._count(spikes)
        rate = spikes.mean(0).reshape(T, N, self.hidden_size)
        return self._readout(rate, features), (torch.zeros_like(state[0]),
                                               torch.zeros_like(state[1]))


class GRUCore(nn.Module):
    """A plain ``nn.GRU`` with the cores' interface (the paper's RNN baseline; sb3-contrib has
    no GRU policy). State slots: ``(h, 0)``; ``h`` is reset to zero at episode starts. Whole
    sequences run through cuDNN/ATen's fused GRU between episode starts (one call per range of
    :func:`segments`). Not spiking: the latent is ``h``.

    :param gru_kwargs: passed to :class:`torch.nn.GRU` (e.g. ``dropout``, ``bias``).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **gru_kwargs):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = check_positive_int(hidden_size, "hidden size")
        self.num_layers = check_positive_int(num_layers, "number of layers")
        self.output_dim = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, num_layers, **gru_kwargs)

    def op_counting(self) -> CoreCounting:
        """Nothing to declare: the ``nn.GRU`` is counted by grsn_sj.energy's GRU rule, and the
        latent ``h`` is real-valued."""
        return CoreCounting()

    def forward(self, features: torch.Tensor, state: State,
                episode_starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        # a NaN would make h NaN for ever; the distribution's error would name only the logits
        check_finite(features, "GRUCore", "features")
        h, outs = state[0], []
        for a, b in segments(episode_starts):
            h = h * (1.0 - episode_starts[a]).view(1, -1, 1)
            out, h = self.gru(features[a:b], h.contiguous())
            outs.append(out)
        return torch.cat(outs), (h, torch.zeros_like(state[1]))


class PaddedGRUCore(GRUCore):
    """A :class:`GRUCore` whose latent ``[h, 0, ..., 0]`` is ``output_dim`` wide: a critic core
    beside a spiking actor whose readout (spikes and an observation embedding) is wider than the
    hidden state, so that actor and critic heads keep the one input width SB3's ``MlpExtractor``
    builds them for. The zero columns reach the value head's first layer as inputs that are
    always zero (its weights on them get no gradient).

    :param output_dim: width of the latent, at least ``hidden_size``.
    """

    def __init__(self, input_size: int, hidden_size: int, output_dim: int, num_layers: int = 1):
        super().__init__(input_size, hidden_size, num_layers)
        check_positive_int(output_dim, "output_dim")
        if output_dim < hidden_size:
            raise ValueError(f"PaddedGRUCore: output_dim must be at least hidden_size "
                             f"({hidden_size}), got {output_dim}")
        self.output_dim = output_dim

    def forward(self, features: torch.Tensor, state: State,
                episode_starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        out, state = super().forward(features, state, episode_starts)
        return nn.functional.pad(out, (0, self.output_dim - self.hidden_size)), state
