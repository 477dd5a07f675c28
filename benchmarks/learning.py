"""Learning benchmark on the embedded task: sync vs async_vla at equal env steps, and the flow head's rows.
(The off-policy ablation is benchmarks/off_policy_ablation.py.)

    python benchmarks/learning.py                                 # 3 seeds x {sync, async_vla}
    python benchmarks/learning.py --seeds 0 --variants sync       # one run
    python benchmarks/learning.py --variants async_vla_s2         # labelled: async at max_staleness=2
    python benchmarks/learning.py --heads                         # the flow head: 3 seeds x {sde, noise} x trainers
    python benchmarks/learning.py --heads-shuffled --out-dir D    # their final checkpoints, instructions shuffled

Writes docs/results/embedded_sync.json (sync runs), docs/results/embedded_sync_vs_async.json (the main pair under
"runs"; variants not rerun keep their rows), docs/learning_sync_vs_async.png, then regenerates docs/benchmarks.md. `--heads` writes docs/results/embedded_heads.json
instead (after every run, so a stopped invocation keeps what finished).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, curve, reusable_summary, run_main, run_provenance, write_result

# name -> (hydra overrides, env-step budget). The main pair runs the README's main job budget.
MAIN = {
    "sync": (["trainer=sync"], None),
    "async_vla": (["trainer=async_vla"], None),
}
# The flow head (model=tiny_vla_flow) under both trainers, both RL log-prob methods, at the main job's budget; the
# Gaussian rows of the same table are the main pair's (embedded_sync_vs_async.json), the same budget and seeds.
HEADS = {
    f"flow_{method}_{trainer}": (
        ["model=tiny_vla_flow", f"model.flow_method=flow_{method}", f"trainer={trainer}"],
        None,
    )
    for method in ("sde", "noise")
    for trainer in ("sync", "async_vla")
}
# Labelled, run only when named: a looser staleness bound (it trains ~1.2x more env steps per second than the
# default on the embedded throughput workload); does it learn as well per env step?
STALENESS = {"async_vla_s2": (["trainer=async_vla", "trainer.max_staleness=2"], None)}
VARIANTS = {**MAIN, **STALENESS, **HEADS}
COLOURS = {"sync": "tab:blue", "async_vla": "tab:orange", "async_vla_s2": "tab:green"}


def plot_main(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for variant in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == variant]
        for i, r in enumerate(group):
            steps, success, wall_s = zip(*r["eval_curve"], strict=True)
            label = f"{variant} ({r['date'][:10]})" if i == 0 else None
            kw = {"color": COLOURS.get(variant), "alpha": 0.8, "label": label, "marker": "."}
            axes[0].plot(steps, success, **kw)
            axes[1].plot([w / 60 for w in wall_s], success, **kw)
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("wall minutes (training, evaluation time excluded)")
    days = {r["date"][:10] for r in runs if "date" in r}
    if len(days) > 1:  # this machine's speed varied 3-4x between days
        axes[1].set_title("runs of different days: wall time does not compare across them", fontsize=9)
    for ax in axes:
        ax.set_ylabel("greedy success, held-out layouts")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Embedded colour-reach: sync vs async_vla (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path.relative_to(ROOT))


def mean_curve(group: list[dict], grid: list[int]) -> tuple[list[float], list[float]]:
    """Mean and standard error over seeds of each run's success, linearly interpolated onto `grid`."""
    import numpy as np

    ys = np.array([np.interp(grid, [s for s, _, _ in r["eval_curve"]], [v for _, v, _ in r["eval_curve"]])
                   for r in group])  # fmt: skip
    se = ys.std(0, ddof=1) / math.sqrt(len(group)) if len(group) > 1 else np.zeros(len(grid))
    return ys.mean(0).tolist(), se.tolist()


def run_row(variant: str, seed: int, out: Path, budget_override: int | None) -> dict:
    overrides, budget = VARIANTS[variant]
    return learning_row(variant, overrides, seed, out, budget_override or budget)


