import numpy as np
import torch

from verl_async_vla.learning.episode_queue import EpisodeQueue
from verl_async_vla.sampling.trajectory import Episode, episodes_to_proto


def part(ids, version, horizon=3):
    eps = []
    for eid in ids:
        ep = Episode(eid, eid, "x")
        for _ in range(2):
            ep.image.append(np.zeros((4, 4, 3), np.uint8))
            ep.state.append(np.zeros(2, np.float32))
            ep.actions.append(np.zeros((1, 2), np.float32))
            ep.log_prob.append(0.0)
            ep.value.append(0.0)
            ep.reward.append(0.0)
            ep.version.append(version)
        eps.append(ep)
    p = episodes_to_proto(eps, horizon)
    p.batch["prox_log_prob"] = torch.zeros_like(p.batch["old_log_prob"])
    p.batch["prox_values"] = torch.zeros_like(p.batch["values"])
    p.batch["prox_version"] = torch.full((len(p),), -1, dtype=torch.long)
    return p


def test_take_returns_the_chosen_rows_and_keeps_the_rest_in_order():
    q = EpisodeQueue()
    q.add(part([10, 11, 12], version=0))
    q.add(part([20, 21], version=1))
    assert len(q) == 5 and q.oldest_versions().tolist() == [0, 0, 0, 1, 1]
    batch = q.take(np.array([1, 3]))
    assert batch.non_tensor_batch["episode_id"].tolist() == [11, 20]
    assert q.all_ids() == [10, 12, 21] and len(q) == 3
    whole = q.take(np.array([0, 1]))  # a whole part leaves without a copy of the others
    assert whole.non_tensor_batch["episode_id"].tolist() == [10, 12] and q.all_ids() == [21]


def test_score_touches_only_rows_not_scored_under_the_version():
    q = EpisodeQueue()
    q.add(part([1, 2], version=0))
    q.add(part([3], version=0))
    calls = []

    def evaluate(p, rows):
        calls.append(p.non_tensor_batch["episode_id"][rows.numpy()].tolist())
        n = len(rows)
        return torch.ones(n, 3), torch.zeros(n, 3), torch.full((n, 3), 2.0)

    assert q.score(np.array([0, 2]), version=4, evaluate=evaluate) == 2
    assert q.score(np.array([0, 1, 2]), version=4, evaluate=evaluate) == 1  # only row 1 was left
    assert calls == [[1, 3], [2]]  # one call per scoring, with the episodes that needed it
    assert [p.batch["prox_version"].tolist() for p in q.parts] == [[4, 4], [4]]
    assert float(q.parts[1].batch["prox_values"][0, 0]) == 2.0


def test_rows_the_current_version_produced_take_the_rollouts_figures_without_a_model_call():
    q = EpisodeQueue()
    fresh, stale = part([1, 2], version=4), part([3], version=3)
    fresh.batch["old_log_prob"][:, :2] = -0.7
    fresh.batch["values"][:, :2] = 0.3
    q.add(fresh)
    q.add(stale)
    calls = []

    def evaluate(p, rows):
        calls.append(p.non_tensor_batch["episode_id"][rows.numpy()].tolist())
        n = len(rows)
        return torch.ones(n, 3), torch.zeros(n, 3), torch.full((n, 3), 2.0)

    assert (
        q.score(np.array([0, 1, 2]), version=4, evaluate=evaluate) == 1
    )  # only the version-3 episode is scored
    assert calls == [[3]]
    b = q.parts[0].batch
    assert torch.equal(b["prox_log_prob"], b["old_log_prob"]) and torch.equal(b["prox_values"], b["values"])
    assert b["prox_version"].tolist() == [4, 4]
    # a row with one older decision is not on-policy: mixing versions inside an episode is scored
    mixed = part([5], version=4)
    mixed.batch["policy_version"][0, 0] = 3
    q.add(mixed)
    assert q.score(np.array([3]), version=4, evaluate=evaluate) == 1 and calls[-1] == [5]
