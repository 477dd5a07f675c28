"""The benchmarks' own arithmetic (benchmarks/common.py), on hand-made run logs."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import RUN_COMMIT, reusable_summary, steady_trained_per_s  # noqa: E402


def log(tmp_path, updates):
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"train_wall_s": t, "actor/trained_env_steps": n}) for t, n in updates)
    )
    return tmp_path


def test_steady_rate_is_the_window_s_steps_over_the_window(tmp_path):
    # 1000 steps every second for 20 s: the middle half (5-15 s] holds 10 updates
    run = log(tmp_path, [(float(t), 1000) for t in range(1, 21)])
    assert steady_trained_per_s(run) == pytest.approx(1000.0)


def test_updates_logged_at_one_poll_do_not_blow_the_rate_up(tmp_path):
    # the async driver logs every update a poll finds at that poll's time: two at 40 s, the run ends at 80 s
    run = log(tmp_path, [(20.0, 880), (40.0, 880), (40.0, 880), (80.0, 880)])
    assert steady_trained_per_s(run) == pytest.approx(2 * 880 / 40.0)


def test_too_few_updates_give_no_steady_rate(tmp_path):
    assert steady_trained_per_s(log(tmp_path, [(10.0, 100), (20.0, 100)])) is None
    assert steady_trained_per_s(log(tmp_path, [(1.0, 100), (2.0, 100), (100.0, 100)])) is None


def test_a_run_stopped_early_or_of_other_code_is_not_reused(tmp_path):
    """A benchmark resumed in the same --out-dir must not take a run that a signal stopped before its budget (it
    would count a third of a run as a whole one), nor one made by other code."""
    run = tmp_path / "run"
    run.mkdir()
    summary = {"commit": RUN_COMMIT, "stopped": None, "env_steps": 350_000}
    (run / "summary.json").write_text(json.dumps(summary))
    assert reusable_summary(run) == summary
    (run / "summary.json").write_text(json.dumps({**summary, "stopped": "SIGTERM", "env_steps": 147_308}))
    assert reusable_summary(run) is None
    (run / "summary.json").write_text(json.dumps({**summary, "commit": "0123456789ab"}))
    assert reusable_summary(run) is None


def test_rows_not_rerun_keep_their_own_provenance_and_other_settings_are_not_mixed(tmp_path, monkeypatch):
    """A benchmark re-run for one size keeps the other sizes' rows with the command / commit / date that made them,
    in order; a results file made with other settings (another cost profile) contributes no row."""
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    old = {"command": "python old.py --gpus 8 16", "machine": {"cpu": "x"}, "commit": "aaa", "date": "d0",
           "profile": "p", "workloads": [{"gpus": 8, "v": 1}, {"gpus": 16, "v": 2}, {"gpus": 32, "v": 3}]}  # fmt: skip
    (tmp_path / "emu.json").write_text(json.dumps(old))
    new = [{"gpus": 32, "v": 30, "command": "python new.py --gpus 32", "commit": "bbb", "date": "d1"}]
    rows = common.merge_rows("emu", new, "gpus", [8, 16, 32], same={"profile": "p"})
    assert [(r["gpus"], r["v"], r["commit"], r["command"]) for r in rows] == [
        (8, 1, "aaa", "python old.py --gpus 8 16"),
        (16, 2, "aaa", "python old.py --gpus 8 16"),
        (32, 30, "bbb", "python new.py --gpus 32"),
    ]
    other = common.merge_rows("emu", new, "gpus", [8, 16, 32], same={"profile": "q"})
    assert [r["gpus"] for r in other] == [32]