def learning_row(variant: str, overrides: list[str], seed: int, out: Path, budget: int | None) -> dict:
    """One learning run (`overrides`, `seed`, `budget` env steps; None: the config's) under `out/<variant>_seed<s>`,
    reused when this code already finished it; -> its row (success, learning speed, lag, provenance, curve)."""
    run_dir = out / f"{variant}_seed{seed}"
    summary = reusable_summary(run_dir)  # resume: a finished run of this code is not repeated
    if summary is None:
        summary = run_main(
            [*overrides, f"seed={seed}", *([f"trainer.total_env_steps={budget}"] if budget else [])],
            run_dir,
            out / f"{variant}_seed{seed}.log",
        )
    evals = curve(run_dir, "eval/success")
    walls = dict(curve(run_dir, "train_wall_s"))
    lags = [v for _, v in curve(run_dir, "lag/mean")]
    log_ratio = [v for _, v in curve(run_dir, "actor/behaviour_abs_log_ratio")]
    row = {
        "variant": variant,
        "trainer": summary["trainer"],
        "seed": seed,
        "success_start": summary["success_start"],
        "success_final": summary["success_final"],
        # Mean greedy success over the run's evaluations: learning speed, less noisy than one final evaluation.
        "success_auc": round(statistics.mean(v for _, v in evals), 4),
        "env_steps": summary["env_steps"],
        "wall_minutes": round(summary["wall_minutes"], 3),
        "env_steps_per_s": round(summary["env_steps_per_s"], 1),
        "policy_updates": summary["policy_version"],
        "lag_mean": round(statistics.mean(lags), 2) if lags else None,
        "behaviour_abs_log_ratio": round(statistics.mean(log_ratio), 3) if log_ratio else None,
        "ledger": summary["ledger"],
        "commit": summary.get("commit", "not recorded"),  # the code the run was made with
        "date": summary.get("date", ""),
        "eval_curve": [(s, v, walls.get(s, 0.0)) for s, v in evals],
    }
    print(f"  {variant} seed {seed}: success {row['success_start']:.2f} -> {row['success_final']:.2f} "
          f"(mean over evals {row['success_auc']:.2f}), lag {row['lag_mean']}, "
          f"{row['env_steps_per_s']:.0f} env steps/s, {row['wall_minutes']:.1f} min", flush=True)  # fmt: skip
    return row


def summarise(rows: list[dict]) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        g = [r for r in rows if r["variant"] == variant]
        entry = {"seeds": len(g)}
        for key in ("success_final", "success_auc", "env_steps_per_s", "lag_mean"):
            vals = [r[key] for r in g if r.get(key) is not None]
            if vals:
                entry[f"{key}_mean"] = round(statistics.mean(vals), 4)
                if len(vals) > 1:
                    entry[f"{key}_se"] = round(statistics.stdev(vals) / math.sqrt(len(vals)), 4)
        out[variant] = entry
    return out


def merge(previous: list[dict], fresh: list[dict]) -> list[dict]:
    """Rows of (variant, seed) not rerun keep their last figures."""
    done = {(r["variant"], r["seed"]) for r in fresh}
    return [r for r in previous if (r["variant"], r["seed"]) not in done] + fresh


def head_row(r: dict, source: str) -> dict:
    """A learning run as a row of the heads table (the issue's schema, plus where the row came from)."""
    flow = r["variant"].startswith("flow_")
    return {
        "model": "tiny_vla",
        "head": "flow" if flow else "gaussian",
        "flow_method": ("flow_" + r["variant"].split("_")[1]) if flow else None,
        "trainer": r["trainer"],
        "seed": r["seed"],
        "env_steps": r["env_steps"],
        "success_start": r["success_start"],
        "success_final": r["success_final"],
        "success_mean_over_evals": r["success_auc"],
        "policy_updates": r["policy_updates"],
        "wall_minutes": r["wall_minutes"],
        "lag_mean": r["lag_mean"],
        "commit": r["commit"],
        "date": r["date"],
        "source": source,
    }


def write_heads(fresh: list[dict]) -> None:
    path = RESULTS / "embedded_heads.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    done = {
        (r["head"], r["flow_method"], r["trainer"], r["seed"]) for r in map(lambda x: head_row(x, ""), fresh)
    }
    kept = [r for r in old.get("runs", []) if r["head"] == "flow"
            and (r["head"], r["flow_method"], r["trainer"], r["seed"]) not in done]  # fmt: skip
    flow = kept + [head_row(r, r["command"]) for r in fresh]
    gaussian = gaussian_rows()
    write_result("embedded_heads", {**run_provenance(flow + gaussian), "runs": flow + gaussian,
                                    "summary": summarise_heads(flow + gaussian)})  # fmt: skip
    import report

    report.main()


def gaussian_rows() -> list[dict]:
    """The Gaussian head at the same budget: the main pair's runs (sync, async_vla at their defaults), as
    embedded_sync_vs_async.json has them; its labelled variants (async_vla_s2) are not the Gaussian head's row."""
    main_pair = RESULTS / "embedded_sync_vs_async.json"
    if not main_pair.is_file():
        return []
    pair = json.loads(main_pair.read_text())
    return [head_row(r, r.get("command") or pair["command"]) for r in pair["runs"] if r["variant"] in MAIN]


