r"""Pure functional GRSN step: the single source of truth for the neuron's math.

Everything else in :mod:`grsn_sj` (the SpikingJelly node, the multi-layer module, the snnTorch
neuron, the policies) calls these functions; the fused kernels (numba on the CPU, CuPy on CUDA)
implement exactly the same arithmetic and are tested against :func:`grsn_multi_step_reference`.

State equations (spec §3), for one neuron with forget pre-activation :math:`a^f_t`, input
pre-activation :math:`a^i_t`, membrane after reset :math:`v_{t-1}` and gated current
:math:`c_{t-1}`:

.. math::

    F_t &= \sigma(a^f_t) \\
    I_t &= \mathrm{relu}(a^i_t) \\
    c_t &= F_t c_{t-1} + (1 - F_t) I_t \\
    h_t &= \beta v_{t-1} + (1 - \beta) c_t, \qquad \beta = 1 - 1/\tau \\
    s_t &= \Theta(h_t - \vartheta) \\
    v_t &= h_t - \vartheta s_t \quad \text{(soft reset, } v_{reset} = \text{None)} \\
    v_t &= (1 - s_t) h_t + s_t v_{reset} \quad \text{(hard reset)}

:math:`\Theta` is the Heaviside step (``h >= threshold`` fires, as in SpikingJelly); its backward
is the surrogate function's derivative. With ``detach_reset=True`` the spike used in the reset is
detached from the graph. ``beta`` may be a Python float or a tensor broadcastable to the state
(per-neuron learnable decay).

An episode-start mask (``reset_mask[t] == 1``) sets the state of that row back to its initial
value *before* step ``t``: ``c = 0`` and ``v = v_init`` with ``v_init = 0`` for soft reset and
``v_init = v_reset`` for hard reset (SpikingJelly's ``BaseNode`` convention for the initial
membrane).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from spikingjelly.activation_based import surrogate

__all__ = [
    "grsn_charge",
    "grsn_fire_reset",
    "grsn_step",
    "grsn_multi_step_reference",
    "apply_episode_start",
    "reset_membrane",
    "GRSNSequence",
    "initial_membrane",
    "beta_from_tau",
    "check_threshold",
    "forget_bias_init",
    "check_tau",
    "check_tau_above_one",
    "decay_logits",
    "check_v_reset",
    "check_positive_int",
    "check_gate_dim",
    "check_episode_starts",
    "check_finite",
    "FiniteCheck",
    "finite_check",
    "check_float_input",
    "check_state_dtype",
    "surrogate_spec",
    "SURROGATE_IDS",
]

Beta = Union[float, torch.Tensor]


class GRSNSequence(NamedTuple):
    """Result of a multi-step GRSN pass over ``T`` steps.

    spike_seq: ``[T, *batch, H]`` spikes (or the smooth surrogate output when the surrogate is in
        non-spiking mode).
    h_seq: ``[T, *batch, H]`` membrane potential before reset (the charge ``h_t``).
    c_seq: ``[T, *batch, H]`` gated current ``c_t``.
    v: ``[*batch, H]`` membrane after reset at the last step (the state to carry on).
    c: ``[*batch, H]`` gated current at the last step (the state to carry on).
    """

    spike_seq: torch.Tensor
    h_seq: torch.Tensor
    c_seq: torch.Tensor
    v: torch.Tensor
    c: torch.Tensor


# --------------------------------------------------------------------------------------------
# validation helpers (shared by every public entry point)
# --------------------------------------------------------------------------------------------

def check_positive_int(value, name: str) -> int:
    """``value`` if it is an int >= 1 (bools rejected), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


ForgetBias = Union[float, tuple[float, float]]


def forget_bias_init(forget_bias: ForgetBias, hidden: int) -> torch.Tensor:
    """The initial forget-gate biases of ``hidden`` neurons: one number for all of them, or a
    ``(low, high)`` pair spaced evenly over the neurons (neuron ``j`` gets
    ``low + (high - low) * j / (hidden - 1)``). With bias ``b`` and no input, ``F = sigmoid(b)``,
    so the gated current keeps a fraction ``sigmoid(b) ** k`` of what it held ``k`` steps before:
    a range of biases gives a range of memory time scales (0: half per step; 3: about 0.5 after
    15 steps).

    Raises:
        TypeError: ``forget_bias`` is neither a real number nor a pair of them.
        ValueError: a value is not finite, or a sequence does not hold exactly two values.
    """
    def real(value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"forget_bias must be a float or a (low, high) pair of floats, got "
                            f"{forget_bias!r}; e.g. forget_bias=0.0 or forget_bias=(0.0, 3.0)")
        if not math.isfinite(value):
            raise ValueError(f"forget_bias must be finite, got {forget_bias!r}")
        return float(value)

    if isinstance(forget_bias, (tuple, list)):
        if len(forget_bias) != 2:
            raise ValueError(f"forget_bias as a sequence must be a (low, high) pair, got "
                             f"{forget_bias!r}")
        low, high = (real(v) for v in forget_bias)
        return torch.linspace(low, high, hidden) if hidden > 1 else torch.tensor([low])
    return torch.full((hidden,), real(forget_bias))


