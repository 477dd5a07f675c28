"""envs/base.py: how an env's episode start is drawn (shared by the LIBERO and MetaWorld shards)."""

import numpy as np
import pytest

from verl_async_vla.envs.base import HELD_OUT_SEED_BASE, PerEnvRngs


class Starts(PerEnvRngs):
    def __init__(self, n: int):
        self.rngs = [np.random.default_rng([0, i]) for i in range(n)]


TRAIN, HELD = list(range(40)), list(range(40, 50))


def test_an_evaluating_env_sees_many_held_out_starts_whatever_the_env_count():
    """Evaluation hands env j of n the seeds base + wave * n + j. With n a multiple of the held-out count, seed %
    len(held) gave env j the same start every wave (MT10 on 10 envs: one variation per task)."""
    for n in (5, 10, 20):
        starts = Starts(n)
        for j in range(n):
            seen = {
                starts.draw_start(j, HELD_OUT_SEED_BASE + wave * n + j, TRAIN, HELD)[0] for wave in range(10)
            }
            assert seen <= set(HELD) and len(seen) >= 4, (n, j, seen)


def test_held_out_and_training_starts_never_mix_and_pinned_seeds_repeat():
    starts = Starts(2)
    train = {starts.draw_start(0, None, TRAIN, HELD)[0] for _ in range(200)}
    assert train <= set(TRAIN) and len(train) > 30
    pinned = [starts.draw_start(1, HELD_OUT_SEED_BASE + 7, TRAIN, HELD) for _ in range(2)]
    assert pinned[0][0] == pinned[1][0] and pinned[0][1].integers(3) == pinned[1][1].integers(3)
    assert starts.draw_start(0, 123, TRAIN, HELD)[0] in TRAIN  # a pinned training seed stays in training


def test_an_empty_split_is_refused():
    with pytest.raises(ValueError, match="eval_variations"):
        Starts(1).draw_start(0, HELD_OUT_SEED_BASE, TRAIN, [])
