"""The worker set a run spawns (controller/workers.py): what CPU each role may take beside the others."""

import dataclasses
import os

import pytest

from verl_async_vla.controller.workers import spawn_workers

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "trainer, actor_threads, threads", [("sync", -1, os.cpu_count()), ("async_vla", 0, 1)]
)
def test_the_producers_yield_to_the_actor_and_its_threads_follow_the_trainer(
    ray_session, small_cfg, trainer, actor_threads, threads
):
    # Ray started by the run (init_ray) puts every worker at nice 0; the producers add trainer.env_nice /
    # rollout_nice (19: the lowest). At Ray's own default (15) the actor would sit at 15 against their 19.
    t = dataclasses.replace(small_cfg.trainer, name=trainer, actor_threads=actor_threads, eval_episodes=0)
    workers = spawn_workers(dataclasses.replace(small_cfg, trainer=t))
    try:
        procs = workers.processes()
    finally:
        workers.release()
    nice = {p["role"]: p["nice"] for p in procs}
    assert nice["actor"] == 0, procs
    assert nice["env"] == nice["rollout"] == 19, procs
    actor = next(p for p in procs if p["role"] == "actor")
    assert actor["torch_threads"] == threads
    assert {p["torch_threads"] for p in procs if p["role"] != "actor"} == {t.torch_threads}
