r"""Energy per decision of a (spiking or conventional) SB3 policy, from real rollout activity.

Public API
----------
* :class:`EnergyConstants` -- energy per operation (default 45 nm, Horowitz 2014: 4.6 pJ per
  MAC, 0.9 pJ per AC, 0 pJ per activation), user-changeable.
* :func:`estimate_energy` -- run a policy over rollout observations (the policy's own sequence
  path with the recurrent state threaded and reset at episode starts), count every operation
  and return an :class:`EnergyReport` **per decision**.
* :func:`collect_observations` -- roll a trained model out in an environment (``predict`` with
  state) and return ``(observations [T, n_envs, *obs_shape], episode_starts [T, n_envs])``.
* :func:`count_ops` -- the same counting for any ``nn.Module`` call (totals, not per decision),
  with the spike-carrying input columns of each ``nn.Linear`` given explicitly.
* :class:`OpCounts`, :class:`EnergyReport`, :class:`NeuronOps` and the per-neuron tables
  :data:`GRSN_NEURON_OPS`, :data:`LIF_NEURON_OPS`, :data:`LSTM_CELL_OPS`.

Example::

    from sb3_contrib import RecurrentPPO
    import policies
    from grsn_sj.energy import collect_observations, estimate_energy

    env = policies.make_env("CartPole-V-v0", 4, seed=0)
    model = RecurrentPPO.load("runs/cartpole_v_grsn.zip")
    obs, starts = collect_observations(model, env, n_steps=500)
    report = estimate_energy(model.policy, obs, starts)
    print(report)                        # table: core / agent / agent + critic
    report.agent.energy_nj               # deployment energy per decision, nJ

What a "decision" is
--------------------
One environment step of one agent: ``observations`` of shape ``[T, n_envs, ...]`` hold
``T * n_envs`` decisions, and every count in an :class:`EnergyReport` is the total over the
rollout divided by ``T * n_envs``. The counts are *measured*: spike-driven accumulates come from
the spikes actually emitted on these observations, not from an assumed firing rate.

Counting conventions (every number in a report follows these)
--------------------------------------------------------------
**Synaptic operations** (``nn.Linear`` and ``nn.LSTM`` weight products):

* A ``Linear(in, out)`` whose input is real-valued costs ``in * out`` **MACs** per input row
  (observation embeddings, the first gate projection of a spiking core, the ``spikes+obs``
  shortcut embedding, the feed-forward critic, MLP heads fed by real values, the action and
  value heads).
* A ``Linear(in, out)`` whose input is binary spikes costs ``out`` **ACs** per *emitted* spike
  (one accumulate per spike per outgoing synapse): ``count_nonzero(input) * out``. No multiply
  is needed because the input is 0 or 1.
* An input counts as spikes only if **both** (a) it structurally comes from a spiking layer and
  (b) every observed value is 0 or 1 (checked with SpikingJelly's
  ``op_counter.base.is_binary_tensor``). The spiking sources are: the spikes of GRSN / LIF layer
  ``l`` feeding layer ``l + 1`` (``layers[l + 1].fc``, ``fcs[l + 1]``), the previous spikes
  feeding the gates in the ``spike_recurrence`` variant (``layers[l].recurrent``), and the
  spike readout of a :class:`~policies.GRSNCore` / :class:`~policies.LIFCore` feeding the first
  ``Linear`` of the heads (``mlp_extractor.policy_net[0]``, or ``action_net`` when
  ``net_arch`` has no hidden layer; the same for the critic). Binary observations (e.g. a one-hot
  cue) feeding the first layer are still MACs: they are data, not spikes of the network. A
  structural spike input whose values are not binary (a surrogate in non-spiking mode) is
  counted as MACs and a note is added to the report.
* ``readout="spikes+obs"``: the first head layer sees ``[spikes (H columns) | tanh shortcut
  (shortcut_dim columns)]``; its input columns are split: ``nnz(spike columns) * out`` ACs plus
  ``shortcut_dim * out`` MACs per row. ``readout="spikes+membrane"`` likewise: ``H`` spike
  columns (ACs) then ``H`` real membrane columns (``H * out`` MACs per row).
* Without TAP (:class:`~policies.NoTAPCore`): the GRSN stack runs ``sub_steps`` times per
  decision and every sub-step is counted (the first gate projection is counted at every
  sub-step, as it is executed: the same input is presented at each simulation step, the usual
  direct encoding of conventional spiking RL). Its readout is a spike *rate* over the
  sub-steps (values in ``{0, 1/sub_steps, ...}``), a real number, so the first head layer costs
  MACs (with ``sub_steps == 1`` the rate is the spike itself and is counted as spikes).
* ``nn.LSTM`` (hidden ``H``, input ``in``): ``4 * H * (in + H)`` MACs per step and layer
  (``W_ih x + W_hh h``; the two products accumulate into the same sums), plus ``H * P`` for a
  projection ``proj_size = P`` (then the recurrent width is ``P``); both directions when
  bidirectional.
* Biases are not counted (neither for MACs nor for ACs), the usual convention of MAC counters
  (and of SpikingJelly's ``MACCounter`` / ``SynOpCounter``).

**Element-wise neuron updates** (``neuron_macs`` / ``neuron_acs``; ``neuron_ops`` is their sum),
per neuron and per step (per sub-step without TAP). Every element-wise multiply is charged one
MAC (4.6 pJ = an fp32 multiply 3.7 pJ plus the add it is fused with, 0.9 pJ; a multiply without an
add to fuse is still charged a full MAC, a <= 0.9 pJ overestimate applied to every model alike);
every add, subtract or threshold comparison not fused into a multiply is one AC. Products with
a per-layer constant (``1 - beta``, ``1 / tau``) count as multiplies; the constants themselves
are precomputed.

* GRSN (spec §3), :data:`GRSN_NEURON_OPS` = 4 MACs + 3 ACs + 2 activations:

  ====================================  =====================================  ======
  equation                               operations                             count
  ====================================  =====================================  ======
  ``F = sigmoid(W_f x + b_f)``           1 activation (sigmoid)                 --
  ``I = relu(W_i x + b_i)``              1 activation (relu)                    --
  ``c = F * c' + (1 - F) * I``           ``1 - F``: add; ``(1 - F) * I``:       1 AC
                                         multiply; ``F * c' + .``: fused MAC    2 MAC
  ``u = beta * u^' + (1 - beta) * c``    ``(1 - beta) * c``: multiply;          2 MAC
                                         ``beta * u^' + .``: fused MAC
  ``o = Heaviside(u - theta)``           comparison                             1 AC
  ``u^ = u - theta * o``                 ``o`` is 0/1: conditional subtract     1 AC
                                         (hard reset: a select, also 1 AC)
  ====================================  =====================================  ======

  The gate pre-activations ``W_f x``, ``W_i x`` are the synaptic operations of ``layer.fc``
  (``Linear(in, 2H)``), counted above; the ``spike_recurrence`` variant adds the synaptic ACs
  of ``layer.recurrent`` (``U o_{t-1}`` accumulates into the same pre-activation sums, so no
  extra add is charged). The number of neuron updates is read off the gate projection's output
  (``numel / 2``), so it follows the real number of steps, sub-steps included.
* LIF (SpikingJelly's ``lif_step`` with ``decay_input=True``: ``h = v + (x - v) / tau``),
  :data:`LIF_NEURON_OPS` = 1 MAC + 3 ACs (``x - v``: AC; ``v + (.) / tau``: MAC; comparison:
  AC; reset: AC); with a hard reset to a nonzero ``v_reset``
  (``h = v + (x - (v - v_reset)) / tau``) one more AC.
* LSTM cell (PyTorch's equations), :data:`LSTM_CELL_OPS` per hidden unit = 3 MACs + 5
  activations: ``c = f * c' + i * g`` (multiply + fused MAC: 2 MACs), ``h = o * tanh(c)``
  (1 MAC); ``sigmoid`` x 3 (i, f, o) and ``tanh`` x 2 (g, c) are activations.

**Activations** (sigmoid, tanh, relu, ... of neurons, LSTM cells and the heads' activation
modules) are *not* MACs or ACs: they are counted separately (``activations``) and charged
:attr:`EnergyConstants.activation_pj` each, 0 pJ by default -- the usual SNN/ANN energy
comparison counts only MACs and ACs. Set ``activation_pj`` (e.g. to a few MACs' worth) to
charge them. Not counted at all: the action distribution (softmax/argmax/sampling), the
state bookkeeping of the RL library (episode-start masking, copies, reshapes), memory traffic.

**Energy**: ``E = mac_pj * macs + ac_pj * acs + activation_pj * activations`` with
``macs = synaptic_macs + neuron_macs`` and ``acs = synaptic_acs + neuron_acs``.

Scopes of a report
------------------
* ``core``: the actor's recurrent memory alone -- ``policy.lstm_actor`` (for a spiking core:
  its gate projections, spiking-layer synapses and neuron updates, *without* the ``spikes+obs``
  shortcut embedding, which is an observation embedding). ``None`` for the MLP policy.
* ``agent``: what runs at deployment -- the **actor path only**: features extractor, actor core
  (with its shortcut embedding), ``mlp_extractor.policy_net`` and ``action_net``. The critic is
  **not** counted here (it is only needed for training).
* ``agent_with_critic``: the actor path plus the critic path (critic core ``lstm_critic`` or the
  feed-forward ``critic`` Linear, ``mlp_extractor.value_net``, ``value_net``), i.e. what a
  training-time forward pass costs. A core shared by actor and critic (``shared_lstm``) is
  counted once.

Why SpikingJelly's aten-level counters are not used for the counting itself
---------------------------------------------------------------------------
SpikingJelly 2's ``op_counter`` has ``MACCounter`` / ``SynOpCounter`` / ``ACCounter`` (under
``DispatchCounterMode``) and the module-hook machinery ``ModuleCounter`` /
``ModuleCounterMode``. This module **reuses the module-hook machinery** (our counter is a
``ModuleCounter`` with rules for ``nn.Linear``, ``nn.LSTM`` and the activation modules, run under
``ModuleCounterMode``) and SpikingJelly's ``is_binary_tensor`` spike test. The aten-level
counters do not fit these policies (checked on torch 2.x / SpikingJelly 2.0, CPU):

* they decide spike vs real per matmul operand from the values alone, so binary observations
  would be counted as ACs and a NoTAP rate that happens to be all 0/1 as spikes; the
  structural "comes from a spiking layer" condition cannot be expressed;
* the ``spikes+obs`` readout is one ``addmm`` with mixed columns: the whole product is judged
  non-binary and counted as MACs (its ``SynOpCounter`` count is 0); columns cannot be split;
* the GRSN recurrence runs inside the ``grsn_sj::multi_step_forward`` custom op (numba/CuPy
  kernel), which those counters report as unsupported, so no neuron update would be counted
  (and ``MACCounter`` has no element-wise rules at all);
* ``nn.LSTM`` on the CPU dispatches to ``aten.mkldnn_rnn_layer``, which ``MACCounter`` does not
  know: an LSTM policy would show 0 core MACs;
* ``ACCounter`` also counts every add of the RL bookkeeping (episode-start masking, the
  distribution's ``logsumexp``), which is not inference work of the network.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode
from spikingjelly.activation_based.op_counter.base import (
    ModuleCounter,
    ModuleCounterMode,
    is_binary_tensor,
)

__all__ = [
    "EnergyConstants",
    "NeuronOps",
    "GRSN_NEURON_OPS",
    "LIF_NEURON_OPS",
    "LIF_NEURON_OPS_NONZERO_RESET",
    "LSTM_CELL_OPS",
    "ACTIVATION_MODULES",
    "OpCounts",
    "EnergyScope",
    "EnergyReport",
    "estimate_energy",
    "collect_observations",
    "count_ops",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation, in picojoules.

    Defaults: 45 nm CMOS, 32-bit floating point (M. Horowitz, "Computing's energy problem (and
    what we can do about it)", ISSCC 2014): fp32 multiply 3.7 pJ + fp32 add 0.9 pJ = 4.6 pJ per
    multiply-accumulate (MAC), 0.9 pJ per accumulate (AC) -- the convention of the SNN
    literature and of the GRSN paper (spec §6). Activation functions cost 0 pJ by default (not
    counted, as usual); set ``activation_pj`` to charge each sigmoid/tanh/relu evaluation.

    :param mac_pj: energy of one MAC (dense multiply-accumulate), pJ, finite and >= 0.
    :param ac_pj: energy of one AC (accumulate; spike-driven synaptic operation), pJ.
    :param activation_pj: energy of one activation-function evaluation, pJ.
    """

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    activation_pj: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mac_pj", "ac_pj", "activation_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"EnergyConstants.{name} must be a number of picojoules, got "
                                f"{type(value).__name__}; e.g. EnergyConstants(mac_pj=4.6, "
                                "ac_pj=0.9)")
            if not math.isfinite(float(value)) or value < 0:
                raise ValueError(f"EnergyConstants.{name} must be finite and >= 0 pJ, got "
                                 f"{value}")
            object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class NeuronOps:
    """Element-wise operations of one neuron (or LSTM hidden unit) for one step.

    :param macs: multiplies (each charged one MAC, fused with an add where there is one).
    :param acs: adds / subtracts / comparisons not fused into a multiply.
    :param activations: activation-function evaluations (sigmoid, tanh, relu).
    """

    macs: int
    acs: int
    activations: int

    @property
    def ops(self) -> int:
        """Arithmetic operations (``macs + acs``), activations excluded."""
        return self.macs + self.acs