def check_threshold(v_threshold: float) -> float:
    if isinstance(v_threshold, bool) or not isinstance(v_threshold, (int, float)):
        raise TypeError(f"v_threshold must be a float, got {type(v_threshold).__name__}; "
                        "pass e.g. v_threshold=1.0")
    v_threshold = float(v_threshold)
    if not math.isfinite(v_threshold) or v_threshold <= 0.0:
        raise ValueError(
            f"v_threshold must be a finite number > 0, got {v_threshold}; the default is 1.0"
        )
    return v_threshold


def check_v_reset(v_reset: Optional[float]) -> Optional[float]:
    if v_reset is None:
        return None
    if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)):
        raise TypeError(
            "v_reset must be None (soft reset) or a float (hard reset to that value), "
            f"got {type(v_reset).__name__}"
        )
    v_reset = float(v_reset)
    if not math.isfinite(v_reset):
        raise ValueError(f"v_reset must be finite or None (soft reset), got {v_reset}")
    return v_reset


def check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a float, got {type(tau).__name__}; the default is 2.0")
    tau = float(tau)
    if not math.isfinite(tau) or tau < 1.0:
        raise ValueError(
            f"tau must be a finite number >= 1 so that beta = 1 - 1/tau lies in [0, 1), got {tau}; "
            "the paper uses tau = 2.0"
        )
    return tau


def check_tau_above_one(tau: float, option: str) -> float:
    """``tau`` validated by :func:`check_tau` and > 1, for ``option`` (a feature that needs a
    nonzero decay ``beta = 1 - 1/tau``: a learnable decay ``sigmoid(w)``, a LIF leak), else a
    ValueError naming the option."""
    tau = check_tau(tau)
    if tau == 1.0:
        raise ValueError(f"{option} needs tau > 1 so that beta = 1 - 1/tau > 0, got tau = "
                         f"{tau}; the paper uses tau = 2.0")
    return tau


def decay_logits(tau: float, size: int, option: str) -> torch.Tensor:
    """Initial value of a learnable per-neuron decay ``beta = sigmoid(w)``: ``[size]`` copies of
    ``w = logit(1 - 1/tau)``, so that ``beta`` starts at the fixed-tau value (``tau > 1``)."""
    beta0 = beta_from_tau(check_tau_above_one(tau, option))
    return torch.full((check_positive_int(size, "size"),), math.log(beta0 / (1.0 - beta0)))


def check_gate_dim(x: torch.Tensor, who: str, shape: Optional[tuple] = None) -> int:
    """``H`` if the last dimension of ``x`` holds the gate pre-activations ``[forget | input]``,
    an even ``2H > 0``; else a ValueError naming ``who`` and quoting ``shape`` (the shape the
    user passed, default ``x.shape``)."""
    two_h = x.shape[-1] if x.dim() else 0
    if two_h == 0 or two_h % 2:
        raise ValueError(
            f"{who}'s last dimension holds the [forget | input] gate pre-activations and must be "
            f"an even 2*H > 0, got shape {tuple(x.shape) if shape is None else tuple(shape)}; "
            "put a Linear(in, 2*H) in front (grsn_sj.GRSN does)")
    return two_h // 2


