"""Structured configs and the hydra config tree (`vla_trainer.yaml` + groups trainer/, env/, model/, algo/)."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).parent)
