"""Run telemetry: metrics log, progress bar, learning-curve plot."""
