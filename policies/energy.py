r"""Energy per decision of a (spiking or conventional) SB3 policy, from real rollout activity.

Built on :mod:`grsn_sj.energy` (the constants, the operation counts and the counter over
modules and spikes, with every counting convention in its docstring); this module knows
Stable-Baselines3 policies: which modules are the deployed actor, the critic and the memory
core, and how to roll a model out.

Public API
----------
* :func:`estimate_energy` -- run a policy over rollout observations (the policy's own sequence
  path with the recurrent state threaded and reset at episode starts), count every operation
  and return an :class:`EnergyReport` **per decision**.
* :func:`collect_observations` -- roll a trained model out in an environment (``predict`` with
  state) and return ``(observations [T, n_envs, *obs_shape], episode_starts [T, n_envs])``.
* :class:`EnergyReport`; :class:`~grsn_sj.energy.EnergyConstants`,
  :class:`~grsn_sj.energy.EnergyScope` and :class:`~grsn_sj.energy.OpCounts` are re-exported.

Example::

    from sb3_contrib import RecurrentPPO
    import policies
    from policies.energy import collect_observations, estimate_energy

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


How a memory core is counted
----------------------------
``nn.LSTM`` (sb3-contrib's core) is counted by its own rule. Any other core declares its
counting: ``core.op_counting()`` returns a :class:`grsn_sj.energy.CoreCounting` -- the
counting of its Linear layers (spike inputs, the neuron updates they drive), how many spike
columns its readout has (counted as spike input of the first head layer), and which of its
submodules are not its memory (the ``spikes+obs`` shortcut embedding). :class:`policies.GRSNCore`,
:class:`policies.LIFCore` and :class:`policies.NoTAPCore` do; a new core does the same.

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

"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode

from grsn_sj.energy import (
    CoreCounting,
    EnergyConstants,
    EnergyScope,
    LinearCounting,
    OpCounts,
    check_constants,
    count_ops_by_module,
)

from .rollout import collect_observations

__all__ = [
    "EnergyConstants",
    "EnergyScope",
    "EnergyReport",
    "OpCounts",
    "estimate_energy",
    "collect_observations",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------

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
      value MLP, value head), as a training forward pass runs them: a core shared the way
      sb3-contrib's ``shared_lstm`` shares it (one pass, the critic reads its output) is
      counted once; the actor's core run again for the critic (``critic_core="shared"`` of
      :class:`policies.GRSNPolicy`) is counted twice, once in ``agent``.

    :param policy_name: class name of the policy.
    :param n_decisions: ``T * n_envs`` decisions the counts are averaged over.
    :param constants: the energy constants of the ``energy_*`` values.
    :param firing_rate: mean firing rate (spikes per neuron per step, sub-steps included) of the
        actor core's readout layer on these observations; ``None`` without a spiking core.
    :param critic_firing_rate: the same for the critic's own spiking core, else ``None`` (also
        when the critic runs the actor's core).
    :param per_module: per decision counts per module name (neuron updates under the neuron
        module's name, or ``"<linear name> (LIF neurons)"``): the modules the deployed actor
        runs as it runs them, the critic's own modules as the critic pass runs them.
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
        return dataclasses.replace(self, constants=check_constants(constants))

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
# policies
# --------------------------------------------------------------------------------------------

#: the modules (attribute paths of SB3's / sb3-contrib's actor-critic policies) on the actor
#: path and on the critic path.
_ACTOR_PATH = ("features_extractor", "pi_features_extractor", "lstm_actor",
               "mlp_extractor.policy_net", "action_net")
_CRITIC_PATH = ("vf_features_extractor", "lstm_critic", "critic", "mlp_extractor.value_net",
                "value_net")


def _names_of(policy: nn.Module, names: Mapping[nn.Module, str],
              paths: Sequence[str]) -> tuple[str, ...]:
    """The module names of the modules at ``paths`` that the policy has."""
    out = []
    for path in paths:
        obj: Any = policy
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.Module) and obj in names:
            out.append(names[obj])
    return tuple(out)


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
        if isinstance(module, (nn.Linear, nn.LSTM, nn.GRU, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                               BaseNode, nn.PReLU)):
            continue
        raise TypeError(
            f"cannot count the operations of {names.get(module)} ({type(module).__name__}): "
            "only nn.Linear, nn.Conv1d/2d/3d, nn.LSTM, nn.GRU, SpikingJelly neurons and "
            "activation modules are supported; use count_ops on the supported parts")


def _core_counting(core: Optional[nn.Module], label: str) -> CoreCounting:
    """The counting a memory core declares (``op_counting()``); sb3-contrib's ``nn.LSTM`` and a
    missing core need none."""
    if core is None or isinstance(core, nn.LSTM):
        return CoreCounting()
    declare = getattr(core, "op_counting", None)
    if not callable(declare):
        raise TypeError(
            f"{label} is a {type(core).__name__}, which does not declare how it is counted; "
            "supported memory cores: nn.LSTM (sb3-contrib) and any core with op_counting() -> "
            "grsn_sj.energy.CoreCounting (GRSNCore, LIFCore, NoTAPCore of policies)")
    counting = declare()
    if not isinstance(counting, CoreCounting):
        raise TypeError(f"{label}.op_counting() must return a grsn_sj.energy.CoreCounting, got "
                        f"{type(counting).__name__}")
    return counting


def _consumer_role(head_mlp: nn.Module, head: nn.Module, spike_cols: int,
                   roles: dict[nn.Module, LinearCounting]) -> None:
    """The first Linear fed by a core readout gets its spike columns."""
    if spike_cols <= 0:
        return
    first = _first_linear(head_mlp) or (head if isinstance(head, nn.Linear) else None)
    if first is not None:
        roles[first] = LinearCounting(spike_columns=min(spike_cols, first.in_features))


def _as_array(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got "
                        f"{type(value).__name__}")
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {value.dtype}")
    return value


def _observation_arrays(policy: Any, observations: Any) -> tuple[Any, int, int]:
    """``observations`` checked against the policy's observation space: one array
    ``[T, n_envs, *shape]``, or for a ``Dict`` space a dict with one such array per key (the
    same ``T`` and ``n_envs``). Returns ``(observations, T, n_envs)``."""
    from gymnasium import spaces

    space = policy.observation_space
    if isinstance(space, spaces.Dict):
        if not isinstance(observations, dict) or set(observations) != set(space.spaces):
            got = sorted(observations) if isinstance(observations, dict) else \
                type(observations).__name__
            raise TypeError(f"{type(policy).__name__} has a Dict observation space: pass a dict "
                            f"with one [T, n_envs, ...] array per key {sorted(space.spaces)}, "
                            f"got {got}")
        named = {k: (f"observations[{k!r}]", observations[k], space[k]) for k in space.spaces}
    elif space.shape is None:
        raise TypeError(f"{type(policy).__name__} has a {type(space).__name__} observation "
                        "space; estimate_energy needs array observations (Box, Discrete, "
                        "MultiDiscrete, MultiBinary) or a Dict of them")
    else:
        named = {None: ("observations", observations, space)}
    arrays, lead = {}, None
    for key, (name, value, sub) in named.items():
        obs_shape = tuple(sub.shape)
        obs = _as_array(name, value)
        if obs.ndim != 2 + len(obs_shape) or tuple(obs.shape[2:]) != obs_shape:
            raise ValueError(f"{name} must be [T, n_envs, *obs_shape] = [T, n_envs, "
                             f"{', '.join(map(str, obs_shape))}] (obs_shape from the policy's "
                             f"observation space), got shape {tuple(obs.shape)}; for a single "
                             "environment add the axis with observations[:, None]")
        if lead is not None and obs.shape[:2] != lead:
            raise ValueError(f"{name} has [T, n_envs] = {list(obs.shape[:2])}, the other "
                             f"entries {list(lead)}")
        lead = obs.shape[:2]
        if obs.shape[0] == 0 or obs.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one step of one environment, got "
                             f"shape {tuple(obs.shape)}")
        if not np.all(np.isfinite(obs.astype(np.float64, copy=False))):
            raise ValueError(f"{name} contain NaN or inf; pass the observations the policy "
                             "acted on")
        arrays[key] = obs
    out = arrays[None] if None in arrays else arrays
    return out, int(lead[0]), int(lead[1])


class _FiringStats:
    """Resets the cores' readout spike counters for the measurement and restores them after,
    so a training-time :class:`policies.FiringRateCallback` is not disturbed."""

    def __init__(self, cores: Sequence[Optional[nn.Module]]):
        self.cores = []
        for c in cores:  # each core once: a critic may run the actor's core
            if (c is not None and hasattr(c, "firing_rate") and hasattr(c, "reset_firing_stats")
                    and not any(c is seen for seen in self.cores)):
                self.cores.append(c)
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
        ``Linear`` and ``Conv`` layers (``FlattenExtractor``, ``CombinedExtractor`` on flat
        entries, ``NatureCNN``: the ``Cnn`` policies).
    :param observations: ``[T, n_envs, *observation_space.shape]`` (numpy or torch), as the
        policy saw them (e.g. from :func:`collect_observations`; normalised if the env was);
        for a ``Dict`` observation space (``MultiInput`` policies, a centralised critic) a dict
        with one such array per key.
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
    constants = check_constants(constants)
    obs, T, n_envs = _observation_arrays(policy, observations)
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
    roles: dict[nn.Module, LinearCounting] = {}
    actor_core = critic_core = None
    core_names: tuple[str, ...] = ()
    outside_core: tuple[str, ...] = ()
    if recurrent:
        actor_core = policy.lstm_actor
        critic_core = policy.lstm_critic
        actor = _core_counting(actor_core, "policy.lstm_actor")
        critic = _core_counting(critic_core, "policy.lstm_critic")
        roles.update(critic.linears)
        roles.update(actor.linears)
        actor_cols, critic_cols = actor.readout_spike_columns, critic.readout_spike_columns
        core_names = (names[actor_core],)
        outside_core = tuple(names[m] for m in actor.outside_core)
        if critic_core is None:
            critic_cols = actor_cols if policy.shared_lstm else 0
        _consumer_role(policy.mlp_extractor.policy_net, policy.action_net, actor_cols, roles)
        _consumer_role(policy.mlp_extractor.value_net, policy.value_net, critic_cols, roles)

    device = policy.device
    # env-major rows (env 0's T steps, then env 1's ...): sb3-contrib's sequence layout
    flat = lambda a: torch.as_tensor(np.ascontiguousarray(a.swapaxes(0, 1)).reshape(  # noqa: E731
        T * n_envs, *a.shape[2:]), device=device)
    flat_obs = {k: flat(a) for k, a in obs.items()} if isinstance(obs, dict) else flat(obs)
    flat_starts = torch.as_tensor(np.ascontiguousarray(starts.swapaxes(0, 1)).reshape(-1),
                                  device=device)

    def call(actor_only: bool) -> None:
        # the deployed actor is what predict runs (get_distribution); forward runs the critic too
        if recurrent:
            layers, _, hidden = policy.lstm_hidden_state_shape
            z = lambda: torch.zeros(layers, n_envs, hidden, device=device)  # noqa: E731
            states = RNNStates((z(), z()), (z(), z()))
            if actor_only:
                policy.get_distribution(flat_obs, states.pi, flat_starts)
            else:
                policy.forward(flat_obs, states, flat_starts, deterministic=True)
        elif actor_only:
            policy.get_distribution(flat_obs)
        else:
            policy.forward(flat_obs, deterministic=True)

    was_training = policy.training
    policy.set_training_mode(False)
    # forward() is RecurrentPPO's rollout pass: an in-policy observation normaliser would record
    # these observations (and merge statistics due); the deployed actor normalises as predict does
    normalizer = getattr(policy, "obs_normalizer", None)
    try:
        with (normalizer.paused() if normalizer is not None else contextlib.nullcontext()), \
                _FiringStats([actor_core, critic_core]) as stats:
            # counted apart: a critic that runs the actor's core (critic_core="shared") runs
            # the same modules a second time, which the deployed actor does not
            counted_actor = count_ops_by_module(policy, lambda: call(True), roles)
            counted = count_ops_by_module(policy, lambda: call(False), roles)
            rate = stats.rate(actor_core)
            critic_rate = stats.rate(critic_core) if critic_core is not actor_core else None
    finally:
        policy.set_training_mode(was_training)

    per_decision = 1.0 / (T * n_envs)
    training_pass = {k: v.scaled(per_decision) for k, v in counted.per_module.items()}
    actor_pass = {k: v.scaled(per_decision) for k, v in counted_actor.per_module.items()}
    # the actor's modules as the deployed actor runs them, the critic's own from the critic pass
    per_module = {**training_pass, **actor_pass}
    notes = list(counted.notes)
    actor_path = _names_of(policy, names, _ACTOR_PATH)
    critic_path = _names_of(policy, names, _CRITIC_PATH)
    core = OpCounts() if recurrent else None
    agent, with_critic = OpCounts(), OpCounts()
    for name, counts in training_pass.items():
        if not (_under(name, actor_path) or _under(name, critic_path)):
            notes.append(f"{name} is neither on the actor nor on the critic path of a standard "
                         "policy; counted in agent_with_critic, and in agent where predict's "
                         "pass runs it")
        with_critic = with_critic + counts
    for name, counts in actor_pass.items():
        agent = agent + counts
        if recurrent and _under(name, core_names) and not _under(name, outside_core):
            core = core + counts
    if recurrent and policy.shared_lstm:
        notes.append("actor and critic share one core: counted once in agent_with_critic")
    return EnergyReport(
        policy_name=type(policy).__name__, n_decisions=T * n_envs, constants=constants,
        core_counts=core, agent_counts=agent, agent_with_critic_counts=with_critic,
        firing_rate=rate, critic_firing_rate=critic_rate, per_module=per_module,
        notes=tuple(notes))
