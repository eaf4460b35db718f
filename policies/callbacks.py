"""SB3 callbacks for the spiking policies."""
from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["FiringRateCallback"]


class FiringRateCallback(BaseCallback):
    """Logs the mean firing rate of the spiking cores' readout layer over each rollout, as
    ``spikes/firing_rate_actor`` (and ``spikes/firing_rate_critic`` when the critic has its own
    core) in SB3's logger, so it shows in stdout, CSV and TensorBoard.

    Works with any policy that has a ``cores()`` method (:class:`policies.GRSNPolicy`,
    :class:`policies.LIFPolicy`, :class:`policies.NoTAPPolicy`); with another policy it raises a
    TypeError at the start of training.
    """

    def _on_training_start(self) -> None:
        if not hasattr(self.model.policy, "cores"):
            raise TypeError(
                f"FiringRateCallback needs a spiking policy (GRSNPolicy, LIFPolicy, NoTAPPolicy); "
                f"got {type(self.model.policy).__name__}")

    def _on_rollout_start(self) -> None:
        for core in self.model.policy.cores():
            core.reset_firing_stats()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        policy = self.model.policy
        self.logger.record("spikes/firing_rate_actor", policy.lstm_actor.firing_rate())
        if policy.lstm_critic is not None:
            self.logger.record("spikes/firing_rate_critic", policy.lstm_critic.firing_rate())
