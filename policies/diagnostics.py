"""An instrument of the learning signal of a recurrent policy under RecurrentPPO.

:class:`LearningSignalCallback` measures, once per PPO update and for any sb3-contrib recurrent
policy (a spiking one from :mod:`policies` or sb3-contrib's ``MlpLstmPolicy``), where the
learning signal goes:

- ``grad_core_actor``: norm of the gradient that the actor (policy-gradient) loss sends into the
  actor's memory core, at the start of the update (ratio 1, advantages normalised as
  RecurrentPPO does);
- ``grad_core_entropy``: the same for the entropy bonus (times ``ent_coef``);
- ``grad_core_critic``: norm of the gradient of the value loss (times ``vf_coef``) into the core
  the critic reads (its own core, or the actor's when they share one);
- ``grad_core_aux``: the auxiliary loss's gradient into the actor core (0 without one);
- ``grad_total`` and ``clipped_fraction``: the norm of the gradient that ``max_grad_norm``
  clips, over every parameter, and the fraction of it the clip removes (``1 - max_grad_norm /
  grad_total`` when positive); a spiking policy's auxiliary gradient is part of it with
  ``aux_clip="joint"`` and joins after the clip otherwise (``"auto"``, ``"scaled"``, ``"none"``).
  Both describe one clip over the whole gradient, RecurrentPPO's: with a spiking policy's
  ``grad_clip="split"`` (the default since 0.11) the policy clips the critic's half and the
  actor's each by its own norm instead, so ``clipped_fraction`` is what the joint clip would
  remove, not what the split one does;
- ``flip_rate`` (spiking cores): the fraction of the stored rollout's spikes that differ when the
  same sequences are run through the core again after the update -- how much one update moves
  the memory's output;
- ``firing_rate`` of the actor's readout layer over the rollout;
- ``clip_fraction``, ``approx_kl``: RecurrentPPO's own statistics of that update;
- ``explained_variance``, ``value_loss``: RecurrentPPO's own statistics of the critic in that
  update (``1 - Var(returns - values) / Var(returns)`` over the rollout, with the values the
  critic predicted while collecting it; and the value loss). An explained variance that stays
  at 0 while the returns vary is a critic predicting one constant: a ``tanh`` value head
  saturated by unnormalised returns (docs/RESULTS.md, "What the critics predict");
- ``probe_r2`` every ``probe_every`` updates: cross-validated R^2 of a linear (ridge) probe from
  the actor core's readout (what the heads see) to a hidden target -- by default the
  standardised observation difference ``o_t - o_{t-1}`` (available for every task), or a
  quantity read from the simulator with ``probe_target`` (e.g. the masked velocities).

The measurements run on a copy of the update's data, outside RecurrentPPO's training step, so
they do not change what is learned (NumPy's global random state, which the rollout buffer's
shuffling uses, is saved and restored). Values go to the SB3 logger (``diag/...``, so to
TensorBoard when ``tensorboard_log`` is set) and, with ``csv_path``, one CSV row per update.

Example::

    from sb3_contrib import RecurrentPPO
    import policies
    from policies.diagnostics import LearningSignalCallback
    model = RecurrentPPO(policies.GRSNPolicy, "CartPole-P-v0", n_steps=128)
    model.learn(4096, callback=LearningSignalCallback(csv_path="runs/diag.csv"))
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Callable, Optional

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from .cores import SpikingCore

__all__ = ["LearningSignalCallback", "ridge_cv_r2", "FIELDS", "VELOCITY_INDICES",
           "hidden_velocity"]

#: task -> indices of the simulator's ``unwrapped.state`` that the observation hides
VELOCITY_INDICES = {"CartPole-P-v0": (1, 3), "Pendulum-P-v0": (1,)}


def hidden_velocity(task: str) -> Optional[Callable[[Any], np.ndarray]]:
    """The ``probe_target`` reading the masked velocities of ``task`` from its simulator
    (CartPole-P: cart and pole velocity; Pendulum-P: angular velocity), or ``None`` for a task
    without one here (the probe then targets the observation difference)."""
    idx = VELOCITY_INDICES.get(task)
    if idx is None:
        return None
    return lambda env: np.asarray(env.state, dtype=np.float64)[list(idx)]

FIELDS = ["update", "timesteps", "grad_core_actor", "grad_core_entropy", "grad_core_critic",
          "grad_core_aux", "grad_total", "clipped_fraction", "flip_rate", "firing_rate",
          "clip_fraction", "approx_kl", "aux_loss", "probe_r2", "explained_variance",
          "value_loss"]


def ridge_cv_r2(x: np.ndarray, y: np.ndarray, folds: int = 4,
                alphas: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0)) -> float:
    """Cross-validated R^2 of a ridge regression from ``x`` [n, d] to ``y`` [n, k] (contiguous
    folds, the best penalty kept, R^2 of the pooled predictions averaged over the columns of
    ``y``). Penalties are per sample, on centred (unscaled) features."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    if len(x) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} samples for {folds}-fold probes, "
                         f"got {len(x)}")
    edges = np.linspace(0, len(x), folds + 1).astype(int)
    best = -math.inf
    for alpha in alphas:
        pred = np.empty_like(y)
        for a, b in zip(edges[:-1], edges[1:]):
            train = np.r_[0:a, b:len(x)]
            xm, ym = x[train].mean(0), y[train].mean(0)
            xt = x[train] - xm
            gram = xt.T @ xt + alpha * len(xt) * np.eye(x.shape[1])
            w = np.linalg.solve(gram, xt.T @ (y[train] - ym))
            pred[a:b] = (x[a:b] - xm) @ w + ym
        ss_tot = ((y - y.mean(0)) ** 2).sum(0)
        keep = ss_tot > 0
        if not keep.any():
            return float("nan")
        r2 = 1.0 - ((y - pred) ** 2).sum(0)[keep] / ss_tot[keep]
        best = max(best, float(r2.mean()))
    return best


