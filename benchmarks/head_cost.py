"""Cost of one decision by action head: the tiny VLA (the main job's model, 64 px images) with the Gaussian chunk
head, the 256-bin token head and the flow head at K = 3, 5, 10 denoising steps, both RL methods.

    python benchmarks/head_cost.py                  # this machine's CPU, 1 thread (as each rollout worker runs)
    python benchmarks/head_cost.py --device cuda    # a GPU, where there is one (rows are labelled by device)

Per head: `act` (rollout inference, no gradient) at batch 1 and 16, and one training pass per decision (`evaluate`
plus backward, the actor's work per sample, at batch 64). Each figure is the median of `--repeats` timed calls after
warm-up calls. The flow head pays its K velocity evaluations at `act`; at training flow_sde scores one transition
and flow_noise all K. Writes docs/results/head_cost.json (rows of other devices are kept) and regenerates
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from common import RESULTS, RUN_COMMIT, RUN_DATE, machine, write_result

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import PolicyObs, build_policy

# (label, head, flow_method, flow_steps)
HEADS = [("gaussian", "gaussian", None, None), ("discrete", "discrete", None, None)] + [
    (f"flow_{m} K={k}", "flow", f"flow_{m}", k) for k in (3, 5, 10) for m in ("sde", "noise")
]
INSTRUCTIONS = [
    "reach the red cube",
    "touch the blue block",
    "go to the green cube",
    "move to the yellow one",
]


def observations(batch: int, device: str) -> PolicyObs:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 255, (batch, 64, 64, 3), dtype=torch.uint8, generator=g)
    state = torch.randn(batch, 4, generator=g)
    return PolicyObs(image.to(device), state.to(device), [INSTRUCTIONS[i % 4] for i in range(batch)])


def median_s(call, repeats: int, device: str) -> float:
    for _ in range(3):  # warm-up
        call()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(head: str, method: str | None, steps: int | None, device: str, repeats: int) -> dict:
    flow = {"flow_method": method, "flow_steps": steps} if head == "flow" else {}
    cfg = ModelConfig(action_head=head, device=device, **flow)
    torch.manual_seed(0)
    policy = build_policy(cfg).to(device)
    row: dict = {}
    for batch in (1, 16):
        obs = observations(batch, device)
        with torch.no_grad():
            s = median_s(lambda obs=obs: policy.act(obs), repeats, device)
        row[f"act_ms_batch{batch}"] = round(1e3 * s, 3)
        row[f"act_ms_per_decision_batch{batch}"] = round(1e3 * s / batch, 3)
    obs = observations(64, device)
    with torch.no_grad():
        out = policy.act(obs)

    def train() -> None:
        policy.zero_grad()
        ev = policy.evaluate(obs, out.actions, out.trace)
        (ev.log_prob.mean() + ev.value.mean()).backward()

    row["train_ms_per_decision"] = round(1e3 * median_s(train, repeats, device) / 64, 3)
    row["trace_floats_per_decision"] = policy.trace_dim
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads on CPU (a rollout worker's setting)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu, {args.threads} thread(s)"
    )
    rows = []
    for label, head, method, steps in HEADS:
        row = {"head": label, "action_head": head, "flow_method": method, "flow_steps": steps,
               "device": where, **measure(head, method, steps, args.device, args.repeats)}  # fmt: skip
        rows.append(row)
        print(f"  {label:18s} act {row['act_ms_batch1']:7.2f} ms (batch 1), "
              f"{row['act_ms_per_decision_batch16']:6.2f} ms/decision (batch 16); "
              f"train {row['train_ms_per_decision']:6.2f} ms/decision", flush=True)  # fmt: skip
    base = rows[0]
    for r in rows:
        for k in ("act_ms_batch1", "act_ms_per_decision_batch16", "train_ms_per_decision"):
            r[f"{k}_vs_gaussian"] = round(r[k] / base[k], 2)
    path = RESULTS / "head_cost.json"
    old = json.loads(path.read_text())["runs"] if path.is_file() else []
    kept = [r for r in old if r["device"] != where]  # another device's rows keep their own provenance
    command = " ".join(["python", "benchmarks/head_cost.py", *sys.argv[1:]])
    me = {"command": command, "machine": machine(), "commit": RUN_COMMIT, "date": RUN_DATE, "rows": rows}
    write_result("head_cost", {"runs": kept + [{"device": where, **me}]})
    import report

    report.main()


if __name__ == "__main__":
    main()
