"""One rollout loop: play a trained SB3 model in a VecEnv, threading its recurrent state.

:func:`rollout` acts with SB3's own ``model.predict(obs, state, episode_start)`` (the call
``evaluate_policy`` makes), so a recurrent policy sees exactly what it sees there: its state
carried from step to step and reset where an episode starts. It yields one :class:`Step` per
environment step (for all copies at once). With ``activity=True`` each step also carries the
actor core's output (the latent the heads read: GRSN / LIF spikes, the LSTM's ``h``), taken
with a forward hook on ``policy.lstm_actor`` while ``predict`` runs, so no private SB3 method is
called. :func:`collect_observations` is the energy estimate's input built on it.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np

__all__ = ["Step", "collect_observations", "rollout"]


class Step(NamedTuple):
    """One step of every copy of the env, as :func:`rollout` yields it.

    ``obs`` is what the policy saw (a dict of arrays for ``Dict`` observations),
    ``episode_start`` whether that observation starts an episode (the flag passed to
    ``predict``), ``action`` what it did, then the env's ``reward``,
    ``done`` and ``infos`` for that action. ``state`` is the recurrent state after the step
    (``predict``'s second output: ``(h, c)`` for the LSTM, ``(v, c)`` packed the same way for the
    spiking policies, each ``[layers, copies, hidden]``; ``None`` for a memoryless policy).
    ``readout`` is the actor core's output for this step, ``[copies, dim]``, when
    :func:`rollout` was asked for ``activity``, else ``None``."""

    obs: Any
    episode_start: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    infos: list
    state: Optional[tuple]
    readout: Optional[np.ndarray]


def _as_vec_env(env: Any):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

    if isinstance(env, gym.Env):
        single = env
        env = DummyVecEnv([lambda: single])
    if not isinstance(env, VecEnv):
        raise TypeError(f"env must be an SB3 VecEnv (e.g. policies.make_env(env_id, n_envs, "
                        f"seed)) or a gymnasium Env, got {type(env).__name__}")
    return env


def rollout(model: Any, env: Any, n_steps: Optional[int] = None, deterministic: bool = True,
            activity: bool = False, obs: Optional[np.ndarray] = None) -> Iterator[Step]:
    """Play ``model`` in ``env`` and yield a :class:`Step` per step, ``n_steps`` of them
    (``None``: until the caller stops iterating).

    :param model: an SB3 / sb3-contrib algorithm (``PPO``, ``RecurrentPPO``, ...) or anything
        with ``predict(obs, state=, episode_start=, deterministic=)``.
    :param env: an SB3 ``VecEnv`` (e.g. :func:`policies.make_env`) or a gymnasium ``Env``
        (wrapped in a ``DummyVecEnv``). VecEnvs reset a finished copy themselves; the next
        step's ``episode_start`` is that copy's ``done``, and every copy starts at step 0.
    :param deterministic: act with the distribution's mode (default) or sample.
    :param activity: also record the actor core's output (needs a recurrent policy with
        ``policy.lstm_actor``).
    :param obs: the env's current observations when the caller has just reset it (to read the
        simulator's state first); by default the env is reset here.
    """
    if not hasattr(model, "predict"):
        raise TypeError(f"model must be an SB3 algorithm (PPO, RecurrentPPO, ...) with "
                        f"predict(), got {type(model).__name__}")
    if n_steps is not None and (isinstance(n_steps, bool)
                                or not isinstance(n_steps, numbers.Integral) or n_steps < 1):
        raise ValueError(f"n_steps must be an int >= 1 or None, got {n_steps!r}")
    env = _as_vec_env(env)
    policy = getattr(model, "policy", None)
    if policy is not None:
        _check_observation_shapes(env, policy)
    hook, outputs = None, []
    if activity:
        core = getattr(policy, "lstm_actor", None)
        if core is None:
            raise ValueError(f"activity=True needs a recurrent policy (its core in "
                             f"policy.lstm_actor), got {type(policy).__name__}")
        # predict runs the actor core once per step; its first output is the readout
        # [1, copies, dim] (nn.LSTM: the output sequence; a SpikingCore: the latent)
        hook = core.register_forward_hook(lambda _m, _i, out: outputs.append(out[0]))
    try:
        if obs is None:
            obs = env.reset()
        n_envs = env.num_envs
        starts = np.ones((n_envs,), dtype=bool)
        state = None
        t = 0
        while n_steps is None or t < n_steps:
            outputs.clear()
            action, state = model.predict(obs, state=state, episode_start=starts,
                                          deterministic=deterministic)
            readout = None
            if activity:
                readout = outputs[-1].detach().cpu().numpy().reshape(n_envs, -1)
            seen = ({k: np.array(v, copy=True) for k, v in obs.items()} if isinstance(obs, dict)
                    else np.array(obs, copy=True))
            next_obs, reward, done, infos = env.step(action)
            yield Step(seen, starts, np.asarray(action), reward, np.asarray(done, dtype=bool),
                       infos, state, readout)
            obs, starts = next_obs, np.asarray(done, dtype=bool)
            t += 1
    finally:
        if hook is not None:
            hook.remove()


def collect_observations(model: Any, env: Any, n_steps: int,
                         deterministic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Roll ``model`` out in ``env`` for ``n_steps`` steps (:func:`rollout`) and return what its
    policy saw: ``(observations [T, n_envs, *obs_shape], episode_starts [T, n_envs] float32)``,
    the input of the energy estimate (``estimate_energy(model, obs, starts)``); for ``Dict``
    observations, a dict with one such array per key."""
    if not (hasattr(model, "predict") and hasattr(model, "policy")):
        raise TypeError(f"model must be an SB3 algorithm (PPO, RecurrentPPO, ...) with predict() "
                        f"and .policy, got {type(model).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
    env = _as_vec_env(env)
    steps = list(rollout(model, env, int(n_steps), deterministic=deterministic))
    if isinstance(steps[0].obs, dict):
        obs = {k: np.stack([s.obs[k] for s in steps]) for k in steps[0].obs}
    else:
        obs = np.stack([s.obs for s in steps])
    return obs, np.stack([s.episode_start.astype(np.float32) for s in steps])


def _shapes(space: Any) -> Any:
    """A space's shape, or for a ``Dict`` space ``{key: shape}``."""
    inner = getattr(space, "spaces", None)
    if isinstance(inner, dict):
        return {k: getattr(v, "shape", None) for k, v in inner.items()}
    return getattr(space, "shape", None)


def _check_observation_shapes(env: Any, policy: Any) -> None:
    have, want = _shapes(env.observation_space), _shapes(policy.observation_space)
    if have != want:
        hint = "build the env the model was trained on"
        if (isinstance(have, tuple) and isinstance(want, tuple) and len(have) == 3
                and (have[2], have[0], have[1]) == want):
            hint = ("an image env in height-width-channel order: SB3 trained the model on it "
                    "through VecTransposeImage; pass model.get_env() (or wrap the env in "
                    "stable_baselines3.common.vec_env.VecTransposeImage)")
        raise ValueError(f"env observations have shape {have} but the model expects {want}; "
                         f"{hint}")
