"""Where worker processes may run: the core layout a trainer asks for, and pinning a process with all its threads."""

import os
import threading

import pytest

from verl_async_vla.plumbing.process import actor_thread_count, core_layout, pin_to_cores

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def test_actor_apart_gives_every_actor_rank_a_core_of_its_own_and_the_rest_to_the_others():
    assert core_layout("shared", 1, 2) is None
    assert core_layout("actor_apart", 1, 2) == ([1], [0])
    actor, others = core_layout("actor_apart", 2, 8)
    assert actor == [6, 7] and others == list(range(6))
    assert not set(actor) & set(others)


def test_a_layout_the_machine_cannot_hold_or_an_unknown_one_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="trainer.cpu_layout=shared"):
        core_layout("actor_apart", 2, 2)  # no core left for the producers
    with pytest.raises(ValueError, match="unknown"):
        core_layout("pinned", 1, 2)


@linux_only
def test_pinning_moves_every_thread_of_the_process_and_threads_started_later_inherit_it():
    before = os.sched_getaffinity(0)
    core = min(before)
    started, release = threading.Event(), threading.Event()
    seen: dict[str, set[int]] = {}

    def older() -> None:  # a thread that already runs when the process is pinned (Ray's, a lane)
        started.set()
        release.wait(10)
        seen["older"] = os.sched_getaffinity(0)

    t = threading.Thread(target=older)
    t.start()
    started.wait(10)
    try:
        assert pin_to_cores([core]) >= 2  # this thread and the older one
        later = threading.Thread(target=lambda: seen.__setitem__("later", os.sched_getaffinity(0)))
        later.start()
        later.join()
        release.set()
        t.join()
        assert os.sched_getaffinity(0) == {core}
        assert seen == {"older": {core}, "later": {core}}
        assert pin_to_cores(None) == 0 and os.sched_getaffinity(0) == {core}  # None: left as it is
    finally:
        release.set()
        pin_to_cores(before)
    assert os.sched_getaffinity(0) == before


def test_the_actor_thread_count_is_given_the_workers_own_or_the_cores_over_the_ranks():
    assert actor_thread_count(3, torch_threads=1, actor_ranks=1, cores=2) == 3
    assert actor_thread_count(0, torch_threads=2, actor_ranks=1, cores=8) == 2
    assert actor_thread_count(-1, torch_threads=1, actor_ranks=1, cores=2) == 2
    assert actor_thread_count(-1, torch_threads=1, actor_ranks=2, cores=8) == 4
    assert actor_thread_count(-1, torch_threads=1, actor_ranks=4, cores=2) == 1  # never none
    with pytest.raises(ValueError, match="trainer.actor_threads"):
        actor_thread_count(-2, torch_threads=1, actor_ranks=1, cores=2)
