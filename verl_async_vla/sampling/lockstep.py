"""Lockstep episodes: every env of a worker group plays one episode, envs that finish early wait for the rest (the
synchronous barrier). The driver relays every observation and action: this is the loop of today's synchronous VLA
trainers, used by `trainer=sync` and by evaluation (both trainers)."""

from __future__ import annotations

import numpy as np
import ray
import torch
from verl import DataProto
from verl.single_controller.ray import RayWorkerGroup

from verl_async_vla.plumbing.wire import split_env_key
from verl_async_vla.sampling.trajectory import Episode, EpisodeAssembler


def play_episodes(
    env_wg: RayWorkerGroup,
    rollout_wg: RayWorkerGroup,
    deterministic: bool = False,
    seeds: np.ndarray | None = None,
    stages: int = 1,
) -> tuple[list[Episode], int, list[tuple[int, int]]]:
    """-> (one finished episode per env, control steps executed in the real simulator (world-model envs' are in
    their episodes), (id, decisions) of episodes an env fault cost:
    the env's row comes back `discarded`, sampling/env_faults.py). With `stages` = k > 1 the envs form k groups,
    each in lockstep on its own, so one group's inference overlaps another group's env step (the stage
    pipelining of RLinf / verl's VLA env loop)."""
    if seeds is None:
        obs = DataProto.concat(env_wg.reset())
    else:
        per_shard = np.array_split(seeds, len(env_wg.workers))
        obs = DataProto.concat(
            ray.get([w.reset.remote(None, s) for w, s in zip(env_wg.handles, per_shard, strict=True)])
        )
    keys = obs.non_tensor_batch["env_key"]
    assembler = EpisodeAssembler()
    assembler.begin(keys, list(obs.non_tensor_batch["instruction"]), obs.non_tensor_batch.get("imagined"))
    active = np.ones(len(keys), dtype=bool)
    finished: list[Episode] = []
    executed = 0
    groups = [g for g in np.array_split(np.arange(len(keys)), max(1, stages)) if len(g)]
    phase: dict[int, tuple[list[ray.ObjectRef], tuple]] = {}  # group -> (refs of its current call, context)

    def infer(g: int) -> None:
        rows = groups[g][active[groups[g]]]
        if not len(rows):
            return
        request = obs.select_idxs(rows)
        request.meta_info["deterministic"] = deterministic
        parts = [p for p in np.array_split(np.arange(len(rows)), len(rollout_wg.workers)) if len(p)]
        refs = [
            w.generate.remote(request.select_idxs(p)) for w, p in zip(rollout_wg.handles, parts, strict=False)
        ]
        phase[g] = (refs, ("infer", request))

    def step(g: int, request: DataProto, answer: DataProto) -> None:
        ranks, _ = split_env_key(answer.non_tensor_batch["env_key"])
        data = DataProto.from_dict(
            tensors={
                "actions": answer.batch["actions"],
                "active": torch.ones(len(answer), dtype=torch.bool),
            },
            non_tensors={"env_key": answer.non_tensor_batch["env_key"]},
        )
        phase[g] = (
            [env_wg.handles[r].step.remote(data) for r in np.unique(ranks)],
            ("step", request, answer),
        )

    for g in range(len(groups)):
        infer(g)
    row_of = {k: i for i, k in enumerate(keys.tolist())}
    while phase:
        ready, _ = ray.wait([r for refs, _ in phase.values() for r in refs], num_returns=1)
        g = next(g for g, (refs, _) in phase.items() if ready[0] in refs)
        refs, ctx = phase[g]
        if ray.wait(refs, num_returns=len(refs), timeout=0)[1]:
            continue  # the group's call is not complete yet
        del phase[g]
        result = DataProto.concat(ray.get(refs))
        if ctx[0] == "infer":
            step(g, ctx[1], result)
            continue
        _, request, answer = ctx
        finished += assembler.record(request, answer, result)
        real = ~result.non_tensor_batch["imagined"].astype(bool)  # every env worker's proto has the column
        executed += int(result.batch["env_steps"][torch.from_numpy(real)].sum())
        moved = np.array([row_of[k] for k in result.non_tensor_batch["env_key"].tolist()])
        obs.batch["image"][moved] = result.batch["image"]
        obs.batch["state"][moved] = result.batch["state"]
        active[moved[result.batch["done"].numpy()]] = False
        infer(g)
    return finished, executed, assembler.discarded
