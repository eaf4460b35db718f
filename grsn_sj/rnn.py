"""An ``nn.LSTM``-like multi-layer GRSN for recurrent policies (explicit state, episode starts)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from spikingjelly.activation_based import surrogate

from .functional import (
    FiniteCheck,
    ForgetBias,
    check_episode_starts,
    check_float_input,
    check_positive_int,
    check_state_dtype,
    initial_membrane,
)
from .neuron import GRSN

__all__ = ["RecurrentGRSN", "RecurrentGRSNOutput"]

State = tuple[torch.Tensor, torch.Tensor]


class RecurrentGRSNOutput(NamedTuple):
    """What :meth:`RecurrentGRSN.forward_sequence` returns.

    output: ``[T, N, hidden_size]`` spikes of the last layer (what ``forward`` returns).
    membrane: ``[T, N, hidden_size]`` the last layer's membrane before fire/reset, ``h_t``
        (real-valued; a non-spiking readout of the neurons' state).
    state: ``(v, c)``, each ``[num_layers, N, hidden_size]``, the state to carry on.
    """

    output: torch.Tensor
    membrane: torch.Tensor
    state: State


class RecurrentGRSN(nn.Module):
    """Stacked GRSN layers with explicit state, the drop-in memory core of a recurrent policy.

    Layer ``l`` is ``Linear(in_l, 2H) -> GRSNNode`` (a :class:`~grsn_sj.GRSN` block); layer 1
    sees the input, layer ``l + 1`` the spikes of layer ``l``. The whole sequence of each layer
    goes through the fused multi-step op in one call (numba on the CPU, CuPy on CUDA), including
    the episode-start resets.

    ``forward(input, state=None, episode_starts=None) -> (output, (v, c))``:

    * ``input``: ``[T, N, input_size]`` (time first, like ``nn.LSTM`` with
      ``batch_first=False``).
    * ``state``: ``None`` (initial state) or ``(v, c)``, each ``[num_layers, N, hidden_size]``:
      membrane after reset (before reset with ``spike_recurrence``, see below) and gated current
      per layer -- the two slots an LSTM's ``(h, c)`` occupies, so RecurrentPPO's state buffers
      fit unchanged.
    * ``episode_starts``: ``None`` or ``[T, N]``; where nonzero, that row's state (every layer)
      goes back to its initial value before step ``t``.
    * ``output``: spikes of the last layer, ``[T, N, hidden_size]``.

    ``forward_sequence`` (same arguments) returns a :class:`RecurrentGRSNOutput` that also holds
    the last layer's membrane before reset at every step, for a non-spiking readout.

    The module keeps no state between calls (unlike a SpikingJelly node in stateful use): the
    caller threads ``(v, c)`` like an ``nn.LSTM``'s ``(h, c)``.

    ``spike_recurrence=True`` (spec §3 variant, off by default): every layer is a
    ``GRSN(..., spike_recurrence=True)``, whose gates also see its own previous spikes through
    its bias-free ``layers[l].recurrent`` (initialised to zero; a Python loop over ``T``, no
    fused op). **The first state slot then holds the membrane before reset** ``h`` instead of
    ``v`` (see :class:`~grsn_sj.GRSN`: ``v`` alone does not determine the previous spike);
    :attr:`state_names` says which, and zeros (``initial_state``) are an episode start either
    way.

    :param input_size: features of the input.
    :param hidden_size: neurons per layer ``H``.
    :param num_layers: stacked GRSN layers.
    :param bias: gate projections with bias.
    :param forget_bias: initial forget-gate bias of every layer (0 = the paper): one number, or a
        ``(low, high)`` pair spaced evenly over each layer's neurons (see :class:`~grsn_sj.GRSN`).
    :param input_bias: added to the initial input-gate bias of every layer (see
        :class:`~grsn_sj.GRSN`).
    :param tau, v_threshold, v_reset, surrogate_function, detach_reset, learnable_tau, backend:
        neuron options, see :class:`~grsn_sj.GRSNNode`.
    :param spike_recurrence: feed each layer's previous spikes into its gates (see above).

    Example::

        >>> import torch
        >>> from grsn_sj import RecurrentGRSN
        >>> core = RecurrentGRSN(4, 32, num_layers=2)
        >>> out, (v, c) = core(torch.randn(16, 8, 4))
        >>> out.shape, v.shape
        (torch.Size([16, 8, 32]), torch.Size([2, 8, 32]))
        >>> starts = torch.zeros(16, 8); starts[5, 0] = 1   # row 0 starts a new episode at t=5
        >>> out, state = core(torch.randn(16, 8, 4), (v, c), episode_starts=starts)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        forget_bias: ForgetBias = 0.0,
        input_bias: float = 0.0,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = None,
        surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(),
        detach_reset: bool = False,
        learnable_tau: bool = False,
        backend: str = "auto",
        spike_recurrence: bool = False,
    ):
        super().__init__()
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.layers = nn.ModuleList(
            GRSN(input_size if i == 0 else hidden_size, hidden_size, bias=bias,
                 forget_bias=forget_bias, input_bias=input_bias,
                 spike_recurrence=spike_recurrence, tau=tau, v_threshold=v_threshold,
                 v_reset=v_reset, surrogate_function=surrogate_function,
                 detach_reset=detach_reset, learnable_tau=learnable_tau, step_mode="m",
                 backend=backend)
            for i in range(num_layers)
        )
        self.spike_recurrence = spike_recurrence

    @property
    def state_names(self) -> tuple[str, str]:
        """What the two state slots hold: ``("v", "c")``, or ``("h", "c")`` with spike
        recurrence (membrane before reset in the first slot)."""
        return self.layers[0].state_names

    @property
    def v_reset(self) -> Optional[float]:
        return self.layers[0].node.v_reset

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        """The state at an episode start: first slot (``v``, or ``h`` with spike recurrence)
        = 0 (or ``v_reset``), ``c`` = 0."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        v = torch.full(shape, initial_membrane(self.v_reset), device=device, dtype=dtype)
        return v, torch.zeros(shape, device=device, dtype=dtype)

    def _check(self, x: torch.Tensor, state: Optional[State],
               episode_starts: Optional[torch.Tensor]) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"input must be [T, N, input_size={self.input_size}], got shape "
                             f"{tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("input has T = 0 time steps; pass at least one step")
        check_float_input(x, "RecurrentGRSN", self.layers[0].fc.weight.dtype)
        if state is not None:
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise TypeError("state must be None or a tuple (v, c) of two tensors")
            want = (self.num_layers, x.shape[1], self.hidden_size)
            for name, s in zip(self.state_names, state):
                if not isinstance(s, torch.Tensor) or tuple(s.shape) != want:
                    got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                    raise ValueError(f"state {name} must be [num_layers, N, hidden_size] = "
                                     f"{want}, got {got}")
                check_state_dtype(s, name, x)
        if episode_starts is not None:
            check_episode_starts(episode_starts, x.shape[:2], "[T, N]")

    def forward(self, input: torch.Tensor, state: Optional[State] = None,
                episode_starts: Optional[torch.Tensor] = None):
        out = self.forward_sequence(input, state, episode_starts)
        return out.output, out.state

    def forward_sequence(self, input: torch.Tensor, state: Optional[State] = None,
                         episode_starts: Optional[torch.Tensor] = None) -> RecurrentGRSNOutput:
        """Like ``forward``, and also the last layer's membrane before reset at every step."""
        self._check(input, state, episode_starts)
        if state is None:
            state = self.initial_state(input.shape[1], input.device, input.dtype)
        x = input
        vs, cs = [], []
        # NaN / inf in the input: the first layer's fused op probes its gate pre-activations and
        # names the bad element of `input` (one sum first on the other backends); deeper layers
        # see spikes
        check = FiniteCheck(input, "RecurrentGRSN", "input")
        for i, layer in enumerate(self.layers):
            seq = layer.multi_step_sequence(x, state[0][i], state[1][i], episode_starts,
                                            check_input=check if i == 0 else False)
            x, h_seq = seq.spike_seq, seq.h_seq
            vs.append(seq.v)
            cs.append(seq.c)
        return RecurrentGRSNOutput(x, h_seq, (torch.stack(vs), torch.stack(cs)))
