"""The POMDP task suite of GRSN.md section 6, as registered gymnasium ids, plus SB3 helpers.

Public names
------------
* :func:`register_envs` -- registers every id below with gymnasium (idempotent; returns the ids).
* :class:`ObservationSubsetWrapper` -- keeps a subset of the indices of a 1-D ``Box`` observation.
* :class:`CueRecallEnv` -- a pure memory task (id ``CueRecall-v0``).
* :class:`PrevActionRewardWrapper` -- appends the previous action and reward to the observation.
* :func:`make_env` -- an SB3 ``DummyVecEnv`` of ``Monitor``-wrapped copies of a registered id.
* :data:`MASKED_ENVS`, :data:`CUE_RECALL_ID`, :data:`POMDP_ENV_IDS` -- the id table.

Masked ("partially observed") classic-control / Box2D tasks, "-P" keeps positions/angles only and
"-V" keeps velocities only:

==================  ================  ===============  ==========================================
id                  base id           kept indices     kept quantities
==================  ================  ===============  ==========================================
CartPole-P-v0       CartPole-v1       (0, 2)           x, theta
CartPole-V-v0       CartPole-v1       (1, 3)           xdot, thetadot
Pendulum-P-v0       Pendulum-v1       (0, 1)           cos(theta), sin(theta)
Pendulum-V-v0       Pendulum-v1       (2,)             thetadot
LunarLander-P-v0    LunarLander-v3    (0, 1, 4, 6, 7)  x, y, angle, left/right leg contact
LunarLander-V-v0    LunarLander-v3    (2, 3, 5, 6, 7)  vx, vy, angular velocity, leg contacts
==================  ================  ===============  ==========================================

Each masked id uses the base id's ``max_episode_steps`` (CartPole-v1: 500, Pendulum-v1: 200,
LunarLander-v3: 1000), so ``gymnasium.make`` applies the same ``TimeLimit``; keyword arguments of
``gymnasium.make`` (``render_mode`` included) are passed through to the base environment. Note that
the paper's CartPole returns (a maximum of 200) correspond to CartPole-v0's 200-step limit; pass
``max_episode_steps=200`` to ``gymnasium.make`` to reproduce that horizon.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

__all__ = [
    "CUE_RECALL_ID",
    "MASKED_ENVS",
    "POMDP_ENV_IDS",
    "CueRecallEnv",
    "ObservationSubsetWrapper",
    "PrevActionRewardWrapper",
    "make_env",
    "make_masked_env",
    "register_envs",
]

#: Masked id -> (base gymnasium id, kept observation indices).
MASKED_ENVS: Mapping[str, tuple[str, tuple[int, ...]]] = {
    "CartPole-P-v0": ("CartPole-v1", (0, 2)),
    "CartPole-V-v0": ("CartPole-v1", (1, 3)),
    "Pendulum-P-v0": ("Pendulum-v1", (0, 1)),
    "Pendulum-V-v0": ("Pendulum-v1", (2,)),
    "LunarLander-P-v0": ("LunarLander-v3", (0, 1, 4, 6, 7)),
    "LunarLander-V-v0": ("LunarLander-v3", (2, 3, 5, 6, 7)),
}

#: The id of :class:`CueRecallEnv`.
CUE_RECALL_ID = "CueRecall-v0"

#: Every id registered by :func:`register_envs`, in registration order.
POMDP_ENV_IDS: tuple[str, ...] = (*MASKED_ENVS, CUE_RECALL_ID)

_MASKED_ENTRY_POINT = "policies.envs:make_masked_env"
_CUE_RECALL_ENTRY_POINT = "policies.envs:CueRecallEnv"


# --------------------------------------------------------------------------------------------
# Observation subset
# --------------------------------------------------------------------------------------------
class ObservationSubsetWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keep only some indices of a 1-D ``Box`` observation (in the order given).

    The new observation space is the old ``Box`` with ``low``/``high`` sliced at the same indices
    and the same dtype.

    Args:
        env: the environment; its observation space must be a 1-D ``gymnasium.spaces.Box``.
        indices: the indices to keep, a non-empty sequence of distinct integers in
            ``[0, obs_dim)`` (negative indices are not accepted, to keep the table unambiguous).

    Raises:
        TypeError: the observation space is not a 1-D ``Box``, or an index is not an integer.
        ValueError: ``indices`` is empty, has duplicates or is out of range.
    """

    def __init__(self, env: gym.Env, indices: Sequence[int]) -> None:
        obs_space = env.observation_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise TypeError(
                "ObservationSubsetWrapper needs a 1-D Box observation space, got "
                f"{obs_space!r}"
            )
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
            raise TypeError(f"indices must be a sequence of ints, got {type(indices).__name__}")
        kept: list[int] = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral):
                raise TypeError(f"indices must be integers, got {index!r}")
            kept.append(int(index))
        dim = obs_space.shape[0]
        if not kept:
            raise ValueError("indices must not be empty")
        if len(set(kept)) != len(kept):
            raise ValueError(f"indices must be distinct, got {kept}")
        bad = [i for i in kept if not 0 <= i < dim]
        if bad:
            raise ValueError(f"indices {bad} out of range for an observation of size {dim}")

        gym.utils.RecordConstructorArgs.__init__(self, indices=tuple(kept))
        gym.ObservationWrapper.__init__(self, env)
        self.indices: tuple[int, ...] = tuple(kept)
        self._index_array = np.asarray(kept, dtype=np.intp)
        self.observation_space = spaces.Box(
            low=obs_space.low[self._index_array],
            high=obs_space.high[self._index_array],
            dtype=obs_space.dtype,  # type: ignore[arg-type]
        )

    def observation(self, observation: Any) -> np.ndarray:
        """Return ``observation[indices]`` (a copy, in the observation space's dtype)."""
        return np.asarray(observation, dtype=self.observation_space.dtype)[self._index_array]


