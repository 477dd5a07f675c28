"""Stage spans -> timeline: Chrome/Perfetto trace, Gantt PNG, per-stage busy fractions and the ideal pipeline bound.

Every worker records spans (stage, start, end, batch size, policy version) with `SpanRecorder`; the controller
gathers them at the end of a run. Clocks are `time.time()` (one host, so worker clocks agree).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Span:
    stage: str  # "env" | "rollout" | "actor" | "weights" (publishing a version) | "driver"
    worker: str  # e.g. "env/0"
    start: float
    end: float
    batch: int = 0  # rows / envs / episodes handled
    version: int = -1  # policy version in use
    kind: str = ""  # what the stage did: env "reset" | "step"; actor "score" | "update"

    @property
    def duration(self) -> float:
        return self.end - self.start


MAX_SPANS = 100_000  # per recorder: a long run keeps its latest spans, not all of them (memory stays flat)


class SpanRecorder:
    """Cheap in-worker recorder (an append per call); disabled recorders cost one branch. It keeps the newest
    `MAX_SPANS` spans (an env lane of a day-long run would otherwise grow without bound): the timeline of a very
    long run covers its latest part."""

    def __init__(self, stage: str, worker: str, enabled: bool = True):
        self.stage, self.worker, self.enabled = stage, worker, enabled
        self.spans: deque[Span] = deque(maxlen=MAX_SPANS)

    def record(self, start: float, batch: int = 0, version: int = -1, kind: str = "") -> None:
        if self.enabled:
            self.spans.append(Span(self.stage, self.worker, start, time.time(), batch, version, kind))

    def drain(self) -> list[Span]:
        out, self.spans = list(self.spans), deque(maxlen=MAX_SPANS)
        return out


def busy_fractions(spans: list[Span], t0: float, t1: float) -> dict[str, float]:
    """Busy time of each stage / (wall time x workers of that stage): 1.0 means no bubbles."""
    wall = max(t1 - t0, 1e-9)
    out: dict[str, float] = {}
    for stage in sorted({s.stage for s in spans}):
        mine = [s for s in spans if s.stage == stage]
        workers = len({s.worker for s in mine})
        busy = sum(min(s.end, t1) - max(s.start, t0) for s in mine if s.end > t0 and s.start < t1)
        out[stage] = busy / (wall * workers)
    return out


def ideal_bound(spans: list[Span], env_steps: int, work: dict[str, float] | None = None) -> dict[str, float]:
    """Per-stage capacity in env steps/s if that stage never waited: the env steps it handled / (busy time / its
    workers). The pipeline bound is the slowest stage's capacity (every stage must process every sample).
    `work` overrides `env_steps` per stage where a stage handled a different amount: the actor (and the weight
    publisher) trained only the episodes that reached it, not the ones still open or queued when the run stopped;
    crediting it with every executed step would overstate its capacity."""
    caps: dict[str, float] = {}
    for stage in sorted({s.stage for s in spans} - {"driver"}):
        mine = [s for s in spans if s.stage == stage]
        workers = len({s.worker for s in mine})
        busy = sum(s.duration for s in mine) / workers
        done = (work or {}).get(stage, env_steps)
        caps[stage] = done / busy if busy > 0 else float("inf")
    caps["bound"] = min(caps.values()) if caps else 0.0
    return caps


def write_chrome_trace(spans: list[Span], path: Path) -> Path:
    """Chrome trace-event JSON (open in chrome://tracing or ui.perfetto.dev)."""
    t0 = min((s.start for s in spans), default=0.0)
    workers = sorted({s.worker for s in spans})
    events: list[dict[str, Any]] = [
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": i, "args": {"name": w}}
        for i, w in enumerate(workers)
    ]
    tid = {w: i for i, w in enumerate(workers)}
    for s in spans:
        events.append(
            {"name": s.stage, "ph": "X", "pid": 1, "tid": tid[s.worker], "ts": (s.start - t0) * 1e6,
             "dur": s.duration * 1e6, "args": {"batch": s.batch, "version": s.version, "kind": s.kind}}
        )  # fmt: skip
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    return path


def write_gantt(spans: list[Span], path: Path, title: str, window_s: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min((s.start for s in spans), default=0.0)
    t_end = t0 + window_s if window_s else max((s.end for s in spans), default=1.0)
    workers = sorted(
        {s.worker for s in spans},
        key=lambda w: ({"env": 0, "rollout": 1, "actor": 2, "weights": 3}.get(w.split("/")[0], 3), w),
    )
    colours = {
        "env": "tab:green",
        "rollout": "tab:blue",
        "actor": "tab:red",
        "weights": "tab:orange",
        "driver": "tab:gray",
    }
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(workers) + 1.2))
    for row, w in enumerate(workers):
        bars = [(s.start - t0, s.duration) for s in spans if s.worker == w and s.start < t_end]
        stage = w.split("/")[0]
        ax.broken_barh(bars, (row - 0.4, 0.8), color=colours.get(stage, "tab:purple"))
    ax.set_yticks(range(len(workers)), workers)
    ax.set_xlim(0, t_end - t0)
    ax.set_xlabel("seconds")
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def spans_to_dicts(spans: list[Span]) -> list[dict[str, Any]]:
    return [asdict(s) for s in spans]


def export_timeline(spans: list[Span], t0: float, t1: float, env_steps: int, history: list[dict[str, Any]],
                    run_dir: Path, trainer: str) -> dict[str, Any]:  # fmt: skip
    """Keep the spans of the training window; write trace.json, timeline.png and the bubble report
    (timeline_summary.json: busy fractions, per-stage capacity, the ideal bound, policy lag); log the busy
    fractions."""
    spans = [s for s in spans if s.end > t0 and s.start < t1]
    lags = [r["lag/max"] for r in history if "lag/max" in r]
    trained = sum(r.get("actor/trained_env_steps", 0.0) for r in history)
    work = {"actor": trained, "weights": trained} if trained else None
    means = [r["lag/mean"] for r in history if "lag/mean" in r]
    summary = {
        "window_s": t1 - t0,
        "busy": busy_fractions(spans, t0, t1),
        "bound": ideal_bound(spans, env_steps, work),
        "env_steps": {"executed": env_steps, "trained": trained},
        "lag": {"mean": sum(means) / len(means) if means else 0.0, "max": max(lags, default=0.0)},
        "spans": len(spans),
    }
    write_chrome_trace(spans, run_dir / "trace.json")
    write_gantt(
        spans, run_dir / "timeline.png", f"{trainer}: stage timeline (first 10 s of training)", window_s=10.0
    )
    (run_dir / "timeline_summary.json").write_text(json.dumps(summary, indent=2))
    busy = ", ".join(f"{k} {v:.0%}" for k, v in summary["busy"].items())
    log.info(
        "%s busy: %s; idle = 1 - busy; ideal bound %.0f env steps/s", trainer, busy, summary["bound"]["bound"]
    )
    return summary
