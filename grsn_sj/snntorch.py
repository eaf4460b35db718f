r"""The GRSN neuron for snnTorch users: :class:`GRSN`, an ``snntorch.SpikingNeuron``.

Needs the ``snntorch`` extra (``pip install 'grsn_sj[snntorch]'``); importing this module
without snntorch raises an ImportError that says so. snnTorch 1.0's wheel declares no
dependencies of its own (it needs torch and numpy, which grsn_sj already brings).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

try:
    import snntorch
except ImportError as exc:  # pragma: no cover - exercised by a test that hides snntorch
    raise ImportError(
        "grsn_sj.snntorch needs snntorch; install it with pip install 'grsn_sj[snntorch]'"
    ) from exc

from spikingjelly.activation_based import surrogate

from .functional import (
    beta_from_tau,
    check_finite,
    check_float_input,
    check_positive_int,
    check_tau,
    check_threshold,
    decay_logits,
    grsn_step,
)

__all__ = ["GRSN", "reset_net"]

State = tuple[torch.Tensor, torch.Tensor]


class GRSN(snntorch.SpikingNeuron):
    r"""Gated recurrent spiking neuron (Qin et al. 2024) in snnTorch's style.

    Like snnTorch's ``SLSTM`` it owns its input projection: ``Linear(input_size,
    2 * hidden_size)`` computes the forget and input pre-activations ``[a_f | a_i]``. Per neuron
    and step, the state equations are (the same function, :func:`grsn_sj.functional.grsn_step`,
    as SpikingJelly's :class:`grsn_sj.GRSNNode` -- no second copy of the math):

    .. math::

        F[t] &= \sigma(a_f[t]), \qquad I[t] = \mathrm{ReLU}(a_i[t]) \\
        c[t] &= F[t]\, c[t-1] + (1 - F[t])\, I[t] \\
        h[t] &= \beta\, v[t-1] + (1 - \beta)\, c[t], \qquad \beta = 1 - 1/\tau \\
        S[t] &= \Theta(h[t] - U_{thr}) \\
        v[t] &= h[t] - U_{thr} S[t] \quad \text{(reset\_mechanism="subtract")}, \qquad
        v[t] = (1 - S[t])\, h[t] \quad \text{("zero")}

    Conventions, and where they differ from snnTorch's own neurons:

    * **Threshold test:** a neuron fires when ``h >= threshold`` (SpikingJelly's convention,
      so this neuron's spikes equal ``GRSNNode``'s); snnTorch's neurons fire at
      ``mem > threshold``. The default ``spike_grad`` is SpikingJelly's ``surrogate.ATan()``
      (alpha 2, the same gradient as snnTorch's ``atan()``); passing an snnTorch surrogate makes
      the test strict (``>``) again.
    * **Reset timing:** the reset is applied in the same step as the spike. snnTorch's
      ``Leaky`` applies it one step late by default (``reset_delay=True``).
    * **State threading:** ``spk, (v, c) = neuron(x, (v, c))`` -- the state is one tuple, ``v``
      the membrane after reset and ``c`` the gated current. With ``init_hidden=True`` the state
      lives in the module (buffers ``v`` and ``c``) and ``neuron(x)`` returns ``spk`` (or
      ``spk, (v, c)`` with ``output=True``).
    * **Resetting a network:** snnTorch 1.0's ``utils.reset(net)`` only knows its own neuron
      classes and misses nested modules; call :meth:`reset_mem` on this neuron, or
      :func:`reset_net` on a whole network (it calls ``reset_mem`` on every nested module that
      has one, snnTorch's neurons included).

    :param input_size: features of the input ``x`` (``[batch, input_size]``).
    :param hidden_size: number of neurons ``H``.
    :param bias: whether the gate projection has a bias.
    :param threshold: firing threshold ``U_thr`` (> 0).
    :param spike_grad: spike function with a surrogate gradient (default SpikingJelly's
        ``surrogate.ATan()``).
    :param tau: membrane time constant, ``beta = 1 - 1/tau`` (>= 1; 2 in the paper).
    :param learn_beta: learn one decay per neuron, ``beta = sigmoid(w)``, starting at
        ``1 - 1/tau`` (needs ``tau > 1``).
    :param reset_mechanism: ``"subtract"`` (soft reset, the paper's default) or ``"zero"``.
    :param detach_reset: detach the spike used in the reset from the graph.
    :param init_hidden: keep the state inside the module.
    :param learn_threshold: make the threshold a learnable parameter.
    :param output: with ``init_hidden=True``, also return the state.

    Example::

        >>> import torch
        >>> from grsn_sj.snntorch import GRSN
        >>> neuron = GRSN(4, 16)
        >>> v, c = neuron.reset_mem()
        >>> for x in torch.randn(10, 8, 4):          # 10 steps, batch 8
        ...     spk, (v, c) = neuron(x, (v, c))
        >>> spk.shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        threshold: float = 1.0,
        spike_grad=None,
        tau: float = 2.0,
        learn_beta: bool = False,
        reset_mechanism: str = "subtract",
        detach_reset: bool = False,
        init_hidden: bool = False,
        learn_threshold: bool = False,
        output: bool = False,
    ):
        if reset_mechanism not in ("subtract", "zero"):
            raise ValueError(f"reset_mechanism must be 'subtract' or 'zero' (a GRSN always "
                             f"resets after a spike), got {reset_mechanism!r}")
        check_threshold(threshold)
        self.tau = check_tau(tau)
        super().__init__(threshold=threshold,
                         spike_grad=surrogate.ATan() if spike_grad is None else spike_grad,
                         init_hidden=init_hidden, learn_threshold=learn_threshold,
                         reset_mechanism=reset_mechanism, output=output)
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.detach_reset = bool(detach_reset)
        self.fc = nn.Linear(input_size, 2 * hidden_size, bias=bias)
        self.learn_beta = bool(learn_beta)
        if self.learn_beta:
            self.w = nn.Parameter(decay_logits(self.tau, hidden_size, "learn_beta"))
        self.register_buffer("v", torch.zeros(0), persistent=False)
        self.register_buffer("c", torch.zeros(0), persistent=False)

    @property
    def beta(self):
        return torch.sigmoid(self.w) if self.learn_beta else beta_from_tau(self.tau)

    @property
    def v_reset(self) -> Optional[float]:
        return None if self._reset_mechanism == "subtract" else 0.0

    def reset_mem(self) -> State:
        """Zero the kept state and return ``(v, c)`` (empty tensors, sized at the next call)."""
        self.v = torch.zeros(0, device=self.v.device)
        self.c = torch.zeros(0, device=self.c.device)
        return self.v, self.c

    def init_grsn(self) -> State:
        """snnTorch-style alias of :meth:`reset_mem`."""
        return self.reset_mem()

    def _state_for(self, x: torch.Tensor, state: Optional[State]) -> State:
        shape = (*x.shape[:-1], self.hidden_size)
        if state is None:
            state = (self.v, self.c)
        elif not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError("state must be a tuple (v, c) of two tensors, e.g. from reset_mem()")
        out = []
        for name, s in zip(("v", "c"), state):
            if not isinstance(s, torch.Tensor):
                raise TypeError(f"state {name} must be a tensor, got {type(s).__name__}")
            if s.numel() == 0:  # fresh state from reset_mem()
                s = torch.zeros(shape, dtype=x.dtype, device=x.device)
            elif tuple(s.shape) != shape:
                raise ValueError(f"state {name} has shape {tuple(s.shape)}, expected {shape}; "
                                 "call reset_mem() when the batch size changes")
            out.append(s)
        return out[0], out[1]

    def forward(self, input_: torch.Tensor, state: Optional[State] = None):
        if self.init_hidden and state is not None:
            raise TypeError("state should not be passed as an argument while init_hidden=True")
        if not isinstance(input_, torch.Tensor) or input_.shape[-1:] != (self.input_size,):
            got = tuple(input_.shape) if isinstance(input_, torch.Tensor) else type(input_)
            raise ValueError(f"input must be [..., input_size={self.input_size}], got {got}")
        check_float_input(input_, "grsn_sj.snntorch.GRSN", self.fc.weight.dtype)
        check_finite(input_, "grsn_sj.snntorch.GRSN", "input_")
        v, c = self._state_for(input_, state)
        pre = self.fc(input_)
        H = self.hidden_size
        spk, v, c = grsn_step(pre[..., :H], pre[..., H:], v, c, self.beta, self.threshold,
                              self.v_reset, self.spike_grad, self.detach_reset)
        if self.init_hidden:
            self.v, self.c = v, c
            return (spk, (v, c)) if self.output else spk
        return spk, (v, c)


def reset_net(net: nn.Module) -> None:
    """Call ``reset_mem()`` on every nested module that has one (this module's :class:`GRSN`
    and snnTorch's own neurons), which ``snntorch.utils.reset`` does not do for new classes or
    nested modules."""
    for module in net.modules():
        if callable(getattr(module, "reset_mem", None)):
            module.reset_mem()