def make_masked_env(
    base_id: str, keep_indices: Sequence[int], **kwargs: Any
) -> ObservationSubsetWrapper:
    """Gymnasium entry point of the masked ids: the raw base env wrapped in an index subset.

    The base environment is built from its own entry point and spec kwargs (updated by
    ``kwargs``, e.g. ``render_mode``) *without* gymnasium's wrappers; ``gymnasium.make`` of the
    masked id then adds the env checker, order enforcing and the ``TimeLimit`` once, around the
    subset wrapper.

    Args:
        base_id: a registered gymnasium id, e.g. ``"CartPole-v1"``.
        keep_indices: the observation indices to keep (see :class:`ObservationSubsetWrapper`).
        **kwargs: keyword arguments for the base environment's constructor.

    Returns:
        The wrapped base environment.
    """
    spec = gym.spec(base_id)
    if spec.entry_point is None:
        raise ValueError(f"{base_id} has no entry_point")
    creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(spec.entry_point)
    base_kwargs = {**spec.kwargs, **kwargs}
    base = creator(**base_kwargs)
    return ObservationSubsetWrapper(base, keep_indices)


# --------------------------------------------------------------------------------------------
# Cue recall: a pure memory task
# --------------------------------------------------------------------------------------------
class CueRecallEnv(gym.Env[np.ndarray, np.int64]):
    """A pure memory task: recall a +-1 cue seen only in the first observation.

    Timeline of one episode (``gap = k``), observation ``o = [cue channel, is_first, is_recall]``
    (float32):

    * ``reset()`` returns ``o_0 = [c, 1, 0]`` with the cue ``c`` drawn uniformly from ``{-1, +1}``.
    * steps ``1 .. k`` return distractors ``o_t = [n_t, 0, 0]`` with ``n_t ~ N(0, noise^2)``
      i.i.d. and independent of ``c`` (``n_t = 0`` exactly when ``noise == 0``).
    * step ``k + 1`` returns the recall observation ``o_{k+1} = [0, 0, 1]`` (always exactly this).
    * step ``k + 2`` is the answer: the action taken on the recall observation is scored and the
      episode terminates (``terminated=True``) with the all-zero observation ``[0, 0, 0]``.

    Every episode is therefore exactly ``k + 2`` calls to :meth:`step` long (never truncated).
    Actions are ``Discrete(2)``: action ``1`` means "the cue was +1", action ``0`` means "the cue
    was -1", i.e. the correct answer is ``(c + 1) // 2``. The reward is 0 on every step but the
    last, whatever the action; on the last step it is ``+1`` if the answer is correct and ``-1``
    if it is wrong. The last step's ``info`` holds ``{"correct": bool}`` (``Monitor`` can log it
    as a success rate); no ``info`` ever holds the cue.

    Returns: a perfect policy (remember ``o_0[0]``, answer ``(c + 1) // 2``) gets exactly ``1``
    every episode. Any *memoryless* policy -- one whose action distribution depends only on the
    current observation, ``pi(a | o_t)``, with its own randomness independent of the environment --
    has expected return exactly ``0``:

        Only the answer step is rewarded, and the answer is drawn from ``pi(. | o_{k+1})`` with
        ``o_{k+1} = [0, 0, 1]`` the same vector for both cues. Let ``p = pi(1 | [0, 0, 1])``.
        Since ``c`` is uniform on ``{-1, +1}`` and independent of ``o_{k+1}`` and of the policy's
        randomness, ``P(correct) = P(c=+1) p + P(c=-1) (1 - p) = p/2 + (1 - p)/2 = 1/2``, so
        ``E[return] = (+1) P(correct) + (-1) (1 - P(correct)) = 1/2 - 1/2 = 0``. The distractors
        do not change this (they are independent of ``c``), so neither does ``noise``; any policy
        that remembers less than the cue's sign (e.g. one that only remembers distractors) is at
        chance for the same reason.

    Args:
        gap: ``k``, the number of distractor steps between the cue and the recall observation;
            an integer ``>= 0`` (``gap=0``: the recall observation comes right after the cue).
        noise: standard deviation of the Gaussian noise on the distractors' cue channel; a finite
            real ``>= 0``. With ``noise > 0`` the cue channel's bounds are ``(-inf, inf)``.
        render_mode: ``None``, ``"ansi"`` (a text line) or ``"rgb_array"`` (a small
            ``(16, 48, 3)`` uint8 image: cue channel, is_first, is_recall as three cells).

    Raises:
        ValueError: ``gap`` is not an integer ``>= 0`` (wrong types included, e.g. ``1.5`` or
            ``"3"``), ``noise`` is not a finite real ``>= 0``, or ``render_mode`` is not supported.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, gap: int = 5, noise: float = 0.0, render_mode: str | None = None) -> None:
        if isinstance(gap, bool) or not isinstance(gap, numbers.Integral) or gap < 0:
            raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
        if (
            isinstance(noise, bool)
            or not isinstance(noise, numbers.Real)
            or not math.isfinite(float(noise))
            or noise < 0
        ):
            raise ValueError(f"noise must be a finite real number >= 0, got {noise!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.gap: int = int(gap)
        self.noise: float = float(noise)
        self.render_mode = render_mode
        cue_bound = np.inf if self.noise > 0 else 1.0
        self.observation_space = spaces.Box(
            low=np.array([-cue_bound, 0.0, 0.0], dtype=np.float32),
            high=np.array([cue_bound, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Discrete(2)
        self._cue: int = 0
        self._t: int = 0
        self._done: bool = True
        self._obs = np.zeros(3, dtype=np.float32)

    @property
    def episode_length(self) -> int:
        """The number of :meth:`step` calls in every episode, ``gap + 2``."""
        return self.gap + 2

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new cue and return the cue observation ``[c, 1, 0]`` and an empty info."""
        super().reset(seed=seed)
        self._cue = 2 * int(self.np_random.integers(2)) - 1
        self._t = 0
        self._done = False
        self._obs = np.array([self._cue, 1.0, 0.0], dtype=np.float32)
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step; only the action on the recall observation is scored (see class)."""
        if self._done:
            raise RuntimeError("CueRecallEnv.step called before reset() or after termination")
        a = np.asarray(action)
        numeric = np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
        if a.size != 1 or not numeric or a.reshape(-1)[0] not in (0, 1):
            raise ValueError(f"action must be 0 or 1, got {action!r}")

        if self._t == self.gap + 1:  # the answer to the recall observation
            correct = int(a.reshape(-1)[0]) == (self._cue + 1) // 2
            self._t += 1
            self._done = True
            self._obs = np.zeros(3, dtype=np.float32)
            return self._obs.copy(), (1.0 if correct else -1.0), True, False, {"correct": correct}

        self._t += 1
        if self._t == self.gap + 1:
            self._obs = np.array([0.0, 0.0, 1.0], dtype=np.float32)
        else:
            distractor = float(self.np_random.normal(0.0, self.noise)) if self.noise > 0 else 0.0
            self._obs = np.array([distractor, 0.0, 0.0], dtype=np.float32)
        return self._obs.copy(), 0.0, False, False, {}

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: a text line; ``"rgb_array"``: a ``(16, 48, 3)`` uint8 image; else None."""
        if self.render_mode == "ansi":
            return (
                f"t={self._t} cue_channel={self._obs[0]:+.3f} "
                f"first={int(self._obs[1])} recall={int(self._obs[2])}"
            )
        if self.render_mode == "rgb_array":
            image = np.zeros((16, 48, 3), dtype=np.uint8)
            level = float(np.clip(self._obs[0], -1.0, 1.0))
            # cue channel: green for +1, red for -1, black for 0
            image[:, 0:16, 1] = int(255 * max(level, 0.0))
            image[:, 0:16, 0] = int(255 * max(-level, 0.0))
            image[:, 16:32, :] = 255 * int(self._obs[1])
            image[:, 32:48, :] = 255 * int(self._obs[2])
            return image
        return None


