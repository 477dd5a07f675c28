"""The world-model benchmark's arithmetic (benchmarks/world_model.py), on hand-made learning curves."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from world_model import steps_to, summarise  # noqa: E402


def curve(*points):
    return [(s, v, 0.0) for s, v in points]


def test_steps_to_the_first_evaluation_or_the_first_window_mean():
    c = curve((0, 0.3), (10, 0.85), (20, 0.7), (30, 0.82), (40, 0.9), (50, 0.9))
    assert steps_to(c, 0.8) == 10  # one lucky evaluation counts at once
    assert steps_to(c, 0.8, window=3) == 40  # (0.7 + 0.82 + 0.9) / 3 > 0.8; at 30: 0.79
    assert steps_to(c, 0.95) is None


def row(wm, seed, first, mean3, final):
    return {"world_model": wm, "seed": seed, "real_steps_to_success_0.8": first,
            "real_steps_to_success_0.8_mean3": mean3, "success_final": final, "success_mean_over_evals": final - 0.1}  # fmt: skip


def test_summary_ratios_against_the_runs_without_a_world_model():
    rows = [row(None, 0, 100, 120, 0.9), row("embedded", 0, 40, 60, 0.8),
            row(None, 1, 300, 280, 0.9), row("embedded", 1, None, 100, 0.7)]  # fmt: skip
    s = summarise(rows)
    assert s["none"]["mean_real_steps_to_0.8"] == 200 and s["none"]["real_steps_over_without"] is None
    # a seed that never reaches the target is counted apart, not averaged in as if it had
    assert s["embedded"]["never_reached"] == 1 and s["embedded"]["mean_real_steps_to_0.8"] == 40
    assert s["embedded"]["real_steps_over_without"] == 0.2
    assert s["embedded"]["real_steps_over_without_mean3"] == 0.4  # 80 / 200
    assert s["embedded"]["mean_success_final"] == 0.75


def test_a_partial_invocation_keeps_earlier_rows_only_of_the_same_world_model(tmp_path, monkeypatch):
    import json

    import world_model

    (tmp_path / "docs" / "results").mkdir(parents=True)
    pre = {"held_out_after": {"loss": 0.5}}
    old = [row(None, 0, 100, 120, 0.9), row("embedded", 0, 40, 60, 0.8)]
    (tmp_path / "docs" / "results" / "world_model.json").write_text(
        json.dumps({"pretrain": pre, "runs": old})
    )
    monkeypatch.setattr(world_model, "ROOT", tmp_path)
    kept = world_model.earlier_rows(pre)
    assert [(r["label"], r["imagined_workers"]) for r in kept] == [("none", 0), ("embedded", 1)]
    assert world_model.earlier_rows({"held_out_after": {"loss": 0.4}}) == []  # another model: nothing kept
