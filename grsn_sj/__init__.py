"""grsn_sj: gated recurrent spiking neurons (GRSN) for SpikingJelly, snnTorch and SB3.

Core API (CPU-only install, no cupy needed):

* :func:`grsn_sj.functional.grsn_step` -- the pure step, the one definition of the math;
* :func:`grsn_multi_step` -- the fused multi-step op (``torch.library`` custom op; numba on the
  CPU, CuPy on CUDA, torch reference everywhere);
* :class:`GRSNNode` -- SpikingJelly node; :class:`GRSN` -- Linear + node block;
* :class:`RecurrentGRSN` -- ``nn.LSTM``-like multi-layer module with episode-start resets.
"""
from .functional import GRSNSequence, grsn_multi_step_reference, grsn_step
from .neuron import GRSN, GRSNNode
from .ops import grsn_multi_step
from .rnn import RecurrentGRSN, RecurrentGRSNOutput

__all__ = [
    "GRSN",
    "GRSNNode",
    "GRSNSequence",
    "RecurrentGRSN",
    "RecurrentGRSNOutput",
    "grsn_multi_step",
    "grsn_multi_step_reference",
    "grsn_step",
]

__version__ = "0.11.0"
