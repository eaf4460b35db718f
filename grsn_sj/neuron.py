"""The GRSN neuron as a SpikingJelly 2.x node, and the Linear + GRSN block.

:class:`GRSNNode` follows SpikingJelly 2.0's node contract: a pure
``single_step_functional_forward`` with explicit states (it calls
:func:`grsn_sj.functional.grsn_step`), ``materialize_states`` for scalar or stale memories,
``register_memory`` for ``v`` and ``c``, step modes ``'s'`` and ``'m'``, and a fused
``multi_step_functional_forward`` (numba on the CPU, CuPy on CUDA) that is used only when the
subclass did not override the single step (as SpikingJelly's ``LIFNode`` guards it).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron import BaseNode

from .functional import (
    FiniteCheck,
    ForgetBias,
    GRSNSequence,
    apply_episode_start,
    beta_from_tau,
    check_episode_starts,
    check_float_input,
    check_gate_dim,
    check_positive_int,
    check_tau,
    check_threshold,
    check_v_reset,
    decay_logits,
    finite_check,
    forget_bias_init,
    grsn_charge,
    grsn_fire_reset,
    grsn_step,
    initial_membrane,
)
from .ops import check_backend, grsn_multi_step

__all__ = ["GRSNNode", "GRSN"]


class GRSNNode(BaseNode):
    r"""Gated recurrent spiking neuron (GRSN, Qin et al. 2024) as a SpikingJelly node.

    The input holds the two gate pre-activations concatenated on the last dimension,
    ``[..., 2H] = [forget | input]`` (a ``Linear(in, 2H)`` in front computes them; see
    :class:`GRSN`); the output is spikes ``[..., H]``. Per neuron and step:

    .. math::

        F_t = \sigma(a^f_t),\quad I_t = \mathrm{relu}(a^i_t),\quad
        c_t = F_t c_{t-1} + (1 - F_t) I_t,\quad
        h_t = \beta v_{t-1} + (1 - \beta) c_t,\quad
        s_t = \Theta(h_t - \vartheta)

    then soft reset ``v_t = h_t - \vartheta s_t`` (``v_reset=None``) or hard reset
    ``v_t = (1 - s_t) h_t + s_t v_{reset}``. Memories: ``v`` (membrane after reset) and ``c``
    (gated current), both shaped like the output.

    :param tau: membrane time constant, ``beta = 1 - 1/tau`` (>= 1; the paper uses 2).
    :param v_threshold: firing threshold (> 0). A neuron fires when ``h >= v_threshold``.
    :param v_reset: ``None`` for soft reset (default, as in the paper), a float for hard reset.
    :param surrogate_function: SpikingJelly surrogate; ``ATan`` and ``Sigmoid`` have fused kernels,
        any other runs through the torch reference.
    :param detach_reset: detach the spike used in the reset from the graph.
    :param learnable_tau: learn a per-neuron decay ``beta = sigmoid(w)``, ``w`` initialised so
        that ``beta = 1 - 1/tau``; needs ``size`` (and ``tau > 1``).
    :param size: number of neurons ``H``; required when ``learnable_tau``; when given, the input's
        last dimension is checked to be ``2 * size``.
    :param step_mode: ``'s'`` (input ``[N, *, 2H]``) or ``'m'`` (input ``[T, N, *, 2H]``).
    :param backend: ``'auto'``, ``'torch'`` (reference loop), ``'numba'`` (fused CPU op) or
        ``'cupy'`` (fused CUDA op); used in multi-step mode.
    :param store_v_seq: as in SpikingJelly (records the post-reset membrane per step; this runs
        the per-step path).

    Episode starts: ``forward(x, episode_starts)`` takes an optional mask shaped like the output
    without its last dimension (``[N, *]`` single-step, ``[T, N, *]`` multi-step); where it is
    nonzero the state goes back to its initial value (``v`` to 0, or ``v_reset`` for hard reset;
    ``c`` to 0) before that step. As with SpikingJelly's ``BaseNode``, a stored state whose shape
    does not match the input (a new batch size) is replaced by the initial state.

    Example::

        >>> import torch
        >>> from spikingjelly.activation_based import functional
        >>> from grsn_sj import GRSNNode
        >>> node = GRSNNode(step_mode="m")
        >>> spikes = node(torch.randn(8, 4, 2 * 16))   # T=8, N=4, H=16
        >>> spikes.shape
        torch.Size([8, 4, 16])
        >>> functional.reset_net(node)
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = None,
        surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(),
        detach_reset: bool = False,
        learnable_tau: bool = False,
        size: Optional[int] = None,
        step_mode: str = "s",
        backend: str = "auto",
        store_v_seq: bool = False,
    ):
        tau = check_tau(tau)
        v_threshold = check_threshold(v_threshold)
        v_reset = check_v_reset(v_reset)
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, got {type(detach_reset).__name__}")
        if not callable(surrogate_function):
            raise TypeError("surrogate_function must be a SpikingJelly surrogate module, e.g. "
                            "surrogate.ATan()")
        if size is not None:
            check_positive_int(size, "size (number of neurons H)")
        if learnable_tau and size is None:
            raise ValueError("learnable_tau=True needs size=H (the number of neurons) to create "
                             "one decay parameter per neuron")
        w0 = decay_logits(tau, size, "learnable_tau") if learnable_tau else None
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq)
        self.register_memory("c", 0.0)
        self.tau = tau
        self.size = size
        self.learnable_tau = bool(learnable_tau)
        self.backend = check_backend(backend)
        if self.learnable_tau:
            self.w = nn.Parameter(w0)

    # ---------------------------------------------------------------- parameters
    @property
    def beta(self):
        """Membrane decay: ``sigmoid(w)`` (``[H]`` tensor) if learnable, else ``1 - 1/tau``."""
        if self.learnable_tau:
            return torch.sigmoid(self.w)
        return beta_from_tau(self.tau)

    def extra_repr(self):
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"detach_reset={self.detach_reset}, learnable_tau={self.learnable_tau}, "
                f"size={self.size}, surrogate={type(self.surrogate_function).__name__}"
                f"(alpha={getattr(self.surrogate_function, 'alpha', None)}), "
                f"step_mode={self.step_mode}, backend={self.backend}")

    # ---------------------------------------------------------------- states
    def _check_input(self, x: torch.Tensor, shape: tuple) -> None:
        """``x``: one step of the input; ``shape``: the shape the user passed (quoted)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GRSNNode expects a torch.Tensor, got {type(x).__name__}")
        check_float_input(x, "GRSNNode")
        two_h = 2 * check_gate_dim(x, "GRSNNode input", shape)
        if self.size is not None and two_h != 2 * self.size:
            raise ValueError(f"GRSNNode(size={self.size}) expects a last dimension of "
                             f"{2 * self.size}, got {two_h} (input shape {tuple(shape)})")

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GRSNNode expects a torch.Tensor, got {type(x).__name__}")
        shape = tuple(x.shape)
        if step_mode == "m":
            if x.dim() < 2 or x.shape[0] == 0:
                raise ValueError(f"multi-step input must be [T, N, ..., 2H] with T >= 1, got "
                                 f"shape {shape}")
            x = x[0]
        self._check_input(x, shape)
        shape = (*x.shape[:-1], x.shape[-1] // 2)
        out = []
        for value, init in zip(states, (initial_membrane(self.v_reset), 0.0)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                value = torch.full(shape, init, dtype=x.dtype, device=x.device)
            elif value.dtype != x.dtype or value.device != x.device:
                value = value.to(dtype=x.dtype, device=x.device)
            out.append(value)
        return tuple(out)

    def _check_mask(self, mask: torch.Tensor, x: torch.Tensor) -> None:
        check_episode_starts(mask, x.shape[:-1], "(the input's shape without its last dimension)")

    # ---------------------------------------------------------------- functional forward
    def single_step_functional_forward(self, inputs, states, **kwargs):
        """One step with explicit state: ``inputs = (x,)`` or ``(x, episode_start)``,
        ``states = (v, c)``; returns ``((spike,), (v, c))``."""
        x = inputs[0]
        v, c = states
        if len(inputs) > 1:
            self._check_mask(inputs[1], x)
            v, c = apply_episode_start(v, c, inputs[1], self.v_reset)
        hidden = x.shape[-1] // 2
        spike, v, c = grsn_step(x[..., :hidden], x[..., hidden:], v, c, self.beta,
                                self.v_threshold, self.v_reset, self.surrogate_function,
                                self.detach_reset)
        return (spike,), (v, c)

    def _step_overridden(self) -> bool:
        return (type(self).single_step_functional_forward
                is not GRSNNode.single_step_functional_forward)

    def multi_step_functional_forward(self, inputs, states,
                                      check_input: Union[bool, FiniteCheck, None] = False,
                                      **kwargs):
        """``T`` steps with explicit state through the fused op (``inputs = (x_seq,)`` or
        ``(x_seq, episode_starts)``); a subclass that overrides the single step gets the
        per-step loop over its own step instead. ``check_input`` as in
        :meth:`multi_step_sequence` (``False`` here: the module forward passes its check)."""
        if self._step_overridden():
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        mask = inputs[1] if len(inputs) > 1 else None
        seq = self.multi_step_sequence(inputs[0], states[0], states[1], mask,
                                       check_input=check_input)
        return (seq.spike_seq,), (seq.v, seq.c)

    def multi_step_sequence(self, x_seq: torch.Tensor, v: torch.Tensor, c: torch.Tensor,
                            episode_starts: Optional[torch.Tensor] = None,
                            check_input: Union[bool, FiniteCheck, None] = True) -> GRSNSequence:
        """The fused op's whole result over ``T`` steps with explicit state: spikes, membrane
        before reset ``h_seq``, gated current ``c_seq`` and the final ``(v, c)`` (a
        :class:`~grsn_sj.functional.GRSNSequence`), for callers that read more than the spikes
        (e.g. a membrane readout). ``x_seq`` is ``[T, *batch, 2H]``; ``episode_starts``
        ``[T, *batch]`` or ``None``; ``check_input``: raise a ValueError on a NaN / inf in
        ``x_seq`` (``False`` for a caller that checked its own input; a
        :class:`~grsn_sj.functional.FiniteCheck` for a caller whose own input it names: see
        :func:`~grsn_sj.ops.grsn_multi_step`, whose CPU kernel probes for it at no extra
        read of the input).

        :raises TypeError: the subclass overrides the single step (there is no fused op for it).
        """
        if self._step_overridden():
            raise TypeError(f"{type(self).__name__} overrides single_step_functional_forward, so "
                            "the fused op does not apply; use multi_step_functional_forward")
        return grsn_multi_step(x_seq, v, c, self.beta, self.v_threshold, self.v_reset,
                               self.surrogate_function, self.detach_reset,
                               reset_mask=episode_starts, backend=self.backend,
                               check_input=finite_check(check_input, x_seq, "GRSNNode", "x_seq"))

    # ---------------------------------------------------------------- module forward
    # ``check_input`` of the two forwards: True (default) raises a ValueError naming the first
    # NaN / inf of the input; a FiniteCheck is the check of a caller's own input (GRSN's, before
    # its Linear), which the fused CPU op runs only when its kernel's probe sees a NaN / inf.
    def single_step_forward(self, x: torch.Tensor, episode_starts: Optional[torch.Tensor] = None,
                            check_input: Union[bool, FiniteCheck, None] = True):
        check = finite_check(check_input, x, "GRSNNode", "x")
        if check is not None:
            check.with_gates(x)
        args = () if episode_starts is None else (episode_starts,)
        return super().single_step_forward(x, *args)

    def multi_step_forward(self, x_seq: torch.Tensor,
                           episode_starts: Optional[torch.Tensor] = None,
                           check_input: Union[bool, FiniteCheck, None] = True):
        check = finite_check(check_input, x_seq, "GRSNNode", "x")
        args = () if episode_starts is None else (episode_starts,)
        if self.store_v_seq or self._step_overridden():  # per-step paths: no fused op
            if check is not None:
                check.with_gates(x_seq)
            return super().multi_step_forward(x_seq, *args)
        return super().multi_step_forward(x_seq, *args, check_input=check)


class GRSN(nn.Module):
    """``Linear(in_features, 2 * hidden_features)`` followed by a :class:`GRSNNode`.

    The block a SpikingJelly user drops into ``nn.Sequential``: input ``[N, in]`` (step mode
    ``'s'``) or ``[T, N, in]`` (``'m'``), output spikes with ``hidden_features`` on the last
    dimension. ``functional.reset_net`` / ``set_step_mode`` reach its node.

    ``spike_recurrence=True`` (spec §3 variant, off by default; the authors' code has it
    commented out): the gates also see the layer's own previous spikes, ``[a_f | a_i] =
    W x_t + U o_{t-1}``, with ``U`` the bias-free ``Linear(H, 2H)`` :attr:`recurrent`
    (initialised to zero, so the variant starts as the plain GRSN). That needs a matmul per step,
    so the layer runs a Python loop over ``T`` (the same :func:`~grsn_sj.functional.grsn_charge`
    / :func:`~grsn_sj.functional.grsn_fire_reset` math, no fused op).

    **The first state slot** (``node.v`` in stateful use, the ``v`` argument of
    :meth:`multi_step_sequence`): the membrane *after* reset ``v`` in the plain GRSN; with
    ``spike_recurrence`` the membrane *before* reset ``h_{t-1}``, from which both the previous
    spike ``o_{t-1} = Θ(h_{t-1} - θ)`` and the post-reset membrane follow -- two tensors then
    still hold the whole state (``v`` alone does not determine the previous spike). In both
    cases the initial value is ``initial_membrane(v_reset)`` (0 for soft reset), so a reset
    state means the same thing. :attr:`state_names` says which: ``("v", "c")`` or
    ``("h", "c")``.

    :param in_features: input features.
    :param hidden_features: number of GRSN neurons ``H``.
    :param bias: whether the gate projection has a bias.
    :param forget_bias: initial forget-gate bias (0 as in the paper; positive values make the
        gated current keep more of its past at initialisation): one number for every neuron, or
        a ``(low, high)`` pair spaced evenly over the neurons, i.e. a range of memory time
        scales (:func:`~grsn_sj.functional.forget_bias_init`).
    :param input_bias: added to the input pre-activation's initial bias (0 = PyTorch's default
        init; about 1 makes the neurons fire at initialisation for inputs of order 1, since the
        steady-state membrane is ``relu(a_i)`` and the threshold is 1).
    :param spike_recurrence: feed the layer's previous spikes into its gates (see above).
    :param node_kwargs: everything :class:`GRSNNode` accepts (tau, v_threshold, v_reset,
        surrogate_function, detach_reset, learnable_tau, step_mode, backend).

    Example::

        >>> import torch, torch.nn as nn
        >>> from spikingjelly.activation_based import functional
        >>> from grsn_sj import GRSN
        >>> net = nn.Sequential(GRSN(4, 32, step_mode="m"), nn.Linear(32, 2))
        >>> net(torch.randn(10, 3, 4)).shape
        torch.Size([10, 3, 2])
        >>> functional.reset_net(net)
    """

    def __init__(self, in_features: int, hidden_features: int, bias: bool = True,
                 forget_bias: ForgetBias = 0.0, input_bias: float = 0.0,
                 spike_recurrence: bool = False, **node_kwargs):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.hidden_features = check_positive_int(hidden_features, "hidden_features")
        if not isinstance(spike_recurrence, bool):
            raise TypeError(f"spike_recurrence must be a bool, got "
                            f"{type(spike_recurrence).__name__}")
        self.fc = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        if bias:
            with torch.no_grad():
                self.fc.bias[:hidden_features].copy_(
                    forget_bias_init(forget_bias, hidden_features))
                self.fc.bias[hidden_features:].add_(float(input_bias))
        elif forget_bias_init(forget_bias, hidden_features).any() or input_bias:
            raise ValueError("forget_bias / input_bias need bias=True")
        self.node = GRSNNode(size=hidden_features, **node_kwargs)
        self.spike_recurrence = spike_recurrence
        #: ``U``, the bias-free ``Linear(H, 2H)`` of the previous spikes (``None`` without
        #: spike recurrence).
        self.recurrent: Optional[nn.Linear] = None
        if spike_recurrence:
            # zero-initialised, so it draws nothing from the random generator (the other
            # weights of a seeded model are those of the plain GRSN)
            self.recurrent = nn.utils.skip_init(nn.Linear, hidden_features,
                                                2 * hidden_features, bias=False)
            nn.init.zeros_(self.recurrent.weight)

    @property
    def state_names(self) -> tuple[str, str]:
        """What the two state slots hold: ``("v", "c")``, or ``("h", "c")`` with spike
        recurrence (the first slot then holds the membrane before reset)."""
        return ("h", "c") if self.spike_recurrence else ("v", "c")

    @property
    def step_mode(self) -> str:
        return self.node.step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        self.node.step_mode = value

    def forward(self, x: torch.Tensor, episode_starts: Optional[torch.Tensor] = None):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GRSN expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"GRSN({self.in_features}, {self.hidden_features}) expects "
                             f"{self.in_features} features on the last dimension, got shape "
                             f"{tuple(x.shape)}")
        check_float_input(x, "GRSN", self.fc.weight.dtype)
        if self.step_mode == "m" and (x.dim() < 2 or x.shape[0] == 0):
            raise ValueError(f"GRSN({self.in_features}, {self.hidden_features}) in multi-step "
                             f"mode expects [T, N, ..., {self.in_features}] (time first) with "
                             f"T >= 1, got shape {tuple(x.shape)}; for one step use "
                             "step_mode='s' or add the time axis with x[None]")
        check = FiniteCheck(x, "GRSN", "x")
        if not self.spike_recurrence:  # the node runs the check of x (in 'm': after the probe)
            return self.node(self.fc(x), episode_starts, check_input=check)
        check()
        return self._stateful_recurrent_forward(x, episode_starts)

    def multi_step_sequence(self, x_seq: torch.Tensor, v: torch.Tensor, c: torch.Tensor,
                            episode_starts: Optional[torch.Tensor] = None,
                            check_input: Union[bool, FiniteCheck, None] = True) -> GRSNSequence:
        """``T`` steps with explicit state: ``x_seq [T, *batch, in_features]``, the state slots
        ``v`` (see :attr:`state_names`: ``h`` with spike recurrence) and ``c``, each
        ``[*batch, H]``, ``episode_starts [T, *batch]`` or ``None``. Returns a
        :class:`~grsn_sj.functional.GRSNSequence` whose ``v`` is the first slot to carry on.
        ``check_input``: raise a ValueError on a NaN / inf in ``x_seq`` (``False`` for a caller
        that checked its own input: the gate pre-activations are then not checked either; a
        :class:`~grsn_sj.functional.FiniteCheck` names the caller's own input, e.g.
        ``RecurrentGRSN``'s)."""
        if check_input is True:
            if not isinstance(x_seq, torch.Tensor):
                raise TypeError(f"x_seq must be a torch.Tensor, got {type(x_seq).__name__}")
            check_float_input(x_seq, "GRSN", self.fc.weight.dtype)
        check = finite_check(check_input, x_seq, "GRSN", "x_seq")
        if not self.spike_recurrence:  # the fused op's probe runs the check
            return self.node.multi_step_sequence(self.fc(x_seq), v, c, episode_starts,
                                                 check_input=check)
        if check is not None:
            check()
        node = self.node
        hidden = self.hidden_features
        gates_x = self.fc(x_seq)
        fire = (node.v_threshold, node.v_reset, node.surrogate_function, node.detach_reset)
        h = v
        spikes, hs, cs = [], [], []
        for t in range(x_seq.shape[0]):
            if episode_starts is not None:
                h, c = apply_episode_start(h, c, episode_starts[t], node.v_reset)
            o_prev, v_prev = grsn_fire_reset(h, *fire)
            pre = gates_x[t] + self.recurrent(o_prev)
            h, c = grsn_charge(pre[..., :hidden], pre[..., hidden:], v_prev, c, node.beta)
            spikes.append(grsn_fire_reset(h, *fire)[0])
            hs.append(h)
            cs.append(c)
        return GRSNSequence(torch.stack(spikes), torch.stack(hs), torch.stack(cs), h, c)

    def _stateful_recurrent_forward(self, x: torch.Tensor,
                                    episode_starts: Optional[torch.Tensor]) -> torch.Tensor:
        """SpikingJelly-style stateful call with spike recurrence: the state lives in the node's
        memories (``node.v`` holding ``h``, see the class docstring), so ``reset_net`` resets
        it."""
        node = self.node
        multi = node.step_mode == "m"  # forward checked the input's shape for this mode
        x_seq = x if multi else x.unsqueeze(0)
        if episode_starts is not None:
            check_episode_starts(episode_starts, x.shape[:-1],
                                 "(the input's shape without its last dimension)")
            episode_starts = episode_starts if multi else episode_starts.unsqueeze(0)
        shape = (*x_seq.shape[1:-1], self.hidden_features)
        states = []
        for value, init in zip((node.v, node.c), (initial_membrane(node.v_reset), 0.0)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                value = torch.full(shape, init, dtype=x.dtype, device=x.device)
            states.append(value.to(dtype=x.dtype, device=x.device))
        seq = self.multi_step_sequence(x_seq, states[0], states[1], episode_starts,
                                       check_input=False)  # forward checked x
        node.v, node.c = seq.v, seq.c
        return seq.spike_seq if multi else seq.spike_seq[0]
