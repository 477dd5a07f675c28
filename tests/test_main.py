"""The command line: a SIGTERM (a preempted job) stops a real run gracefully, with a checkpoint and a summary."""

import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("trainer", ["sync", "async_vla"])
def test_sigterm_stops_gracefully_with_checkpoint_and_summary(tmp_path, trainer):
    # the default run_dir (outputs/<trainer>_seed0_<now>): the run must keep to the one directory hydra made
    cmd = [sys.executable, "-m", "verl_async_vla.main", f"trainer={trainer}", "trainer.progress=false", "trainer.total_env_steps=10000000", "trainer.eval_episodes=0",
           "env.num_workers=1", "env.num_envs_per_worker=2", "env.image_size=32", "model.image_size=32",
           "model.channels=8", "model.hidden=32", "sft.demo_episodes=8", "sft.steps=5",
           f"sft.cache_dir={tmp_path / 'sft'}", "algo.train_batch_episodes=4", "algo.ppo_epochs=1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 240

    def started():
        logs = list((tmp_path / "outputs").glob("*/metrics.jsonl"))
        return len(logs) == 1 and len(logs[0].read_text().splitlines()) >= 3

    while not started():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-3000:]
    dirs = list((tmp_path / "outputs").iterdir())
    assert len(dirs) == 1, (
        dirs
    )  # one run, one directory (main.log, metrics, checkpoints and summary together)
    run_dir = dirs[0]
    assert (run_dir / "main.log").is_file() and run_dir.name.startswith(f"{trainer}_seed0_")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and summary["ledger"]["episodes_unaccounted"] == 0
    assert (run_dir / "checkpoints" / "final.safetensors").is_file()
