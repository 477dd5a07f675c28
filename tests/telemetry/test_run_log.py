"""Metrics go to metrics.jsonl and, through verl's own Tracking, to the backends named in trainer.logger."""

import json

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.telemetry.run_log import RunLog


def test_records_reach_metrics_jsonl_and_verl_tracking_backends(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "verl_file_logger.jsonl"))
    log = RunLog(
        tmp_path / "run", RunConfig(), total_env_steps=100, progress=False, backends=["console", "file"]
    )
    log.log({"iteration": 1, "env_steps": 40, "train/success": 0.25, "note": "text is kept out of Tracking"})
    log.close()
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train/success"] == 0.25 and record["note"] == "text is kept out of Tracking"
    tracked = json.loads((tmp_path / "verl_file_logger.jsonl").read_text().splitlines()[0])
    assert (
        tracked["step"] == 40 and tracked["data"]["train/success"] == 0.25 and "note" not in tracked["data"]
    )
    assert "train/success" in capsys.readouterr().out  # verl's console backend


def test_no_backend_means_no_tracking(tmp_path):
    log = RunLog(tmp_path / "run", RunConfig(), total_env_steps=10, progress=False)
    assert log.tracking is None
    log.close()