# --------------------------------------------------------------------------------------------
# Previous action and reward in the observation
# --------------------------------------------------------------------------------------------
class PrevActionRewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the previous action and the previous reward to a 1-D ``Box`` observation.

    The new observation is ``concat(obs, prev_action_features, [prev_reward])`` where
    ``prev_action_features`` is the one-hot of ``action - start`` for a ``Discrete`` action space
    and the flattened raw action for a ``Box`` action space (recorded as given, not clipped; its
    bounds in the new space are the action space's). Both are zeros after :meth:`reset`. The dtype
    is float64 if the wrapped observation is float64, float32 otherwise; the reward's bounds are
    ``(-inf, inf)``.

    Args:
        env: the environment; observation space a 1-D ``Box``, action space ``Discrete`` or
            ``Box``.

    Raises:
        TypeError: unsupported observation or action space.
    """

    def __init__(self, env: gym.Env) -> None:
        obs_space = env.observation_space
        act_space = env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise TypeError(
                f"PrevActionRewardWrapper needs a 1-D Box observation space, got {obs_space!r}"
            )
        if not isinstance(act_space, (spaces.Discrete, spaces.Box)):
            raise TypeError(
                "PrevActionRewardWrapper supports Discrete and Box action spaces, got "
                f"{act_space!r}"
            )
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

        dtype = np.float64 if obs_space.dtype == np.float64 else np.float32
        if isinstance(act_space, spaces.Discrete):
            self._action_dim = int(act_space.n)
            act_low = np.zeros(self._action_dim, dtype=np.float64)
            act_high = np.ones(self._action_dim, dtype=np.float64)
        else:
            self._action_dim = int(np.prod(act_space.shape))
            act_low = act_space.low.reshape(-1).astype(np.float64)
            act_high = act_space.high.reshape(-1).astype(np.float64)
        self._obs_dim = int(obs_space.shape[0])
        self._dtype = dtype
        self.observation_space = spaces.Box(
            low=np.concatenate([obs_space.low.astype(np.float64), act_low, [-np.inf]]).astype(dtype),
            high=np.concatenate([obs_space.high.astype(np.float64), act_high, [np.inf]]).astype(
                dtype
            ),
            dtype=dtype,  # type: ignore[arg-type]
        )

    def _action_features(self, action: Any) -> np.ndarray:
        act_space = self.env.action_space
        if isinstance(act_space, spaces.Discrete):
            a = np.asarray(action)
            if a.size != 1:
                raise ValueError(f"expected a single discrete action, got {action!r}")
            value = a.reshape(-1)[0]
            index = int(value) - int(act_space.start)
            if index != value - int(act_space.start) or not 0 <= index < self._action_dim:
                raise ValueError(f"action {action!r} is not in {act_space!r}")
            features = np.zeros(self._action_dim, dtype=self._dtype)
            features[index] = 1.0
            return features
        a = np.asarray(action, dtype=np.float64)
        if a.size != self._action_dim:
            raise ValueError(
                f"action of size {a.size} does not match the action space {act_space!r}"
            )
        return a.reshape(-1).astype(self._dtype)

    def _augment(self, obs: Any, action_features: np.ndarray, reward: float) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(obs, dtype=self._dtype).reshape(self._obs_dim),
                action_features,
                np.array([reward], dtype=self._dtype),
            ]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the wrapped env; previous action and reward are zeros."""
        obs, info = self.env.reset(seed=seed, options=options)
        return self._augment(obs, np.zeros(self._action_dim, dtype=self._dtype), 0.0), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env and append this step's action and reward to its observation."""
        features = self._action_features(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._augment(obs, features, float(reward)), reward, terminated, truncated, info


# --------------------------------------------------------------------------------------------
# Registration and the SB3 helper
# --------------------------------------------------------------------------------------------
def _register_once(
    env_id: str, entry_point: str, kwargs: dict[str, Any], max_episode_steps: int | None
) -> None:
    existing = gym.registry.get(env_id)
    if existing is not None:
        if (
            existing.entry_point == entry_point
            and existing.kwargs == kwargs
            and existing.max_episode_steps == max_episode_steps
        ):
            return
        raise ValueError(
            f"{env_id} is already registered with a different spec "
            f"(entry_point={existing.entry_point!r}, kwargs={existing.kwargs!r}, "
            f"max_episode_steps={existing.max_episode_steps!r})"
        )
    gym.register(
        id=env_id,
        entry_point=entry_point,
        max_episode_steps=max_episode_steps,
        kwargs=kwargs,
    )


def register_envs() -> tuple[str, ...]:
    """Register the POMDP suite with gymnasium; safe to call any number of times.

    Registers the masked ids of :data:`MASKED_ENVS` (entry point :func:`make_masked_env`, the base
    id's ``max_episode_steps``) and ``CueRecall-v0`` (:class:`CueRecallEnv`, no time limit: every
    episode terminates after ``gap + 2`` steps). An id that is already registered with the same
    spec is left alone (no warning).

    Returns:
        The registered ids, :data:`POMDP_ENV_IDS`.

    Raises:
        ValueError: one of the ids is already registered with a different spec.
    """
    for env_id, (base_id, keep) in MASKED_ENVS.items():
        _register_once(
            env_id,
            _MASKED_ENTRY_POINT,
            {"base_id": base_id, "keep_indices": keep},
            gym.spec(base_id).max_episode_steps,
        )
    _register_once(CUE_RECALL_ID, _CUE_RECALL_ENTRY_POINT, {}, None)
    return POMDP_ENV_IDS


def make_env(
    env_id: str,
    n_envs: int,
    seed: int | None,
    prev_action_reward: bool = False,
    **env_kwargs: Any,
) -> VecEnv:
    """An SB3 ``DummyVecEnv`` of ``n_envs`` ``Monitor``-wrapped copies of a gymnasium id.

    Built with :func:`stable_baselines3.common.env_util.make_vec_env`: copy ``i`` has its action
    space seeded with ``seed + i`` and its first reset seeded with ``seed + i``, so two calls with
    the same arguments produce the same observations for the same actions. :func:`register_envs`
    is called first, so the POMDP ids always resolve.

    Args:
        env_id: a registered gymnasium id (e.g. ``"CartPole-V-v0"``, ``"CueRecall-v0"``).
        n_envs: the number of copies, an integer ``>= 1``.
        seed: a non-negative integer, or ``None`` for unseeded environments.
        prev_action_reward: if true, wrap every copy (outside its ``Monitor``) in
            :class:`PrevActionRewardWrapper`.
        **env_kwargs: keyword arguments for ``gymnasium.make`` (e.g. ``gap=8`` for CueRecall,
            ``render_mode=...``, ``max_episode_steps=...``).

    Returns:
        The vectorised environment.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``env_id`` is not registered, ``n_envs < 1`` or ``seed < 0``.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    if isinstance(n_envs, bool) or not isinstance(n_envs, numbers.Integral):
        raise TypeError(f"n_envs must be an int, got {n_envs!r}")
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        seed = int(seed)
    if not isinstance(prev_action_reward, bool):
        raise TypeError(f"prev_action_reward must be a bool, got {prev_action_reward!r}")
    register_envs()
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"{env_id!r} is not a registered gymnasium id: {exc}") from exc
    wrapper_class: Callable[[gym.Env], gym.Env] | None = (
        PrevActionRewardWrapper if prev_action_reward else None
    )
    return make_vec_env(
        env_id,
        n_envs=int(n_envs),
        seed=seed,
        wrapper_class=wrapper_class,
        env_kwargs=dict(env_kwargs),
        vec_env_cls=DummyVecEnv,
    )
