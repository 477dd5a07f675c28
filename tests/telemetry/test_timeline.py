import json

import pytest

from verl_async_vla.telemetry.timeline import (
    Span,
    busy_fractions,
    ideal_bound,
    write_chrome_trace,
    write_gantt,
)


def spans():
    return [
        Span("env", "env/0", 0.0, 1.0, 8),
        Span("env", "env/0", 2.0, 3.0, 8),
        Span("env", "env/1", 0.0, 4.0, 8),
        Span("rollout", "rollout/0", 1.0, 1.5, 16),
        Span("actor", "actor/0", 3.0, 4.0, 4),
    ]


def test_busy_fraction_is_busy_time_over_wall_time_per_worker():
    busy = busy_fractions(spans(), 0.0, 4.0)
    assert busy["env"] == pytest.approx((2.0 + 4.0) / (4.0 * 2))
    assert busy["rollout"] == pytest.approx(0.5 / 4.0)
    assert busy["actor"] == pytest.approx(0.25)


def test_busy_fraction_clips_spans_to_the_window():
    assert busy_fractions([Span("env", "env/0", -1.0, 1.0)], 0.0, 2.0)["env"] == pytest.approx(0.5)


def test_ideal_bound_is_the_slowest_stage_capacity():
    caps = ideal_bound(spans(), env_steps=300)
    assert caps["env"] == pytest.approx(300 / 3.0)  # 6 s busy over 2 workers
    assert caps["rollout"] == pytest.approx(600.0)
    assert caps["actor"] == pytest.approx(300.0)
    assert caps["bound"] == pytest.approx(100.0)


def test_the_actor_is_credited_with_what_it_trained_and_counts_in_the_minimum():
    # the actor trained 60 of the 300 executed env steps in its 1 s busy: 60/s, the slowest stage
    caps = ideal_bound(spans(), env_steps=300, work={"actor": 60.0})
    assert caps["actor"] == pytest.approx(60.0)  # ignoring the override would give 300
    assert caps["env"] == pytest.approx(100.0)  # stages without an override keep the executed steps
    assert caps["bound"] == pytest.approx(60.0)  # leaving the actor out of the minimum would give 100


def test_chrome_trace_and_gantt_are_written(tmp_path):
    trace = json.loads(write_chrome_trace(spans(), tmp_path / "t.json").read_text())
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == 5 and complete[0]["dur"] == pytest.approx(1e6)
    assert write_gantt(spans(), tmp_path / "g.png", "test").stat().st_size > 1000
