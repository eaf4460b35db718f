"""Parameter-shared multi-agent RL: a PettingZoo ``ParallelEnv`` seen as one SB3 ``VecEnv``.

One SB3 policy controls every agent of a PettingZoo ParallelEnv: each (environment copy, agent)
pair is one row of the VecEnv, so sb3-contrib's ``RecurrentPPO`` keeps one recurrent state per
agent and trains one set of weights on the experience of all of them (parameter sharing).
SuperSuit is deliberately not used.

Public names
------------
* :class:`PettingZooVecEnv` -- the adapter (in-process or one subprocess per copy).
* :class:`~policies.callbacks.TeamMetricsCallback` -- logs ``team/return_mean``,
  ``team/ep_len_mean``, ``team/win_rate`` from the adapter's per-copy ``info["team_episode"]``.
* :class:`VecCentralState` -- wraps the adapter so each row also sees its copy's joint
  observation, or the env's own global state (``state="env"`` with the adapter's
  ``env_state=True``), as ``{"obs", "state"}``, for a centralised, training-only critic
  (``policy_kwargs=dict(centralised_critic=True)``; :mod:`policies.central`).
* :func:`make_spread_po` -- partially observed mpe2 ``simple_spread_v3`` (cooperative, N agents).
* :func:`make_speaker_listener` -- mpe2 ``simple_speaker_listener_v4`` (heterogeneous agents).
* :func:`make_pursuit` -- PettingZoo SISL ``pursuit_v5`` (needs ``pettingzoo[sisl]``).
* :func:`make_smax` -- JaxMARL's SMAX (SMAC-like maps, e.g. ``"2s3z"``; needs ``grsn_sj[smax]``).
* :func:`evaluate_team` -- a model's team returns (and win rate) over copy episodes;
  :func:`team_episodes` -- the episodes that ended in one step's infos, once per copy.
* :data:`WIN_KEYS` -- the info keys read as a win / success flag.
* :func:`agent_type` -- an agent name's type (``"speaker_0"`` -> ``"speaker"``), for ``agent_id="type"``.

Row layout
----------
Rows are copy-major: row ``r`` is agent ``possible_agents[r % n_agents]`` of copy
``r // n_agents``; ``PettingZooVecEnv.row_agents`` / ``row_copies`` spell this out.

Episode ends (SB3 auto-reset semantics)
--------------------------------------
A copy's episode ends on the step where every agent that acted reports ``terminated`` or
``truncated``, or where ``env.agents`` becomes empty. On that step *every* row of the copy gets
``done=True``, ``info["terminal_observation"]`` (the row's last real observation, zeros for a row
whose agent was already gone) and ``info["TimeLimit.truncated"] = truncated and not terminated``
(the agent's own flags; ``False`` for a row whose agent was already gone, and ``False`` when the
episode ended by emptying ``env.agents`` without a flag, i.e. it is treated as a termination).
The copy is then reset at once (without a seed, like SB3's ``DummyVecEnv``) and the returned
observation of its rows is the first observation of the new episode; the reset infos are in
``reset_infos``. Every row of the copy also gets ``info["team_episode"] = {"r": team return,
"l": episode length, "copy": copy index}`` plus ``"win"`` (1.0 / 0.0) when the env reports one of
:data:`WIN_KEYS` in its final infos (1.0 if any agent's final info has a truthy value for one of
them). The team return is the sum of the rewards of the copy's rows over the episode.

Dead / absent agents
--------------------
An agent that is not in ``env.agents`` (it left before the end of the episode, or has not
appeared yet) has a zero observation (agent id included), zero reward and its row's action is
ignored. The reward an agent receives on the step it leaves is kept. ``info["agent_active"]`` on
every row (and in ``reset_infos``) tells whether the row's observation is real, i.e. whether its
next action will be applied. ``dead_agents`` chooses how a departure shows up in ``dones``:

* ``"mask"`` (default): ``done`` only at the copy's episode end, so the recurrent state of the row
  is reset together with the episode; on the departure step ``info["agent_final_observation"]``
  holds the agent's last real observation.
* ``"terminate"``: ``done=True`` on the departure step, with ``terminal_observation`` (the last real
  observation) and ``TimeLimit.truncated`` from the agent's own flags; afterwards each step of an
  inactive row is a one-step dummy episode (zero observation, zero reward, ``done=True``,
  ``terminal_observation`` zeros, ``TimeLimit.truncated=False``) until the copy resets or the
  agent (re)appears. Per-row episode counters such as ``VecMonitor`` then count these dummy
  episodes; use :class:`TeamMetricsCallback` for team statistics.

SB3 cannot leave rows out of the loss, so the ignored actions of inactive rows still enter PPO's
batch with zero reward; this is the usual cost of padding-based parameter sharing.

Heterogeneous agents (space unification)
---------------------------------------
Observations must be ``Box`` spaces (anything else, e.g. ``Dict`` or ``Discrete``, raises a
TypeError). If every agent has the same shape and ``agent_id`` is off, the shape is kept (image
observations stay images). Otherwise every observation is flattened (C order), zero-padded at the
end to the longest one, and, with ``agent_id=True``, a one-hot over ``possible_agents`` is appended
(``agent_id="type"``: a one-hot over agent types, the type being the name before its last ``"_"``
-- ``"speaker_0"`` -> ``"speaker"``; a name without ``"_"`` is its own type; types ordered by first
appearance in ``possible_agents``). The common ``Box`` bounds are the element-wise union of the
agents' bounds, widened to include 0 (padding and absent agents are zeros); its dtype is the
agents' common dtype (``numpy.result_type``).

Actions: identical spaces of any kind are passed through unchanged. ``Discrete`` spaces of
different sizes become ``Discrete(max n)``; an agent with ``n`` actions (and ``start`` s) receives
``s + (a % n)`` for a padded action ``a`` -- out-of-range actions wrap around (modulo), they are not
clipped. ``Box`` spaces of different shapes or bounds become one flat ``Box`` of the longest size
with the union of the bounds; an agent takes the first ``prod(shape)`` entries, reshaped and clipped
to its own bounds. Any other mix (e.g. ``Box`` and ``Discrete``, or different ``MultiDiscrete``)
raises a TypeError naming these options.

Subprocess copies
-----------------
With ``subprocess=True`` each copy runs in its own daemon process (``multiprocessing`` with a
``Pipe``, start method "forkserver" where available, else "spawn"; ``env_fn`` is sent with
cloudpickle). The per-copy logic is the same code in both modes, so both give identical results for
the same seeds. ``close()`` stops and joins the workers; a forgotten ``close()`` is done at garbage
collection / interpreter exit, and the daemon flag guarantees the interpreter does not hang.
``env_fn`` is called once per copy, in copy order (in the parent for in-process copies, in each
worker otherwise, so state captured by ``env_fn`` -- e.g. a counter -- is only shared in-process).
"""
from .evaluation import TeamEvaluation, evaluate_team, team_episodes
from .factories import make_pursuit, make_smax, make_speaker_listener, make_spread_po
from .layout import WIN_KEYS, agent_type
from .central_state import VecCentralState
from .vec_env import PettingZooVecEnv

__all__ = [
    "WIN_KEYS",
    "agent_type",
    "PettingZooVecEnv",
    "TeamEvaluation",
    "TeamMetricsCallback",
    "VecCentralState",
    "evaluate_team",
    "make_pursuit",
    "make_smax",
    "make_speaker_listener",
    "make_spread_po",
    "team_episodes",
]


def __getattr__(name: str) -> object:
    # TeamMetricsCallback lives in policies.callbacks (it reads this package's infos); it is
    # re-exported lazily so policies.marl does not import the callbacks at import time (the
    # callbacks import this package).
    if name == "TeamMetricsCallback":
        from ..callbacks import TeamMetricsCallback

        return TeamMetricsCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