def shuffled_instructions(out: Path, episodes: int = 128) -> None:
    """Each flow row's final checkpoint evaluated greedy on the same `episodes` held-out layouts twice: with its own
    instructions and with every env told another env's (chance is what an instruction-blind policy gets, the task
    card's 0.37). Added to the flow rows of embedded_heads.json; the runs are found under `out`."""
    from verl_async_vla.eval import main as evaluate

    path = RESULTS / "embedded_heads.json"
    res = json.loads(path.read_text())
    for r in res["runs"]:
        if r["head"] != "flow":
            continue
        variant = f"flow_{r['flow_method'].removeprefix('flow_')}_{r['trainer']}"
        ckpt = out / f"{variant}_seed{r['seed']}" / "checkpoints" / "final.safetensors"
        if not ckpt.is_file():
            print(f"  no checkpoint for {variant} seed {r['seed']} under {out}: not evaluated", flush=True)
            continue
        args = [str(ckpt), "--episodes", str(episodes)]
        r["eval_instructions_own"] = evaluate(args)["success_rate"]
        r["eval_instructions_shuffled"] = evaluate([*args, "--shuffle-instructions"])["success_rate"]
        r["eval_command"] = f"verl-async-vla-eval {' '.join(args)} [--shuffle-instructions]"
    # the Gaussian rows as they stand (the same filter as write_heads), and the summary over the rows kept
    res["runs"] = [r for r in res["runs"] if r["head"] == "flow"] + gaussian_rows()
    res["summary"] = summarise_heads(res["runs"])
    res["shuffled_instructions_command"] = " ".join(["python", *sys.argv])
    path.write_text(json.dumps(res, indent=2) + "\n")
    print("wrote", path.relative_to(ROOT))
    import report

    report.main()


def summarise_heads(rows: list[dict]) -> dict:
    out = {}
    for key in dict.fromkeys((r["head"], r["flow_method"], r["trainer"]) for r in rows):
        g = [r for r in rows if (r["head"], r["flow_method"], r["trainer"]) == key]
        entry: dict = {"seeds": len(g), "env_steps_mean": round(statistics.mean(r["env_steps"] for r in g))}
        for k in ("success_start", "success_final", "success_mean_over_evals"):
            vals = [r[k] for r in g]
            entry[f"{k}_mean"] = round(statistics.mean(vals), 4)
            if len(vals) > 1:
                entry[f"{k}_se"] = round(statistics.stdev(vals) / math.sqrt(len(vals)), 4)
        out["/".join(x for x in key if x)] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    ap.add_argument("--total-env-steps", type=int, default=None, help="override every variant's budget")
    ap.add_argument("--out-dir", default=None, help="where run directories go (default: a temp dir)")
    ap.add_argument("--heads", action="store_true", help="run the flow-head variants (embedded_heads.json)")
    ap.add_argument("--heads-shuffled", action="store_true",
                    help="evaluate the flow rows' final checkpoints (under --out-dir) with shuffled instructions")  # fmt: skip
    args = ap.parse_args()
    if args.heads_shuffled:
        if not args.out_dir:
            ap.error("--heads-shuffled needs the --out-dir the flow runs were made in")
        return shuffled_instructions(Path(args.out_dir))
    variants = args.variants or list(HEADS if args.heads else MAIN)
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_learning_"))
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    if any(v in HEADS for v in variants):
        if not all(v in HEADS for v in variants):
            ap.error(f"--variants mixes flow-head variants {sorted(HEADS)} with others; run them apart")
        fresh = []
        for s in args.seeds:  # seed-major: each seed's four runs land before the next seed starts
            for v in variants:
                fresh.append({**run_row(v, s, out, args.total_env_steps), "command": command})
                write_heads(fresh)
        return
    fresh = [
        {**run_row(v, s, out, args.total_env_steps), "command": command} for s in args.seeds for v in variants
    ]

    path = RESULTS / "embedded_sync_vs_async.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    for r in old.get("runs", []):
        r.setdefault("command", old.get("command"))
    main_rows = merge(old.get("runs", []), [r for r in fresh if r["variant"] not in HEADS])
    provenance = run_provenance(fresh)  # rows kept from earlier invocations carry their own
    if any(r["variant"] == "sync" for r in fresh):
        write_result(
            "embedded_sync", {"runs": [r for r in main_rows if r["variant"] == "sync"], **provenance}
        )
    write_result(
        "embedded_sync_vs_async",
        {
            **provenance,
            "runs": main_rows,
            "summary": summarise(main_rows),
        },
    )
    if main_rows:
        plot_main(main_rows, ROOT / "docs" / "learning_sync_vs_async.png")
    import report

    report.main()


if __name__ == "__main__":
    main()
