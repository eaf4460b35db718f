"""grsn_sj: gated recurrent spiking neurons (GRSN) for SpikingJelly."""
from .functional import grsn_step, grsn_multi_step_reference, GRSNSequence
from .ops import grsn_multi_step

__version__ = "0.1.0"
