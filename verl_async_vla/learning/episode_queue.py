"""The actor's queue of untrained episodes, kept as the parts they arrived in.

Episodes arrive in small pushes and leave in training batches. Concatenating every arrival into one growing batch
copies the whole queue each time (with two 224x224 cameras per decision, a queue of a few hundred episodes is
hundreds of MB: measured as a third of a second per arrival in the emulated-cluster runs). Here an arrival is
stored as is, rows are addressed by their position in the queue's order, and only the rows that leave are copied,
once, into the batch that trains on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from verl import DataProto

_NO_DECISION = np.iinfo(np.int64).max


def on_policy_rows(policy_version: torch.Tensor, mask: torch.Tensor, version: int) -> torch.Tensor:
    """(B,) True where every decision of the row was chosen by `version`: its behaviour policy is the proximal one,
    so pi_prox = mu and the values are the ones the rollout worker computed with the same weights (tested:
    tests/models/test_policy.py, act and evaluate agree). Such rows need no scoring pass."""
    return ((policy_version == version) | (mask == 0)).all(dim=1)


def take_behaviour_as_proximal(batch: torch.Tensor | dict, rows: torch.Tensor) -> None:
    """pi_prox and the values of `rows` from what the rollout recorded (the rows are on-policy)."""
    batch["prox_log_prob"][rows] = batch["old_log_prob"][rows]
    batch["prox_values"][rows] = batch["values"][rows]


def add_proximal_columns(part: DataProto) -> DataProto:
    """Empty pi_prox columns on an arrival, filled by `EpisodeQueue.score` (prox_version -1: not scored yet)."""
    b = part.batch
    b["prox_log_prob"], b["prox_values"] = torch.zeros_like(b["old_log_prob"]), torch.zeros_like(b["values"])
    b["prox_version"] = torch.full((len(part),), -1, dtype=torch.long)
    return part


class EpisodeQueue:
    def __init__(self) -> None:
        self.parts: list[DataProto] = []

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def add(self, part: DataProto) -> None:
        if len(part):
            self.parts.append(part)

    def _locate(self, rows: np.ndarray) -> Iterator[tuple[DataProto, int, np.ndarray, np.ndarray]]:
        """-> (part, its index, the part's local rows among `rows`, their positions in `rows`)."""
        rows = np.asarray(rows, dtype=np.int64)
        start = 0
        for i, part in enumerate(self.parts):
            mine = np.flatnonzero((rows >= start) & (rows < start + len(part)))
            if len(mine):
                yield part, i, rows[mine] - start, mine
            start += len(part)

    def column(self, key: str) -> np.ndarray:
        """A non-tensor column (episode_id, success, ...) over the whole queue, in queue order."""
        return np.concatenate([p.non_tensor_batch[key] for p in self.parts]) if self.parts else np.array([])

    def oldest_versions(self) -> np.ndarray:
        """Per episode, the policy version of its oldest decision."""
        out = []
        for p in self.parts:
            b = p.batch
            out.append(
                b["policy_version"].masked_fill(b["mask"] == 0, _NO_DECISION).min(dim=1).values.numpy()
            )
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def score(self, rows: np.ndarray, version: int,
              evaluate: Callable[[DataProto, torch.Tensor], tuple[torch.Tensor, ...]] | None) -> int:  # fmt: skip
        """pi_prox (log-prob and value under the current weights, `version`) for the given rows not yet scored
        under it, in one model call (many small calls cost more than one batch on an accelerator); rows produced
        by `version` itself take the rollout's own figures instead. With `evaluate` None (algo.proximal=first_epoch)
        only the latter: the others are left to the update. Returns how many rows the model scored."""
        todo = []
        for part, _, local, _ in self._locate(rows):
            b = part.batch
            local = torch.from_numpy(local)
            local = local[b["prox_version"][local] != version]
            fresh = on_policy_rows(b["policy_version"][local], b["mask"][local], version)
            take_behaviour_as_proximal(b, local[fresh])
            b["prox_version"][local[fresh]] = version
            local = local[~fresh]
            if len(local):
                todo.append((part, local))
        if not todo or evaluate is None:
            return 0
        gathered = [part.select_idxs(local.numpy()) for part, local in todo]
        batch = DataProto.concat(gathered) if len(gathered) > 1 else gathered[0]
        with torch.no_grad():
            log_prob, _, values = evaluate(batch, torch.arange(len(batch)))
        start = 0
        for part, local in todo:
            b, end = part.batch, start + len(local)
            b["prox_log_prob"][local] = log_prob[start:end]
            b["prox_values"][local] = values[start:end]
            b["prox_version"][local] = version
            start = end
        return start

    def take(self, rows: np.ndarray) -> DataProto | None:
        """Remove the given rows and return them as one batch (queue order); None if `rows` is empty."""
        if len(rows) == 0:
            return None
        taken, keep = [], []
        located = {i: local for _, i, local, _ in self._locate(rows)}
        for i, part in enumerate(self.parts):
            local = located.get(i)
            if local is None:
                keep.append(part)
                continue
            taken.append(part if len(local) == len(part) else part.select_idxs(local))
            rest = np.setdiff1d(np.arange(len(part)), local)
            if len(rest):
                keep.append(part.select_idxs(rest))
        self.parts = keep
        return DataProto.concat(taken) if len(taken) > 1 else taken[0]

    def all_ids(self) -> list[int]:
        return self.column("episode_id").tolist()