#: GRSN neuron, spec §3 (see the module docstring's table): 4 MACs + 3 ACs + 2 activations.
GRSN_NEURON_OPS = NeuronOps(macs=4, acs=3, activations=2)
#: LIF neuron (``decay_input=True``, soft reset or hard reset to 0): 1 MAC + 3 ACs.
LIF_NEURON_OPS = NeuronOps(macs=1, acs=3, activations=0)
#: LIF neuron with a hard reset to a nonzero ``v_reset``: 1 MAC + 4 ACs.
LIF_NEURON_OPS_NONZERO_RESET = NeuronOps(macs=1, acs=4, activations=0)
#: LSTM cell per hidden unit (element-wise part): 3 MACs + 5 activations.
LSTM_CELL_OPS = NeuronOps(macs=3, acs=0, activations=5)

#: activation modules counted as ``activations`` (one per output element).
ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.Tanh, nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Hardsigmoid, nn.Hardswish, nn.PReLU,
)


# --------------------------------------------------------------------------------------------
# counts and report
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpCounts:
    """Operation counts of one scope (per decision in an :class:`EnergyReport`, totals from
    :func:`count_ops`).

    :param synaptic_macs: dense MACs of weight layers with real-valued input.
    :param synaptic_acs: spike-driven ACs (emitted spikes x outgoing synapses).
    :param neuron_macs: element-wise multiplies of neuron / LSTM-cell updates.
    :param neuron_acs: element-wise adds / comparisons of neuron updates.
    :param activations: activation-function evaluations (costed at ``activation_pj``).
    """

    synaptic_macs: float = 0.0
    synaptic_acs: float = 0.0
    neuron_macs: float = 0.0
    neuron_acs: float = 0.0
    activations: float = 0.0

    @property
    def macs(self) -> float:
        """All MACs: ``synaptic_macs + neuron_macs``."""
        return self.synaptic_macs + self.neuron_macs

    @property
    def acs(self) -> float:
        """All ACs: ``synaptic_acs + neuron_acs``."""
        return self.synaptic_acs + self.neuron_acs

    @property
    def neuron_ops(self) -> float:
        """Element-wise neuron-update operations: ``neuron_macs + neuron_acs``."""
        return self.neuron_macs + self.neuron_acs

    def energy_pj(self, constants: Optional[EnergyConstants] = None) -> float:
        """``mac_pj * macs + ac_pj * acs + activation_pj * activations`` (pJ)."""
        c = _check_constants(constants)
        return c.mac_pj * self.macs + c.ac_pj * self.acs + c.activation_pj * self.activations

    def __add__(self, other: "OpCounts") -> "OpCounts":
        if not isinstance(other, OpCounts):
            return NotImplemented
        return OpCounts(*(a + b for a, b in zip(dataclasses.astuple(self),
                                                  dataclasses.astuple(other))))

    def scaled(self, factor: float) -> "OpCounts":
        """Every count multiplied by ``factor`` (e.g. ``1 / n_decisions``)."""
        return OpCounts(*(a * factor for a in dataclasses.astuple(self)))

    def as_dict(self, constants: Optional[EnergyConstants] = None) -> dict[str, float]:
        """Counts (stored and derived) and the energy under ``constants`` (default constants if
        None), as plain floats."""
        energy = self.energy_pj(constants)
        return dict(dataclasses.asdict(self), macs=self.macs, acs=self.acs,
                    neuron_ops=self.neuron_ops, energy_pj=energy, energy_nj=energy / 1e3)


