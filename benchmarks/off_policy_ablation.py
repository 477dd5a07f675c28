"""The off-policy ablation: which correction earns its place when samples are stale, on the embedded task.

    python benchmarks/off_policy_ablation.py                          # screen: hard task, staleness 16, 3 seeds
    python benchmarks/off_policy_ablation.py --staleness 8            # the same at staleness 8
    python benchmarks/off_policy_ablation.py --corrections none gipo --seeds 3 4   # confirm finalists on 5 seeds
    python benchmarks/off_policy_ablation.py --task embedded --staleness 4 --lag natural   # async's own settings
    python benchmarks/off_policy_ablation.py --rewrite                # summary, plot, default: no runs

Every run is `trainer=async_vla` at the same env-step budget from the same SFT start per seed; only the staleness
bound, the lag and `algo.off_policy` differ. `--lag forced` (the default) holds the rollout workers S - 1 versions
behind the actor (`trainer.publish_lag`, FORCED LAG: every sample is S - 1 to S versions stale whatever this
machine's stage speeds); `--lag natural` lets the lag be what the pipeline makes of the bound. Every invocation also
runs `none` at staleness 1 (async's default, lag below one version): the reference for what staleness costs.

Writes docs/results/off_policy_ablation.json (rows of earlier invocations kept unless rerun at the same task,
correction, staleness, lag and seed; every row carries its own commit, date and command), docs/off_policy_ablation.png,
then regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, write_result
from learning import learning_row, mean_curve

from verl_async_vla.algos.off_policy import OFF_POLICY_MODES
from verl_async_vla.config.schema import AlgoConfig

TASKS = {
    "embedded": [],  # the main job's task: 3 cubes
    "embedded_hard": ["env=embedded_reach_hard"],  # 5 cubes: lower chance, a denser table
}
BUDGET = 120_000  # env steps per run
REFERENCE = ("none", 1, 0)  # (correction, staleness, publish lag): the low-lag reference


def overrides(task: str, correction: str, staleness: int, lag: int) -> list[str]:
    return [*TASKS[task], "trainer=async_vla", f"trainer.max_staleness={staleness}", f"trainer.publish_lag={lag}",
            f"algo.off_policy={correction}"]  # fmt: skip


def run_name(task: str, correction: str, staleness: int, lag: int) -> str:
    return f"{task}_s{staleness}_lag{lag}_{correction}"


def ablation_row(
    task: str, correction: str, staleness: int, lag: int, seed: int, out: Path, command: str
) -> dict:
    r = learning_row(run_name(task, correction, staleness, lag), overrides(task, correction, staleness, lag), seed,
                     out, BUDGET)  # fmt: skip
    return {
        "task": task,
        "correction": correction,
        "staleness": staleness,
        "publish_lag": lag,  # forced lag (0: none forced)
        "seed": seed,
        "env_steps": r["env_steps"],
        "success_mean_over_evals": r["success_auc"],
        "success_final": r["success_final"],
        "success_start": r["success_start"],
        "lag_mean": r["lag_mean"],
        "behaviour_abs_log_ratio": r["behaviour_abs_log_ratio"],
        "policy_updates": r["policy_updates"],
        "wall_minutes": r["wall_minutes"],
        "commit": r["commit"],
        "date": r["date"],
        "command": command,
        "curve": [[s, v] for s, v, _ in r["eval_curve"]],
    }


def _key(r: dict) -> tuple:
    return (r["task"], r["correction"], r["staleness"], r["publish_lag"])


def _mean_se(xs: list[float]) -> tuple[float, float | None]:
    return statistics.mean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else None)


def paired(rows: list[dict], a: tuple, b: tuple, key: str) -> dict | None:
    """Seed-paired difference a - b of `key` (seeds share the SFT start, the largest source of spread)."""
    by = {(_key(r), r["seed"]): r[key] for r in rows}
    seeds = sorted(s for (k, s) in by if k == a and (b, s) in by)
    if not seeds:
        return None
    d = [by[(a, s)] - by[(b, s)] for s in seeds]
    mean, se = _mean_se(d)
    return {"seeds": len(d), "mean": round(mean, 4), "se": None if se is None else round(se, 4),
            "better_in_seeds": sum(x > 0 for x in d)}  # fmt: skip


def summarise(rows: list[dict]) -> list[dict]:
    """Per (task, staleness, lag, correction): means and standard errors over seeds; the seed-paired difference to
    `none` at the same staleness and to the staleness-1 reference; the share of the staleness cost recovered,
    (correction - none_S) / (reference - none_S), from seed-paired means of success over evaluations."""
    out = []
    for key in sorted({_key(r) for r in rows}):
        task, correction, staleness, lag = key
        g = [r for r in rows if _key(r) == key]
        entry: dict = {"task": task, "correction": correction, "staleness": staleness, "publish_lag": lag,
                       "seeds": len(g)}  # fmt: skip
        for k in ("success_mean_over_evals", "success_final", "lag_mean", "behaviour_abs_log_ratio"):
            vals = [r[k] for r in g if r.get(k) is not None]
            if vals:
                mean, se = _mean_se(vals)
                entry[f"{k}_mean"], entry[f"{k}_se"] = round(mean, 4), None if se is None else round(se, 4)
        none_s, ref = (task, "none", staleness, lag), (task, *REFERENCE)
        for name, other in (("vs_none", none_s), ("vs_staleness1", ref)):
            if other != key:
                for k, short in (("success_mean_over_evals", "auc"), ("success_final", "final")):
                    entry[f"{name}_{short}"] = paired(rows, key, other, k)
        cost = paired(rows, ref, none_s, "success_mean_over_evals")
        gain = paired(rows, key, none_s, "success_mean_over_evals")
        if key not in (none_s, ref) and cost and gain and cost["mean"] > 0:
            entry["staleness_cost_auc"] = cost["mean"]
            entry["cost_recovered"] = round(gain["mean"] / cost["mean"], 3)
        out.append(entry)
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["task"], r["staleness"], r["publish_lag"]) for r in rows if (r["correction"], r["staleness"],
                     r["publish_lag"]) != REFERENCE})  # fmt: skip
    if not panels:
        return
    grid = list(range(0, BUDGET + 1, 5000))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colours = dict(zip(OFF_POLICY_MODES, plt.get_cmap("tab10").colors, strict=False))
    for ax, (task, staleness, lag) in zip(axes[0], panels, strict=True):
        keys = [(task, *REFERENCE)] + sorted({_key(r) for r in rows if (r["task"], r["staleness"], r["publish_lag"])
                                              == (task, staleness, lag)})  # fmt: skip
        for key in keys:
            g = [{"eval_curve": [(s, v, 0.0) for s, v in r["curve"]]} for r in rows if _key(r) == key]
            if not g:
                continue
            mean, se = mean_curve(g, grid)
            ref = key[1:] == REFERENCE
            c = "black" if ref else colours.get(key[1])
            label = f"{key[1]}, staleness 1 (reference)" if ref else key[1]
            ax.plot(grid, mean, color=c, ls="--" if ref else "-", label=f"{label} ({len(g)} seeds)")
            ax.fill_between(grid, [m - s for m, s in zip(mean, se, strict=True)],
                            [m + s for m, s in zip(mean, se, strict=True)], color=c, alpha=0.1)  # fmt: skip
        ax.set_xlabel("env steps")
        ax.set_ylabel("greedy success, held-out layouts")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        forced = f", forced lag {lag}" if lag else ", natural lag"
        ax.set_title(f"{task}: max_staleness={staleness}{forced} (mean ± s.e.)", fontsize=10)
    fig.suptitle("Off-policy corrections under staleness (trainer=async_vla)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path.relative_to(ROOT))


def write(fresh: list[dict]) -> None:
    path = RESULTS / "off_policy_ablation.json"
    old = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
    done = {(_key(r), r["seed"]) for r in fresh}
    runs = [r for r in old if (_key(r), r["seed"]) not in done] + fresh
    runs.sort(key=lambda r: (r["task"], r["staleness"], r["publish_lag"], r["correction"], r["seed"]))
    dates = sorted(r["date"] for r in runs if r.get("date"))
    write_result("off_policy_ablation", {
        "commit": ", ".join(sorted({r["commit"] for r in runs})),
        "date": dates[0] if dates else "",
        "default_off_policy": AlgoConfig().off_policy,  # the default at the code that wrote this file
        "budget_env_steps": BUDGET,
        "runs": runs,
        "summary": summarise(runs),
    })  # fmt: skip
    plot(runs, ROOT / "docs" / "off_policy_ablation.png")
    import report

    report.main()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=list(TASKS), default="embedded_hard")
    ap.add_argument("--staleness", type=int, default=16, help="trainer.max_staleness of the compared runs")
    ap.add_argument("--lag", choices=["forced", "natural"], default="forced",
                    help="forced: trainer.publish_lag = staleness - 1; natural: no publication lag")  # fmt: skip
    ap.add_argument("--corrections", nargs="+", choices=OFF_POLICY_MODES, default=list(OFF_POLICY_MODES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-reference", action="store_true", help="skip the staleness-1 `none` runs")
    ap.add_argument(
        "--out-dir", default=None, help="where run directories go (reused: finished runs are kept)"
    )
    ap.add_argument("--rewrite", action="store_true",
                    help="run nothing: rewrite the file's summary, plot and default from the rows it holds")  # fmt: skip
    args = ap.parse_args()
    if args.rewrite:
        return write([])
    lag = args.staleness - 1 if args.lag == "forced" and args.staleness > 1 else 0
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_ablation_"))
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    plan = [] if args.no_reference else [REFERENCE]
    plan += [(c, args.staleness, lag) for c in args.corrections if (c, args.staleness, lag) != REFERENCE]
    fresh = []
    for seed in args.seeds:  # seed-major: each seed's runs land (and are written) before the next seed starts
        for correction, staleness, run_lag in plan:
            fresh.append(ablation_row(args.task, correction, staleness, run_lag, seed, out, command))
            write(fresh)


if __name__ == "__main__":
    main()
