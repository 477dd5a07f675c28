"""Episodes as a rollout records them, for the learner's tests."""

import numpy as np
import pytest
import torch

from verl_async_vla.models import PolicyObs
from verl_async_vla.sampling.trajectory import Episode


def _rollout_episodes(policy, n=3, decisions=3, seed=0, version=0):
    """Episodes whose actions, log-probs, values (and flow traces) come from the policy's own act(), as a rollout
    records them, every decision stamped with `version`."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        e = Episode(i, i, "reach the red cube", env_steps=2 * decisions)
        for _ in range(decisions):
            image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            state = rng.normal(size=4).astype(np.float32)
            with torch.no_grad():
                out = policy.act(PolicyObs(torch.from_numpy(image[None]), torch.from_numpy(state[None]),
                                           ["reach the red cube"]))  # fmt: skip
            e.image.append(image)
            e.state.append(state)
            e.actions.append(out.actions[0].numpy())
            e.log_prob.append(float(out.log_prob[0]))
            e.value.append(float(out.value[0]))
            if out.trace is not None:
                e.trace.append(out.trace[0].numpy())
            e.reward.append(float(rng.random() < 0.3))
            e.version.append(version)
        eps.append(e)
    return eps


@pytest.fixture
def rollout_episodes():
    return _rollout_episodes
