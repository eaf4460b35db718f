r"""A value head for returns of any scale: ``V = symexp(w . x + b)``.

.. math::

    \mathrm{symexp}(y) = \mathrm{sign}(y)\,(e^{|y|} - 1), \qquad
    \frac{d\,\mathrm{symexp}}{dy} = e^{|y|}

Stable-Baselines3's value head is a plain ``Linear`` on top of a ``tanh`` MLP. With returns of
tens to hundreds -- any task whose rewards are not normalised, e.g. CartPole's +1 per step
discounted at 0.99 -- the MLP can only reach them by driving its ``tanh`` units into saturation,
after which the value no longer depends on the state: measured on the project's CartPole-P
settings (no ``VecNormalize``), the explained variance of sb3-contrib's LSTM critic and of a
GRU critic stays at 0 for the whole run (the value's spread across states 0.01 against the
returns' 10). Through ``symexp`` the head needs only ``log(1 + |V|)`` of range (about 4 for a
return of 60), so the MLP stays in its linear range and the value follows the returns. Near 0,
``symexp(y) = y + O(y^2)``: with normalised rewards the head acts as the linear one.

The idea is DreamerV3's symlog transform (Hafner et al., 2023), applied here as the head's
output instead of to the targets, so RecurrentPPO's own value loss -- the mean squared error on
raw returns, value clipping included -- is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["symexp", "SymExpValueHead", "SYMEXP_MAX_LOG"]

#: ``|y|`` is clamped to this before ``expm1`` so a diverging head gives a large finite value
#: (about 4.9e8), never ``inf``/NaN
SYMEXP_MAX_LOG = 20.0


def symexp(y: torch.Tensor) -> torch.Tensor:
    """``sign(y) * (exp(|y|) - 1)``, with ``|y|`` clamped to :data:`SYMEXP_MAX_LOG`; written
    per sign so that its gradient at 0 is 1 (``sign(y)`` would give 0 there)."""
    y = y.clamp(-SYMEXP_MAX_LOG, SYMEXP_MAX_LOG)
    return torch.where(y >= 0, torch.expm1(y), -torch.expm1(-y))


class SymExpValueHead(nn.Linear):
    """``nn.Linear`` followed by :func:`symexp`: a drop-in for a policy's ``value_net``.

    A subclass of ``nn.Linear`` with the same parameters (``weight``, ``bias``) and state-dict
    keys, so code that reads ``policy.value_net.weight`` or counts ``nn.Linear`` layers keeps
    working.

    Example::

        >>> import torch
        >>> head = SymExpValueHead(64, 1)
        >>> head(torch.zeros(3, 64)).shape
        torch.Size([3, 1])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return symexp(super().forward(input))