def _norm(grads) -> float:
    return float(math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None)))


class LearningSignalCallback(BaseCallback):
    """Per-update measurements of the learning signal (see the module docstring).

    :param csv_path: a CSV file to append one row per update to (created with a header).
    :param probe_every: fit the readout probe every this many updates (0: never).
    :param probe_target: ``env -> np.ndarray`` called on each training env copy (``VecEnv.
        env_method``-free: it gets ``training_env.envs[i].unwrapped`` of a DummyVecEnv) after
        every step, giving the hidden quantity the probe should recover; ``None`` probes the
        standardised observation difference.
    :param verbose: 1 prints one line per update.
    """

    def __init__(self, csv_path: Optional[str] = None, probe_every: int = 5,
                 probe_target: Optional[Callable[[Any], np.ndarray]] = None, verbose: int = 0):
        super().__init__(verbose)
        if probe_every < 0:
            raise ValueError(f"probe_every must be >= 0, got {probe_every}")
        self.csv_path = csv_path
        self.probe_every = probe_every
        self.probe_target = probe_target
        self.rows: list[dict[str, float]] = []
        self._pending: Optional[dict[str, float]] = None
        self._batch = None
        self._spikes_before: Optional[th.Tensor] = None
        self._targets: list[np.ndarray] = []

    # ------------------------------------------------------------------ SB3 hooks
    def _on_rollout_start(self) -> None:
        self._finish_pending()
        self._targets = []
        if self.probe_target is not None:
            self._targets.append(self._read_targets())

    def _on_step(self) -> bool:
        if self.probe_target is not None:
            self._targets.append(self._read_targets())
        return True

    def _on_rollout_end(self) -> None:
        state = np.random.get_state()
        try:
            buf = self.model.rollout_buffer
            self._split = np.random.randint(buf.buffer_size * buf.n_envs)  # what get() draws
            np.random.set_state(state)
            self._batch = next(buf.get(batch_size=None))
        finally:
            np.random.set_state(state)
        row = dict(update=len(self.rows) + 1, timesteps=self.num_timesteps)
        row.update(self._gradients(self._batch))
        latent, spikes = self._actor_readout(self._batch)
        self._spikes_before = spikes
        mask = self._batch.mask > 1e-8
        row["firing_rate"] = (float(spikes[mask].float().mean()) if spikes is not None
                              else float("nan"))
        row["probe_r2"] = float("nan")
        if self.probe_every and (len(self.rows) % self.probe_every == 0):
            row["probe_r2"] = self._probe(latent)
        self._pending = row

    def _on_training_end(self) -> None:
        self._finish_pending()

    # ------------------------------------------------------------------ measurements
    def _loss_terms(self, batch) -> dict[str, th.Tensor]:
        policy, model = self.model.policy, self.model
        actions = batch.actions
        if isinstance(model.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        mask = batch.mask > 1e-8
        inject = getattr(policy, "aux_inject", None)
        if inject is not None:
            policy.aux_inject = False
        try:
            values, log_prob, entropy = policy.evaluate_actions(
                batch.observations, actions, batch.lstm_states, batch.episode_starts)
        finally:
            if inject is not None:
                policy.aux_inject = inject
        adv = batch.advantages
        if model.normalize_advantage:
            adv = (adv - adv[mask].mean()) / (adv[mask].std() + 1e-8)
        ratio = th.exp(log_prob - batch.old_log_prob)
        terms = {
            "actor": -(adv * ratio)[mask].mean(),
            "entropy": model.ent_coef * -(entropy[mask].mean() if entropy is not None
                                          else -log_prob[mask].mean()),
            "critic": model.vf_coef * ((batch.returns - values.flatten()) ** 2)[mask].mean(),
        }
        aux = getattr(policy, "last_aux_tensor", None)
        if aux is not None:
            terms["aux"] = aux * float(policy.aux_kwargs["aux_coef"])
        return terms

    def _gradients(self, batch) -> dict[str, float]:
        policy = self.model.policy
        actor_params = [p for p in policy.lstm_actor.parameters() if p.requires_grad]
        critic_core = policy.lstm_critic if policy.lstm_critic is not None else (
            policy.lstm_actor if policy.shared_lstm else None)
        critic_params = ([p for p in critic_core.parameters() if p.requires_grad]
                         if critic_core is not None else [])
        params = [p for p in policy.parameters() if p.requires_grad]
        policy.set_training_mode(True)
        try:
            terms = self._loss_terms(batch)
            out = {}
            for name, loss, on in (("actor", terms["actor"], actor_params),
                                   ("entropy", terms["entropy"], actor_params),
                                   ("critic", terms["critic"], critic_params),
                                   ("aux", terms.get("aux"), actor_params)):
                if loss is None or not on or not loss.requires_grad:
                    out[f"grad_core_{name}"] = 0.0
                    continue
                grads = th.autograd.grad(loss, on, retain_graph=True, allow_unused=True)
                out[f"grad_core_{name}"] = _norm(grads)
            # the auxiliary gradient is clipped with the rest only with aux_clip="joint"
            joint = getattr(policy, "aux_kwargs", {}).get("aux_clip", "joint") == "joint"
            total = sum(v for k, v in terms.items() if k != "aux" or joint)
            grads = th.autograd.grad(total, params, allow_unused=True)
            out["grad_total"] = _norm(grads)
            max_norm = self.model.max_grad_norm
            out["clipped_fraction"] = (max(0.0, 1.0 - max_norm / out["grad_total"])
                                       if out["grad_total"] > 0 else 0.0)
        finally:
            policy.set_training_mode(False)
        return out

    @th.no_grad()
    def _actor_readout(self, batch) -> tuple[th.Tensor, Optional[th.Tensor]]:
        """The actor core's readout over the batch ([padded rows, D]) and, for a spiking core,
        its spikes (the first ``hidden_size`` columns)."""
        policy = self.model.policy
        features = policy.extract_features(batch.observations)
        if not policy.share_features_extractor:
            features = features[0]
        latent, _ = policy._process_sequence(features, batch.lstm_states.pi,
                                             batch.episode_starts, policy.lstm_actor)
        core = policy.lstm_actor
        spikes = latent[:, :core.hidden_size] if isinstance(core, SpikingCore) else None
        return latent, spikes

    def _probe(self, latent: th.Tensor) -> float:
        batch = self._batch
        mask = (batch.mask > 1e-8).cpu().numpy()
        x = latent.cpu().numpy()
        if self.probe_target is None:
            # rows are [n_seq, max_len] flattened: o_t - o_{t-1} inside one sequence, where
            # both are real (unpadded) steps of the same episode
            n_seq = batch.lstm_states.pi[0].shape[1]
            obs = batch.observations.reshape(n_seq, -1, *batch.observations.shape[1:])
            obs = obs.reshape(n_seq, obs.shape[1], -1).cpu().numpy()
            m = mask.reshape(n_seq, -1)
            starts = batch.episode_starts.reshape(n_seq, -1).cpu().numpy()
            ok = m[:, 1:] & m[:, :-1] & (starts[:, 1:] == 0)
            y = (obs[:, 1:] - obs[:, :-1])[ok]
            x = x.reshape(n_seq, -1, x.shape[-1])[:, 1:][ok]
        else:
            y = self._aligned_targets()[mask]
            x = x[mask]
        if len(x) < 8:
            return float("nan")
        std = y.std(0)
        y = y[:, std > 0] / std[std > 0]
        if y.shape[1] == 0:
            return float("nan")
        return ridge_cv_r2(x, y)

    def _read_targets(self) -> np.ndarray:
        envs = self.training_env.envs
        return np.stack([np.asarray(self.probe_target(e.unwrapped), dtype=np.float64)
                         for e in envs])

    def _aligned_targets(self) -> np.ndarray:
        """Targets of the batch's rows: buffer step t holds the observation read with
        ``_targets[t]``; the buffer flattens env-major and the full-batch ``get`` rolls the rows
        by the split index it drew (``self._split``); padded rows stay zero."""
        n_steps = self.model.rollout_buffer.buffer_size
        t = np.stack(self._targets[:n_steps])          # [n_steps, n_envs, k]
        t = t.swapaxes(0, 1).reshape(-1, t.shape[-1])  # env-major, as the buffer flattens
        order = np.concatenate([np.arange(self._split, len(t)), np.arange(self._split)])
        mask = (self._batch.mask > 1e-8).cpu().numpy()
        out = np.zeros((len(mask), t.shape[1]))
        out[mask] = t[order]
        return out

    def _finish_pending(self) -> None:
        if self._pending is None:
            return
        row = self._pending
        self._pending = None
        policy = self.model.policy
        if self._spikes_before is not None:
            _, after = self._actor_readout(self._batch)
            mask = self._batch.mask > 1e-8
            row["flip_rate"] = float((after[mask] != self._spikes_before[mask]).float().mean())
        else:
            row["flip_rate"] = float("nan")
        values = self.model.logger.name_to_value
        row["clip_fraction"] = float(values.get("train/clip_fraction", float("nan")))
        row["approx_kl"] = float(values.get("train/approx_kl", float("nan")))
        row["explained_variance"] = float(values.get("train/explained_variance", float("nan")))
        row["value_loss"] = float(values.get("train/value_loss", float("nan")))
        row["aux_loss"] = float(getattr(policy, "last_aux_loss", float("nan")))
        self.rows.append(row)
        for key in FIELDS[2:]:
            self.logger.record(f"diag/{key}", row.get(key, float("nan")))
        if self.csv_path:
            new = not os.path.exists(self.csv_path)
            os.makedirs(os.path.dirname(os.path.abspath(self.csv_path)), exist_ok=True)
            with open(self.csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    w.writeheader()
                w.writerow({k: row.get(k, "") for k in FIELDS})
        if self.verbose:
            print(" ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                           for k in FIELDS if k in row), flush=True)
