"""How many episodes a run's budget still needs, so that producers stop starting episodes nobody will train.

The budget (`trainer.total_env_steps`) counts env steps that entered an update. The sync trainer meets it by
construction (it plays a batch, trains it, checks). The async trainer starts episodes ahead of training, so without
a cap it ends its runs with queued and open episodes that were executed but never trained: work thrown away, and a
throughput figure that counts it. The driver recomputes the cap as episode lengths become known and hands it to the
staleness gate (learning/staleness.py), which grants no start credit beyond it.
"""

from __future__ import annotations

import math


def episodes_for_budget(budget_env_steps: int, trained_env_steps: int, trained_episodes: int,
                        batch_episodes: int, max_episode_steps: int, real_episodes: int | None = None,
                        real_share: float = 1.0) -> int:  # fmt: skip
    """Episode starts the whole run needs: the episodes trained so far plus those of the updates the rest of the
    budget takes at the mean trained episode length (the env's longest before any is trained), in whole batches,
    since only a full batch trains (an update may take more than a batch: must-train stragglers). If episodes turn out
    shorter than the estimate, the cap rises on the next call (a short pause at the end); longer, and the budget is
    crossed a batch early, leaving the credits granted for that batch as episodes queued or open at the stop: counted
    in the ledger (`episodes_in_flight`, `episodes_abandoned_open`) and not in the trained-steps headline.

    With a world model (env.world_model) the budget counts real env steps only: `real_episodes` of the trained
    episodes came from the real simulator (None: all), and before any is trained `real_share` (real envs over all
    envs) estimates their share of a batch."""
    if batch_episodes < 1:
        raise ValueError(f"batch_episodes must be >= 1, got {batch_episodes}")
    real = trained_episodes if real_episodes is None else real_episodes
    mean_len = trained_env_steps / real if real else float(max_episode_steps)
    share = real / trained_episodes if trained_episodes and real else real_share
    left = max(0, budget_env_steps - trained_env_steps)
    updates_left = math.ceil(left / (batch_episodes * max(share, 1e-3) * max(mean_len, 1.0)))
    return trained_episodes + updates_left * batch_episodes