def check_finite(x: torch.Tensor, who: str, name: str) -> None:
    """A ValueError naming ``who``, the tensor ``name`` and the first NaN / inf element if a
    floating-point ``x`` holds one (a NaN would make a neuron's state NaN for ever: it never
    fires again, silently). One reduction (a sum, which is NaN or inf if an element is) when
    ``x`` is finite; the index is looked up only on failure. Skipped while ``torch.compile``
    traces (a data-dependent branch is a graph break)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return  # not a float tensor: the type checks of the caller say what is wrong
    if torch.compiler.is_compiling():
        return  # a data-dependent branch would break the graph; eager calls check
    if math.isfinite(x.sum().item()):
        return  # a NaN or inf element makes the sum NaN or inf: one fast reduction
    bad = (~torch.isfinite(x)).nonzero()
    if bad.shape[0] == 0:
        return  # finite elements whose sum overflowed
    bad = tuple(bad[0].tolist())
    raise ValueError(
        f"{who} got a non-finite input: {name}[{', '.join(map(str, bad))}] = {x[bad].item()}; "
        "a NaN or inf makes a neuron's state NaN for ever (it silently stops firing). Find where "
        "it comes from (e.g. an environment observation, a diverged weight) or clean the input "
        "with torch.nan_to_num")


class FiniteCheck(NamedTuple):
    """A :func:`check_finite` of the tensor the user passed, handed down to where it runs: a
    module that transforms its input (``GRSN``'s Linear, ``RecurrentGRSN``) passes the check of
    the user's tensor to the fused op, whose CPU kernel probes the gate pre-activations for NaN /
    inf inside its loop; only when the probe finds one does the check read the user's tensor to
    name its first bad element. Calling it runs the check now."""

    tensor: torch.Tensor
    who: str
    name: str

    def __call__(self) -> None:
        check_finite(self.tensor, self.who, self.name)

    def with_gates(self, gates: torch.Tensor) -> None:
        """The check, then, if ``gates`` (the gate pre-activations the neurons get) is another
        tensor than the one checked -- a module's Linear made it -- a check of ``gates`` too, so
        a NaN / inf made by diverged weights from a finite input is named as well."""
        self()
        if gates is not self.tensor:
            check_finite(gates, self.who, "its gate pre-activations")


def finite_check(check_input: Union[bool, FiniteCheck, None], x: torch.Tensor, who: str,
                 name: str) -> Optional[FiniteCheck]:
    """The ``check_input`` argument of the neuron's forward calls as a :class:`FiniteCheck`:
    ``True`` checks ``x`` (named ``name`` in ``who``'s message), ``False`` or ``None`` checks
    nothing (the caller checked its own input), a :class:`FiniteCheck` is a caller's check of
    its own input (run where the fused op can probe for it)."""
    if check_input is None or isinstance(check_input, FiniteCheck):
        return check_input
    if not isinstance(check_input, bool):
        raise TypeError(f"check_input must be a bool or a grsn_sj.functional.FiniteCheck, got "
                        f"{type(check_input).__name__}")
    return FiniteCheck(x, who, name) if check_input else None


def check_float_input(x: torch.Tensor, who: str, dtype: Optional[torch.dtype] = None) -> None:
    """A TypeError naming ``who`` unless ``x`` is a floating-point tensor (of ``dtype``, the
    dtype of the weights it meets, when given)."""
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a floating-point input, got {x.dtype}; convert it, e.g. "
                        "x.float()")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{who} got a {x.dtype} input but its weights are {dtype}; convert the "
                        f"input (x.to({dtype})) or the module (module.to({x.dtype}))")


def check_state_dtype(state: torch.Tensor, name: str, x: torch.Tensor) -> None:
    """A TypeError unless the state tensor ``name`` has the input's dtype (a mixed pair would
    give float64 from the torch reference and float32 from a fused kernel)."""
    if state.dtype != x.dtype:
        raise TypeError(f"state {name} is {state.dtype} but the input is {x.dtype}; pass a state "
                        f"of the input's dtype (e.g. {name}.to(x.dtype))")


def check_episode_starts(starts, want: tuple, layout: str) -> None:
    """An episode-start mask must be a tensor of shape ``want`` (described by ``layout``, e.g.
    ``"[T, N]"``); else a TypeError / ValueError quoting both shapes."""
    if not isinstance(starts, torch.Tensor):
        raise TypeError(f"episode_starts must be a torch.Tensor {layout}, got "
                        f"{type(starts).__name__}")
    if tuple(starts.shape) != tuple(want):
        raise ValueError(f"episode_starts must have shape {layout} = {tuple(want)}, got "
                         f"{tuple(starts.shape)}")


def beta_from_tau(tau: float) -> float:
    """Membrane decay ``beta = 1 - 1/tau`` for a validated ``tau``."""
    return 1.0 - 1.0 / check_tau(tau)


def initial_membrane(v_reset: Optional[float]) -> float:
    """Membrane value at an episode start: 0 for soft reset, ``v_reset`` for hard reset."""
    return 0.0 if v_reset is None else float(v_reset)


#: surrogate classes that the fused kernels implement, and their kernel ids.
SURROGATE_IDS = {surrogate.ATan: 0, surrogate.Sigmoid: 1}


def surrogate_spec(surrogate_function) -> Optional[tuple[int, float, bool]]:
    """``(kernel_id, alpha, spiking)`` if a fused kernel implements ``surrogate_function``.

    Only the exact SpikingJelly classes count (a subclass may override the math), so a user's own
    surrogate always runs through the torch reference. Returns ``None`` when unsupported.
    """
    sid = SURROGATE_IDS.get(type(surrogate_function))
    if sid is None:
        return None
    return sid, float(surrogate_function.alpha), bool(surrogate_function.spiking)


# --------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------

def grsn_charge(
    forget_pre: torch.Tensor,
    input_pre: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    beta: Beta,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated current and membrane charge of one step: returns ``(h, c_next)``."""
    f = torch.sigmoid(forget_pre)
    i = torch.relu(input_pre)
    c_next = f * c + (1.0 - f) * i
    h = beta * v + (1.0 - beta) * c_next
    return h, c_next


def grsn_fire_reset(
    h: torch.Tensor,
    v_threshold: float,
    v_reset: Optional[float],
    surrogate_function,
    detach_reset: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fire and reset of one step: returns ``(spike, v_next)``."""
    spike = surrogate_function(h - v_threshold)
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        v_next = h - v_threshold * s
    else:
        v_next = (1.0 - s) * h + s * v_reset
    return spike, v_next


def grsn_step(
    forget_pre: torch.Tensor,
    input_pre: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    beta: Beta = 0.5,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = None,
    surrogate_function=surrogate.ATan(),
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One GRSN update with explicit state: returns ``(spike, v_next, c_next)``.

    Pure: reads nothing from and writes nothing to any module. Autograd flows through the
    surrogate function. ``beta = 1 - 1/tau`` (0.5 for the paper's ``tau = 2``).

    Example::

        >>> import torch
        >>> from grsn_sj.functional import grsn_step
        >>> af, ai = torch.zeros(3), torch.full((3,), 4.0)
        >>> v = c = torch.zeros(3)
        >>> s, v, c = grsn_step(af, ai, v, c)   # c = 2.0, h = 1.0 -> every neuron fires
        >>> s
        tensor([1., 1., 1.])
    """
    h, c_next = grsn_charge(forget_pre, input_pre, v, c, beta)
    spike, v_next = grsn_fire_reset(h, v_threshold, v_reset, surrogate_function, detach_reset)
    return spike, v_next, c_next


def apply_episode_start(
    v: torch.Tensor, c: torch.Tensor, start: torch.Tensor, v_reset: Optional[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Send the state of the rows where ``start`` is nonzero back to its initial value.

    ``start`` (bool, integer or float; any nonzero value means "episode starts") has the
    state's shape without the neuron dimension (``[*batch]``); ``v`` goes to
    :func:`initial_membrane`, ``c`` to 0. Gradients do not flow through a reset row.
    """
    return reset_membrane(v, start, v_reset), c * (start == 0).to(c.dtype).unsqueeze(-1)


def reset_membrane(v: torch.Tensor, start: torch.Tensor, v_reset: Optional[float]) -> torch.Tensor:
    """The membrane half of :func:`apply_episode_start`, for neurons whose only state is ``v``
    (the LIF baseline): rows where ``start`` is nonzero go to :func:`initial_membrane`."""
    keep = (start == 0).to(v.dtype).unsqueeze(-1)
    return v * keep + (1.0 - keep) * initial_membrane(v_reset)


def grsn_multi_step_reference(
    x_seq: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    beta: Beta,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = None,
    surrogate_function=surrogate.ATan(),
    detach_reset: bool = False,
    reset_mask: Optional[torch.Tensor] = None,
) -> GRSNSequence:
    """Plain torch autograd reference of the fused multi-step op (a Python loop over ``T``).

    ``x_seq``: ``[T, *batch, 2H]`` gate pre-activations ``[forget | input]``; ``v``, ``c``:
    ``[*batch, H]``; ``reset_mask``: ``None`` or ``[T, *batch]`` (1 = episode starts before step
    ``t``: the row's state goes back to its initial value). This is the definition the fused
    kernels are tested against, forward and backward.
    """
    hidden = x_seq.shape[-1] // 2
    forget_seq, input_seq = x_seq[..., :hidden], x_seq[..., hidden:]
    spikes, hs, cs = [], [], []
    for t in range(x_seq.shape[0]):
        if reset_mask is not None:
            v, c = apply_episode_start(v, c, reset_mask[t], v_reset)
        h, c = grsn_charge(forget_seq[t], input_seq[t], v, c, beta)
        spike, v = grsn_fire_reset(h, v_threshold, v_reset, surrogate_function, detach_reset)
        spikes.append(spike)
        hs.append(h)
        cs.append(c)
    return GRSNSequence(torch.stack(spikes), torch.stack(hs), torch.stack(cs), v, c)