@dataclass(frozen=True)
class EnergyScope:
    """An :class:`OpCounts` bound to the report's constants, so ``energy_pj`` / ``energy_nj``
    are attributes. All counts are per decision."""

    counts: OpCounts
    constants: EnergyConstants

    def __getattr__(self, name: str) -> Any:
        # delegate macs, acs, neuron_ops, synaptic_macs, ... to the counts
        if name in ("counts", "constants"):
            raise AttributeError(name)
        return getattr(self.counts, name)

    @property
    def energy_pj(self) -> float:
        """Energy per decision, picojoules."""
        return self.counts.energy_pj(self.constants)

    @property
    def energy_nj(self) -> float:
        """Energy per decision, nanojoules."""
        return self.energy_pj / 1e3

    def as_dict(self) -> dict[str, float]:
        return self.counts.as_dict(self.constants)


@dataclass(frozen=True)
class EnergyReport:
    """Operations and energy **per decision** (one env step of one agent) of a policy,
    measured on rollout observations. See the module docstring for every convention.

    Scopes (each an :class:`EnergyScope`: ``macs``, ``acs``, ``neuron_ops``, ``activations``,
    the ``synaptic_*`` / ``neuron_*`` breakdown, ``energy_pj``, ``energy_nj``):

    * ``core``: the actor's recurrent core alone (``policy.lstm_actor`` without the
      ``spikes+obs`` shortcut embedding); ``None`` for a policy without memory (MLP).
    * ``agent``: the deployed agent = actor path only (features, actor core incl. shortcut,
      actor MLP, action head). **The critic is not counted.**
    * ``agent_with_critic``: actor path + critic path (critic core or feed-forward critic,
      value MLP, value head); a shared core is counted once.

    :param policy_name: class name of the policy.
    :param n_decisions: ``T * n_envs`` decisions the counts are averaged over.
    :param constants: the energy constants of the ``energy_*`` values.
    :param firing_rate: mean firing rate (spikes per neuron per step, sub-steps included) of the
        actor core's readout layer on these observations; ``None`` without a spiking core.
    :param critic_firing_rate: the same for the critic's own spiking core, else ``None``.
    :param per_module: per decision counts per module name (neuron updates under the neuron
        module's name, or ``"<linear name> (LIF neurons)"``).
    :param notes: remarks about the counting of this policy (e.g. a non-binary spike input).
    """

    policy_name: str
    n_decisions: int
    constants: EnergyConstants
    core_counts: Optional[OpCounts]
    agent_counts: OpCounts
    agent_with_critic_counts: OpCounts
    firing_rate: Optional[float] = None
    critic_firing_rate: Optional[float] = None
    per_module: Mapping[str, OpCounts] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def core(self) -> Optional[EnergyScope]:
        """The actor's recurrent core alone (``None`` without one)."""
        if self.core_counts is None:
            return None
        return EnergyScope(self.core_counts, self.constants)

    @property
    def agent(self) -> EnergyScope:
        """The deployed agent: actor path only, critic not counted."""
        return EnergyScope(self.agent_counts, self.constants)

    @property
    def agent_with_critic(self) -> EnergyScope:
        """Actor path plus critic path."""
        return EnergyScope(self.agent_with_critic_counts, self.constants)

    def with_constants(self, constants: EnergyConstants) -> "EnergyReport":
        """The same counts under other energy constants (no re-run)."""
        return dataclasses.replace(self, constants=_check_constants(constants))

    def as_dict(self) -> dict[str, Any]:
        """Nested plain dict: scopes -> counts + ``energy_pj`` / ``energy_nj``, firing rates,
        constants, per-module counts and notes."""
        return {
            "policy": self.policy_name,
            "n_decisions": self.n_decisions,
            "constants": dataclasses.asdict(self.constants),
            "core": None if self.core is None else self.core.as_dict(),
            "agent": self.agent.as_dict(),
            "agent_with_critic": self.agent_with_critic.as_dict(),
            "firing_rate": self.firing_rate,
            "critic_firing_rate": self.critic_firing_rate,
            "per_module": {k: v.as_dict(self.constants) for k, v in self.per_module.items()},
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        c = self.constants
        head = (f"{self.policy_name}: operations and energy per decision, averaged over "
                f"{self.n_decisions} decisions ({c.mac_pj:g} pJ/MAC, {c.ac_pj:g} pJ/AC, "
                f"{c.activation_pj:g} pJ/activation)")
        cols = ("scope", "dense MACs", "spike ACs", "neuron MACs", "neuron ACs", "activations",
                "energy nJ")
        rows = []
        for label, scope in (("core (actor memory)", self.core),
                             ("agent (actor, deployed)", self.agent),
                             ("agent + critic", self.agent_with_critic)):
            if scope is None:
                rows.append((label, "-", "-", "-", "-", "-", "-"))
                continue
            rows.append((label, f"{scope.synaptic_macs:,.1f}", f"{scope.synaptic_acs:,.1f}",
                         f"{scope.neuron_macs:,.1f}", f"{scope.neuron_acs:,.1f}",
                         f"{scope.activations:,.1f}", f"{scope.energy_nj:,.4f}"))
        widths = [max(len(r[i]) for r in (cols, *rows)) for i in range(len(cols))]
        fmt = lambda r: "  ".join(  # noqa: E731
            (r[0].ljust(widths[0]), *(r[i].rjust(widths[i]) for i in range(1, len(r)))))
        lines = [head, fmt(cols), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]
        if self.firing_rate is not None:
            rate = f"readout firing rate: actor {self.firing_rate:.4f}"
            if self.critic_firing_rate is not None:
                rate += f", critic {self.critic_firing_rate:.4f}"
            lines.append(rate + " spikes/neuron/step")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the counter (a SpikingJelly ModuleCounter)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LinearRole:
    """How to count one ``nn.Linear``: ``spike_cols`` leading input columns carry spikes (0: the
    input is real), and the neuron model its outputs drive (``outputs_per_neuron`` outputs per
    neuron: 2 for a GRSN gate projection ``[forget | input]``, 1 for LIF)."""

    spike_cols: int = 0
    neuron: Optional[NeuronOps] = None
    outputs_per_neuron: int = 1
    neuron_key: str = ""


_REAL = _LinearRole()


class _OpCounter(ModuleCounter):
    """SpikingJelly ``ModuleCounter`` with rules for ``nn.Linear``, ``nn.LSTM`` and the
    activation modules; accumulates an :class:`OpCounts` per module name in ``self.ops`` and
    returns the total operation count (for SpikingJelly's scope records)."""

    def __init__(self, names: Mapping[nn.Module, str], roles: Mapping[nn.Module, _LinearRole]):
        super().__init__()
        self.names = names
        self.roles = roles
        self.ops: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.notes: list[str] = []
        self.rules = {("forward", nn.Linear): self._linear, ("forward", nn.LSTM): self._lstm}
        for act in ACTIVATION_MODULES:
            self.rules[("forward", act)] = self._activation

    def _add(self, key: str, syn_mac: int = 0, syn_ac: int = 0, neu_mac: int = 0,
             neu_ac: int = 0, act: int = 0) -> int:
        acc = self.ops[key]
        for i, v in enumerate((syn_mac, syn_ac, neu_mac, neu_ac, act)):
            acc[i] += int(v)
        return int(syn_mac + syn_ac + neu_mac + neu_ac + act)

    @staticmethod
    def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
        if args:
            return args[0]
        return kwargs["input"]

    def _linear(self, module: nn.Linear, args: tuple, kwargs: dict, out: torch.Tensor) -> int:
        x = self._first_input(args, kwargs)
        name = self.names.get(module, type(module).__name__)
        role = self.roles.get(module, _REAL)
        in_f, out_f = module.in_features, module.out_features
        rows = x.numel() // in_f if in_f else 0
        k = min(role.spike_cols, in_f)
        syn_mac = syn_ac = 0
        if k > 0:
            spikes = x[..., :k]
            if is_binary_tensor(spikes):
                syn_ac = int(spikes.count_nonzero()) * out_f
            else:
                syn_mac += rows * k * out_f
                note = (f"{name}: input columns [0, {k}) come from a spiking layer but were not "
                        "all 0/1 (surrogate in non-spiking mode?); counted as MACs")
                if note not in self.notes:
                    self.notes.append(note)
        syn_mac += rows * (in_f - k) * out_f
        total = self._add(name, syn_mac=syn_mac, syn_ac=syn_ac)
        if role.neuron is not None:
            n = out.numel() // role.outputs_per_neuron
            total += self._add(role.neuron_key, neu_mac=n * role.neuron.macs,
                               neu_ac=n * role.neuron.acs, act=n * role.neuron.activations)
        return total

    def _lstm(self, module: nn.LSTM, args: tuple, kwargs: dict, out: Any) -> int:
        x = self._first_input(args, kwargs)
        if isinstance(x, nn.utils.rnn.PackedSequence):
            steps = int(x.data.shape[0])
        else:
            steps = x.numel() // module.input_size
        dirs = 2 if module.bidirectional else 1
        hidden, proj = module.hidden_size, module.proj_size
        width = proj if proj > 0 else hidden
        syn_mac = 0
        for layer in range(module.num_layers):
            in_l = module.input_size if layer == 0 else width * dirs
            syn_mac += dirs * steps * (4 * hidden * (in_l + width) + (hidden * proj))
        cells = dirs * steps * module.num_layers * hidden
        return self._add(self.names.get(module, type(module).__name__), syn_mac=syn_mac,
                         neu_mac=cells * LSTM_CELL_OPS.macs, neu_ac=cells * LSTM_CELL_OPS.acs,
                         act=cells * LSTM_CELL_OPS.activations)

    def _activation(self, module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
        return self._add(self.names.get(module, type(module).__name__),
                         act=out.numel() if isinstance(out, torch.Tensor) else 0)

    def counts(self) -> dict[str, OpCounts]:
        return {k: OpCounts(*map(float, v)) for k, v in self.ops.items()}


def _run_counted(model: nn.Module, roles: Mapping[nn.Module, _LinearRole],
                 call: Any) -> _OpCounter:
    names = {}
    for n, m in model.named_modules():
        names.setdefault(m, n if n else type(m).__name__)
    counter = _OpCounter(names, roles)
    with torch.no_grad(), ModuleCounterMode([counter], model=model):
        call()
    return counter


# --------------------------------------------------------------------------------------------
# generic entry point
# --------------------------------------------------------------------------------------------

def count_ops(module: nn.Module, *inputs: Any,
              spike_columns: Optional[Mapping[nn.Module, int]] = None) -> OpCounts:
    """Total operations of one call ``module(*inputs)`` (not per decision), with this module's
    conventions (see the module docstring).

    Counted: every ``nn.Linear`` (MACs for real input columns, ACs for spike columns), every
    ``nn.LSTM`` (gate MACs + :data:`LSTM_CELL_OPS` per hidden unit and step) and every
    activation module in :data:`ACTIVATION_MODULES`. Neuron updates of spiking layers are only
    counted by :func:`estimate_energy`, which knows the policies' structure.

    :param module: the network (called once under ``torch.no_grad()``).
    :param inputs: its positional arguments.
    :param spike_columns: ``{linear: k}``: the first ``k`` input columns of ``linear`` carry
        spikes (``k = linear.in_features`` for a fully spiking input). They are counted as ACs
        (``nonzero * out_features``) when the observed values are all 0/1, else as MACs. Any
        other ``Linear`` input is real-valued (MACs).

    Example::

        >>> import torch, torch.nn as nn
        >>> lin = nn.Linear(4, 3)
        >>> spikes = torch.tensor([[1., 0, 1, 1], [0, 1, 0, 1.]])   # 5 spikes
        >>> count_ops(lin, spikes, spike_columns={lin: 4}).synaptic_acs   # 5 * 3
        15.0
        >>> count_ops(lin, torch.randn(1, 4)).synaptic_macs               # 4 * 3
        12.0
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_ops needs an nn.Module, got {type(module).__name__}")
    roles: dict[nn.Module, _LinearRole] = {}
    for lin, k in (spike_columns or {}).items():
        if not isinstance(lin, nn.Linear):
            raise TypeError("spike_columns keys must be nn.Linear modules of `module`, got "
                            f"{type(lin).__name__}")
        if not any(lin is m for m in module.modules()):
            raise ValueError("spike_columns names an nn.Linear that is not part of `module`")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not (
                0 <= k <= lin.in_features):
            raise ValueError(f"spike_columns values must be ints in [0, in_features="
                             f"{lin.in_features}], got {k!r}")
        roles[lin] = _LinearRole(spike_cols=int(k))
    counter = _run_counted(module, roles, lambda: module(*inputs))
    total = OpCounts()
    for c in counter.counts().values():
        total = total + c
    return total


# --------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------

_ACTOR_PREFIXES = ("features_extractor", "pi_features_extractor", "lstm_actor",
                   "mlp_extractor.policy_net", "action_net")
_CRITIC_PREFIXES = ("vf_features_extractor", "lstm_critic", "critic",
                    "mlp_extractor.value_net", "value_net")


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _first_linear(seq: nn.Module) -> Optional[nn.Linear]:
    for m in seq.modules():
        if isinstance(m, nn.Linear):
            return m
    return None


def _resolve_policy(policy: Any):
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy

    if isinstance(policy, BaseAlgorithm):
        policy = policy.policy
    if not isinstance(policy, ActorCriticPolicy):
        raise TypeError(
            "estimate_energy needs an actor-critic policy: sb3-contrib's "
            "RecurrentActorCriticPolicy (RecurrentPPO with 'MlpLstmPolicy', policies.GRSNPolicy, "
            "policies.LIFPolicy, policies.NoTAPPolicy) or SB3's ActorCriticPolicy (PPO "
            f"'MlpPolicy'); got {type(policy).__name__}. Pass model.policy (or the model)")
    return policy


def _check_modules(policy: nn.Module, names: Mapping[nn.Module, str]) -> None:
    """Every module holding parameters must be one this module knows how to count."""
    for module in policy.modules():
        if module is policy or not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, (nn.Linear, nn.LSTM, BaseNode, nn.PReLU)):
            continue
        raise TypeError(
            f"cannot count the operations of {names.get(module)} ({type(module).__name__}): "
            "only nn.Linear, nn.LSTM, SpikingJelly neurons and activation modules are "
            "supported (e.g. a CNN features extractor is not); use count_ops on the supported "
            "parts or a FlattenExtractor policy")


def _core_roles(core: Optional[nn.Module], names: Mapping[nn.Module, str],
                roles: dict[nn.Module, _LinearRole], label: str) -> int:
    """Register the roles of a core's Linear layers; return the number of spike columns of
    its readout (0 for a real-valued readout)."""
    from policies.cores import GRSNCore, LIFCore, NoTAPCore, SpikingCore

    if core is None or isinstance(core, nn.LSTM):
        return 0
    if isinstance(core, (GRSNCore, NoTAPCore)):
        for i, layer in enumerate(core.grsn.layers):
            roles[layer.fc] = _LinearRole(
                spike_cols=0 if i == 0 else layer.fc.in_features, neuron=GRSN_NEURON_OPS,
                outputs_per_neuron=2, neuron_key=names[layer.node])
            recurrent = getattr(layer, "recurrent", None)
            if isinstance(recurrent, nn.Linear):
                roles[recurrent] = _LinearRole(spike_cols=recurrent.in_features)
        if isinstance(core, NoTAPCore) and core.sub_steps > 1:
            return 0  # spike rate over the sub-steps: real-valued
        return core.hidden_size
    if isinstance(core, LIFCore):
        ops = (LIF_NEURON_OPS_NONZERO_RESET if core.v_reset not in (None, 0.0)
               else LIF_NEURON_OPS)
        for i, fc in enumerate(core.fcs):
            roles[fc] = _LinearRole(spike_cols=0 if i == 0 else fc.in_features, neuron=ops,
                                    outputs_per_neuron=1,
                                    neuron_key=f"{names[fc]} (LIF neurons)")
        return core.hidden_size
    if isinstance(core, SpikingCore):
        raise TypeError(f"{label} is a {type(core).__name__}, a SpikingCore this estimator does "
                        "not know; supported: GRSNCore, LIFCore, NoTAPCore, nn.LSTM")
    raise TypeError(f"{label} is a {type(core).__name__}; supported memory cores: GRSNCore, "
                    "LIFCore, NoTAPCore (policies) and nn.LSTM (sb3-contrib)")


def _consumer_role(head_mlp: nn.Module, head: nn.Module, spike_cols: int,
                   roles: dict[nn.Module, _LinearRole]) -> None:
    """The first Linear fed by a core readout gets its spike columns."""
    if spike_cols <= 0:
        return
    first = _first_linear(head_mlp) or (head if isinstance(head, nn.Linear) else None)
    if first is not None:
        roles[first] = _LinearRole(spike_cols=min(spike_cols, first.in_features))


def _as_array(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got "
                        f"{type(value).__name__}")
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {value.dtype}")
    return value


class _FiringStats:
    """Resets the cores' readout spike counters for the measurement and restores them after,
    so a training-time :class:`policies.FiringRateCallback` is not disturbed."""

    def __init__(self, cores: Sequence[Optional[nn.Module]]):
        self.cores = [c for c in cores if c is not None and hasattr(c, "firing_rate")
                      and hasattr(c, "reset_firing_stats")]
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> "_FiringStats":
        for core in self.cores:
            self.saved.append((core.spike_sum.clone(), core.neuron_steps.clone()))
            core.reset_firing_stats()
        return self

    def rate(self, core: Optional[nn.Module]) -> Optional[float]:
        if core is None or core not in self.cores:
            return None
        return core.firing_rate()

    def __exit__(self, *exc: Any) -> None:
        for core, (spike_sum, steps) in zip(self.cores, self.saved):
            core.spike_sum.copy_(spike_sum)
            core.neuron_steps.copy_(steps)


def estimate_energy(policy: Any, observations: ArrayLike,
                    episode_starts: Optional[ArrayLike] = None,
                    constants: EnergyConstants = EnergyConstants()) -> EnergyReport:
    """Operations and energy **per decision** of ``policy`` on rollout observations.

    The observations go through the policy's own forward pass as one sequence per
    environment (sb3-contrib's ``_process_sequence`` path for recurrent policies): the state
    starts at zero (an episode start) and is carried from step ``t`` to ``t + 1`` of each
    environment, reset where ``episode_starts`` is 1 -- exactly as during the rollout. Actor and
    critic both run once (deterministic actions); every ``nn.Linear`` / ``nn.LSTM`` /
    activation call is counted with the conventions of the module docstring, and the report
    splits the counts into ``core``, ``agent`` (actor path; critic **not** counted) and
    ``agent_with_critic``.

    :param policy: an SB3 ``ActorCriticPolicy`` (PPO ``"MlpPolicy"``) or an sb3-contrib
        ``RecurrentActorCriticPolicy`` (``"MlpLstmPolicy"``, :class:`policies.GRSNPolicy`,
        :class:`policies.LIFPolicy`, :class:`policies.NoTAPPolicy`), or a model (``PPO`` /
        ``RecurrentPPO``) holding one. Its features extractor must be parameter-free or made of
        ``Linear`` layers (the default ``FlattenExtractor``).
    :param observations: ``[T, n_envs, *observation_space.shape]`` (numpy or torch), as the
        policy saw them (e.g. from :func:`collect_observations`; normalised if the env was).
    :param episode_starts: ``[T, n_envs]``, 1 where an episode starts at that step (the state
        is reset before it); ``None``: one episode per environment (starts only at ``t = 0``).
    :param constants: energy per operation.
    :returns: an :class:`EnergyReport`.
    :raises TypeError: not an actor-critic policy, a module it cannot count, non-numeric input.
    :raises ValueError: wrongly shaped or non-finite observations / episode starts.
    """
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    policy = _resolve_policy(policy)
    constants = _check_constants(constants)
    if policy.observation_space.shape is None:
        raise TypeError(f"{type(policy).__name__} has a {type(policy.observation_space).__name__}"
                        " observation space; estimate_energy needs an array observation (Box, "
                        "Discrete, MultiDiscrete, MultiBinary)")
    obs_shape = tuple(policy.observation_space.shape)
    obs = _as_array("observations", observations)
    if obs.ndim != 2 + len(obs_shape) or tuple(obs.shape[2:]) != obs_shape:
        raise ValueError(f"observations must be [T, n_envs, *obs_shape] = [T, n_envs, "
                         f"{', '.join(map(str, obs_shape))}] (obs_shape from the policy's "
                         f"observation space), got shape {tuple(obs.shape)}; for a single "
                         "environment add the axis with observations[:, None]")
    T, n_envs = int(obs.shape[0]), int(obs.shape[1])
    if T == 0 or n_envs == 0:
        raise ValueError(f"observations must hold at least one step of one environment, got "
                         f"shape {tuple(obs.shape)}")
    if not np.all(np.isfinite(obs.astype(np.float64, copy=False))):
        raise ValueError("observations contain NaN or inf; pass the observations the policy "
                         "acted on")
    if episode_starts is None:
        starts = np.zeros((T, n_envs), dtype=np.float32)
        starts[0] = 1.0
    else:
        starts = _as_array("episode_starts", episode_starts).astype(np.float32)
        if starts.shape != (T, n_envs):
            raise ValueError(f"episode_starts must be [T, n_envs] = [{T}, {n_envs}] like the "
                             f"observations' first two axes, got {tuple(starts.shape)}")
        if not np.all((starts == 0) | (starts == 1)):
            raise ValueError("episode_starts must hold 0/1 (or booleans): 1 where an episode "
                             "starts at that step")

    names: dict[nn.Module, str] = {}
    for n, m in policy.named_modules():
        names.setdefault(m, n if n else type(policy).__name__)
    _check_modules(policy, names)

    recurrent = isinstance(policy, RecurrentActorCriticPolicy)
    roles: dict[nn.Module, _LinearRole] = {}
    actor_core = critic_core = None
    if recurrent:
        actor_core = policy.lstm_actor
        critic_core = policy.lstm_critic
        actor_cols = _core_roles(actor_core, names, roles, "policy.lstm_actor")
        critic_cols = _core_roles(critic_core, names, roles, "policy.lstm_critic")
        if critic_core is None:
            critic_cols = actor_cols if policy.shared_lstm else 0
        _consumer_role(policy.mlp_extractor.policy_net, policy.action_net, actor_cols, roles)
        _consumer_role(policy.mlp_extractor.value_net, policy.value_net, critic_cols, roles)

    device = policy.device
    # env-major rows (env 0's T steps, then env 1's ...): sb3-contrib's sequence layout
    flat_obs = torch.as_tensor(np.ascontiguousarray(obs.swapaxes(0, 1)).reshape(
        T * n_envs, *obs_shape), device=device)
    flat_starts = torch.as_tensor(np.ascontiguousarray(starts.swapaxes(0, 1)).reshape(-1),
                                  device=device)

    def call() -> None:
        if recurrent:
            layers, _, hidden = policy.lstm_hidden_state_shape
            z = lambda: torch.zeros(layers, n_envs, hidden, device=device)  # noqa: E731
            states = RNNStates((z(), z()), (z(), z()))
            policy.forward(flat_obs, states, flat_starts, deterministic=True)
        else:
            policy.forward(flat_obs, deterministic=True)

    was_training = policy.training
    policy.set_training_mode(False)
    try:
        with _FiringStats([actor_core, critic_core]) as stats:
            counter = _run_counted(policy, roles, call)
            rate = stats.rate(actor_core)
            critic_rate = stats.rate(critic_core)
    finally:
        policy.set_training_mode(was_training)

    per_decision = 1.0 / (T * n_envs)
    per_module = {k: v.scaled(per_decision) for k, v in counter.counts().items()}
    notes = list(counter.notes)
    core = OpCounts() if recurrent else None
    agent, with_critic = OpCounts(), OpCounts()
    for name, counts in per_module.items():
        in_actor = _under(name, _ACTOR_PREFIXES)
        in_critic = _under(name, _CRITIC_PREFIXES)
        if not (in_actor or in_critic):
            in_actor = True
            notes.append(f"{name} is neither on the actor nor on the critic path of a standard "
                         "policy; counted in both agent scopes")
        if in_actor:
            agent = agent + counts
        with_critic = with_critic + counts
        if (recurrent and _under(name, ("lstm_actor",))
                and not _under(name, ("lstm_actor.shortcut",))):
            core = core + counts
    if recurrent and policy.shared_lstm:
        notes.append("actor and critic share one core: counted once in agent_with_critic")
    return EnergyReport(
        policy_name=type(policy).__name__, n_decisions=T * n_envs, constants=constants,
        core_counts=core, agent_counts=agent, agent_with_critic_counts=with_critic,
        firing_rate=rate, critic_firing_rate=critic_rate, per_module=per_module,
        notes=tuple(notes))


def collect_observations(model: Any, env: Any, n_steps: int,
                         deterministic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Roll ``model`` out in ``env`` for ``n_steps`` steps and return what its policy saw.

    Acts with ``model.predict(obs, state=state, episode_start=starts, deterministic=...)``,
    threading the recurrent state from step to step (SB3's VecEnvs reset a finished episode
    automatically; ``starts`` is that env's ``done`` flag of the previous step, and 1 at the
    first step).

    :param model: an SB3 / sb3-contrib algorithm (``PPO``, ``RecurrentPPO``, ...) with
        ``predict`` and ``policy``.
    :param env: an SB3 ``VecEnv`` (e.g. :func:`policies.make_env`) or a single gymnasium
        ``Env`` (wrapped in a ``DummyVecEnv``). Its observation space must be the model's.
    :param n_steps: steps per environment (``T``), an int >= 1.
    :param deterministic: act deterministically (default) or sample.
    :returns: ``(observations [T, n_envs, *obs_shape], episode_starts [T, n_envs] float32)``,
        ready for :func:`estimate_energy`.
    """
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

    if not (hasattr(model, "predict") and hasattr(model, "policy")):
        raise TypeError(f"model must be an SB3 algorithm (PPO, RecurrentPPO, ...) with predict() "
                        f"and .policy, got {type(model).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
    if isinstance(env, gym.Env):
        single = env
        env = DummyVecEnv([lambda: single])
    if not isinstance(env, VecEnv):
        raise TypeError(f"env must be an SB3 VecEnv (e.g. policies.make_env(env_id, n_envs, "
                        f"seed)) or a gymnasium Env, got {type(env).__name__}")
    want = getattr(model.policy.observation_space, "shape", None)
    if env.observation_space.shape != want:
        raise ValueError(f"env observations have shape {env.observation_space.shape} but the "
                         f"model expects {want}; build the env the model was trained on")
    obs = env.reset()
    if isinstance(obs, dict):
        raise TypeError("dict observations are not supported; flatten them first")
    n_envs = env.num_envs
    starts = np.ones((n_envs,), dtype=bool)
    state = None
    observations, all_starts = [], []
    for _ in range(int(n_steps)):
        action, state = model.predict(obs, state=state, episode_start=starts,
                                      deterministic=deterministic)
        observations.append(np.array(obs, copy=True))
        all_starts.append(starts.astype(np.float32))
        obs, _, dones, _ = env.step(action)
        starts = np.asarray(dones, dtype=bool)
    return np.stack(observations), np.stack(all_starts)


def _check_constants(constants: Optional[EnergyConstants]) -> EnergyConstants:
    if constants is None:
        return EnergyConstants()
    if not isinstance(constants, EnergyConstants):
        raise TypeError(f"constants must be an EnergyConstants, got {type(constants).__name__}; "
                        "e.g. EnergyConstants(mac_pj=4.6, ac_pj=0.9)")
    return constants
