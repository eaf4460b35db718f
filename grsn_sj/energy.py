r"""Operation counts and energy of a network call: the generic counting of grsn_sj.

This module knows ``nn.Linear``, ``nn.LSTM``, activation modules and the per-step operations of
GRSN / LIF neurons; it knows nothing of reinforcement learning. The energy per decision of a
Stable-Baselines3 policy (which modules are the deployed actor, rollouts, the report) is built
on it in ``policies.energy`` (``estimate_energy``, ``collect_observations``, ``EnergyReport``).

Public API
----------
* :class:`EnergyConstants` -- energy per operation (default 45 nm, Horowitz 2014: 4.6 pJ per
  MAC, 0.9 pJ per AC, 0 pJ per activation), user-changeable.
* :func:`count_ops` -- total operations of one ``nn.Module`` call, with the spike-carrying input
  columns of each ``nn.Linear`` given explicitly (``spike_columns``) or the full counting of
  each ``nn.Linear`` declared (``counting``, e.g. from :func:`grsn_stack_counting`).
* :func:`count_ops_by_module` -- the same counting, per module name, for any call.
* :class:`LinearCounting` -- how one ``nn.Linear`` is counted (spike columns, the neurons its
  outputs drive); :class:`CoreCounting` -- what a memory core declares about its counting;
  :func:`grsn_stack_counting` -- that declaration for a :class:`~grsn_sj.RecurrentGRSN`.
* :class:`OpCounts`, :class:`EnergyScope`, :class:`NeuronOps` and the per-neuron tables
  :data:`GRSN_NEURON_OPS`, :data:`LIF_NEURON_OPS`, :data:`LSTM_CELL_OPS`.

Example::

    >>> import torch
    >>> from grsn_sj import RecurrentGRSN
    >>> from grsn_sj.energy import count_ops, grsn_stack_counting
    >>> core = RecurrentGRSN(2, 4)
    >>> c = count_ops(core, torch.randn(3, 1, 2), counting=grsn_stack_counting(core))
    >>> c.synaptic_macs, c.neuron_macs   # 3 steps x Linear(2, 8); 3 x 4 neurons x 4 MACs
    (48.0, 48.0)

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
  (``nn.GRU``: ``3 * H * (in + H)``)
  (``W_ih x + W_hh h``; the two products accumulate into the same sums), plus ``H * P`` for a
  projection ``proj_size = P`` (then the recurrent width is ``P``); both directions when
  bidirectional.
* ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` (a CNN features extractor, e.g. SB3's
  ``NatureCNN`` in the ``Cnn`` policies) run on real values: ``in_channels / groups *
  prod(kernel_size)`` MACs per output element.
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
from typing import Any, Callable, Mapping, NamedTuple, Optional

import torch
import torch.nn as nn
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
    "GRU_CELL_OPS",
    "ACTIVATION_MODULES",
    "OpCounts",
    "EnergyScope",
    "LinearCounting",
    "CoreCounting",
    "ModuleOpCounts",
    "grsn_stack_counting",
    "check_constants",
    "count_ops",
    "count_ops_by_module",
]

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
#: GRU cell per hidden unit (element-wise part, PyTorch's equations): ``r * (W_hn h + b_hn)``
#: and ``(1 - z) * n + z * h`` = 3 MACs; sigmoid r, sigmoid z, tanh n = 3 activations.
GRU_CELL_OPS = NeuronOps(macs=3, acs=0, activations=3)

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
        c = check_constants(constants)
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



# --------------------------------------------------------------------------------------------
# how a module is counted (declared by the module's owner)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearCounting:
    """How one ``nn.Linear`` is counted.

    :param spike_columns: the first ``spike_columns`` input columns carry spikes of a spiking
        layer (``nnz * out_features`` ACs when the observed values are all 0/1, else MACs and a
        note); the other columns are real (``rows * cols * out_features`` MACs). 0: all real.
    :param neuron: the neuron model whose updates this Linear's outputs drive (``None``: none);
        one update per ``outputs_per_neuron`` outputs, so the count follows the real number of
        steps.
    :param outputs_per_neuron: 2 for a GRSN gate projection ``[forget | input]``, 1 for LIF.
    :param neuron_module: the module under whose name the neuron updates are filed (e.g. the
        GRSN node); ``None``: the Linear itself.
    :param neuron_label: appended to that name (e.g. ``" (LIF neurons)"``).
    """

    spike_columns: int = 0
    neuron: Optional[NeuronOps] = None
    outputs_per_neuron: int = 1
    neuron_module: Optional[nn.Module] = None
    neuron_label: str = ""


_REAL = LinearCounting()


@dataclass(frozen=True)
class CoreCounting:
    """What a memory core (e.g. ``policies.GRSNCore``) declares about how it is counted.

    :param linears: ``{linear: LinearCounting}`` for the core's Linear layers that are not plain
        real-input layers (spike inputs, neuron updates); any other Linear counts as real input.
    :param readout_spike_columns: the core's output starts with this many spike columns (its
        readout layer's spikes; 0 for a real-valued output such as a spike rate), which the
        first Linear fed by the output counts as spike input.
    :param outside_core: submodules of the core that are not its memory (e.g. an observation
        shortcut embedding): counted with the agent but not in the core's own scope.
    """

    linears: Mapping[nn.Module, LinearCounting] = field(default_factory=dict)
    readout_spike_columns: int = 0
    outside_core: tuple[nn.Module, ...] = ()


def grsn_stack_counting(stack: nn.Module) -> dict[nn.Module, LinearCounting]:
    """The counting of a :class:`~grsn_sj.RecurrentGRSN`'s layers: layer ``l``'s gate projection
    ``fc`` drives GRSN neurons (:data:`GRSN_NEURON_OPS`, two outputs per neuron, filed under the
    layer's node) and is fed by spikes from layer 2 on; the ``spike_recurrence`` weight
    ``recurrent`` is fed by the layer's own spikes."""
    counting: dict[nn.Module, LinearCounting] = {}
    for i, layer in enumerate(stack.layers):
        counting[layer.fc] = LinearCounting(
            spike_columns=0 if i == 0 else layer.fc.in_features, neuron=GRSN_NEURON_OPS,
            outputs_per_neuron=2, neuron_module=layer.node)
        recurrent = getattr(layer, "recurrent", None)
        if isinstance(recurrent, nn.Linear):
            counting[recurrent] = LinearCounting(spike_columns=recurrent.in_features)
    return counting


# --------------------------------------------------------------------------------------------
# the counter (a SpikingJelly ModuleCounter)
# --------------------------------------------------------------------------------------------

class _OpCounter(ModuleCounter):
    """SpikingJelly ``ModuleCounter`` with rules for ``nn.Linear``, ``nn.LSTM`` and the
    activation modules; accumulates an :class:`OpCounts` per module name in ``self.ops`` and
    returns the total operation count (for SpikingJelly's scope records)."""

    def __init__(self, names: Mapping[nn.Module, str],
                 counting: Mapping[nn.Module, LinearCounting]):
        super().__init__()
        self.names = names
        self.counting = counting
        self.ops: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.notes: list[str] = []
        self.rules = {("forward", nn.Linear): self._linear, ("forward", nn.LSTM): self._rnn,
                      ("forward", nn.GRU): self._rnn}
        for conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            self.rules[("forward", conv)] = self._conv
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
        role = self.counting.get(module, _REAL)
        in_f, out_f = module.in_features, module.out_features
        rows = x.numel() // in_f if in_f else 0
        k = min(role.spike_columns, in_f)
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
            key = self.names.get(role.neuron_module if role.neuron_module is not None
                                 else module, type(module).__name__) + role.neuron_label
            total += self._add(key, neu_mac=n * role.neuron.macs,
                               neu_ac=n * role.neuron.acs, act=n * role.neuron.activations)
        return total

    def _rnn(self, module: nn.RNNBase, args: tuple, kwargs: dict, out: Any) -> int:
        """``nn.LSTM`` (4 gates, :data:`LSTM_CELL_OPS`) or ``nn.GRU`` (3 gates,
        :data:`GRU_CELL_OPS`): ``gates * H * (in + H)`` MACs per step, layer and direction."""
        gates, cell = (4, LSTM_CELL_OPS) if isinstance(module, nn.LSTM) else (3, GRU_CELL_OPS)
        x = self._first_input(args, kwargs)
        if isinstance(x, nn.utils.rnn.PackedSequence):
            steps = int(x.data.shape[0])
        else:
            steps = x.numel() // module.input_size
        dirs = 2 if module.bidirectional else 1
        hidden, proj = module.hidden_size, getattr(module, "proj_size", 0)
        width = proj if proj > 0 else hidden
        syn_mac = 0
        for layer in range(module.num_layers):
            in_l = module.input_size if layer == 0 else width * dirs
            syn_mac += dirs * steps * (gates * hidden * (in_l + width) + (hidden * proj))
        cells = dirs * steps * module.num_layers * hidden
        return self._add(self.names.get(module, type(module).__name__), syn_mac=syn_mac,
                         neu_mac=cells * cell.macs, neu_ac=cells * cell.acs,
                         act=cells * cell.activations)

    def _conv(self, module: nn.modules.conv._ConvNd, args: tuple, kwargs: dict,
              out: torch.Tensor) -> int:
        """A convolution on real values (an image): every output element costs
        ``in_channels / groups * prod(kernel_size)`` MACs."""
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return self._add(self.names.get(module, type(module).__name__),
                         syn_mac=out.numel() * per_output)

    def _activation(self, module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
        return self._add(self.names.get(module, type(module).__name__),
                         act=out.numel() if isinstance(out, torch.Tensor) else 0)

    def counts(self) -> dict[str, OpCounts]:
        return {k: OpCounts(*map(float, v)) for k, v in self.ops.items()}


class ModuleOpCounts(NamedTuple):
    """What :func:`count_ops_by_module` returns: totals per module name (neuron updates under the
    name of the module their :class:`LinearCounting` names) and remarks about the counting."""

    per_module: dict[str, OpCounts]
    notes: tuple[str, ...]


def count_ops_by_module(model: nn.Module, call: Callable[[], Any],
                        counting: Optional[Mapping[nn.Module, LinearCounting]] = None,
                        ) -> ModuleOpCounts:
    """Count the operations of ``call()`` (which runs ``model`` or parts of it) per module of
    ``model``, under ``torch.no_grad()``, with this module's conventions.

    :param model: the network whose modules are counted (names as in ``named_modules``; the
        root is named after its class).
    :param call: a function of no argument that runs the network.
    :param counting: ``{linear: LinearCounting}``; any other Linear has a real input.
    """
    names: dict[nn.Module, str] = {}
    for n, m in model.named_modules():
        names.setdefault(m, n if n else type(m).__name__)
    counter = _OpCounter(names, counting or {})
    with torch.no_grad(), ModuleCounterMode([counter], model=model):
        call()
    return ModuleOpCounts(counter.counts(), tuple(counter.notes))


# --------------------------------------------------------------------------------------------
# generic entry point
# --------------------------------------------------------------------------------------------

def count_ops(module: nn.Module, *inputs: Any,
              spike_columns: Optional[Mapping[nn.Module, int]] = None,
              counting: Optional[Mapping[nn.Module, LinearCounting]] = None) -> OpCounts:
    """Total operations of one call ``module(*inputs)`` (not per decision), with this module's
    conventions (see the module docstring).

    Counted: every ``nn.Linear`` (MACs for real input columns, ACs for spike columns), every
    ``nn.LSTM`` (gate MACs + :data:`LSTM_CELL_OPS` per hidden unit and step) and every
    activation module in :data:`ACTIVATION_MODULES`. Neuron updates of spiking layers are
    counted where a :class:`LinearCounting` in ``counting`` declares them (e.g.
    :func:`grsn_stack_counting` for a :class:`~grsn_sj.RecurrentGRSN`).

    :param module: the network (called once under ``torch.no_grad()``).
    :param inputs: its positional arguments.
    :param spike_columns: ``{linear: k}``: the first ``k`` input columns of ``linear`` carry
        spikes (``k = linear.in_features`` for a fully spiking input). They are counted as ACs
        (``nonzero * out_features``) when the observed values are all 0/1, else as MACs. Any
        other ``Linear`` input is real-valued (MACs).
    :param counting: ``{linear: LinearCounting}``, the full declaration (spike columns and the
        neuron updates a Linear drives); a Linear in both arguments takes ``spike_columns``'s
        ``k`` with ``counting``'s neurons.

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
    members = set(map(id, module.modules()))
    roles: dict[nn.Module, LinearCounting] = {}
    for lin, role in (counting or {}).items():
        if not isinstance(lin, nn.Linear) or not isinstance(role, LinearCounting):
            raise TypeError("counting must map nn.Linear modules of `module` to LinearCounting, "
                            f"got {type(lin).__name__} -> {type(role).__name__}")
        if id(lin) not in members:
            raise ValueError("counting names an nn.Linear that is not part of `module`")
        roles[lin] = role
    for lin, k in (spike_columns or {}).items():
        if not isinstance(lin, nn.Linear):
            raise TypeError("spike_columns keys must be nn.Linear modules of `module`, got "
                            f"{type(lin).__name__}")
        if id(lin) not in members:
            raise ValueError("spike_columns names an nn.Linear that is not part of `module`")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not (
                0 <= k <= lin.in_features):
            raise ValueError(f"spike_columns values must be ints in [0, in_features="
                             f"{lin.in_features}], got {k!r}")
        roles[lin] = dataclasses.replace(roles.get(lin, _REAL), spike_columns=int(k))
    per_module, _ = count_ops_by_module(module, lambda: module(*inputs), roles)
    total = OpCounts()
    for c in per_module.values():
        total = total + c
    return total


def check_constants(constants: Optional[EnergyConstants]) -> EnergyConstants:
    """``constants`` (``EnergyConstants()`` for None) if it is an :class:`EnergyConstants`, else a
    TypeError naming it."""
    if constants is None:
        return EnergyConstants()
    if not isinstance(constants, EnergyConstants):
        raise TypeError(f"constants must be an EnergyConstants, got {type(constants).__name__}; "
                        "e.g. EnergyConstants(mac_pj=4.6, ac_pj=0.9)")
    return constants

