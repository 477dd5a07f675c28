"""Weight-plane benchmark: time to publish one policy version from the actor to the rollout workers, by transport
(learning/weight_plane.py), for 10 M to 1 B parameters.

    python benchmarks/weight_sync.py        # 10M and 100M parameters to 2 rollout workers, 1B to 1 (memory)
    python benchmarks/weight_sync.py --params 1e7 1e8 --rollouts 4 4

The workers are the plugin's own (one ActorWorker, R RolloutWorkers, real Ray processes); the model is the cost model
(models/cost_model.py) carrying `2 x params` bytes of trainable payload, i.e. the parameters in bf16 as a VLA's would
travel. Each size: one warm-up publication per transport, then `--repeats` of each, alternating; the figures are
medians. `publish_s` is the actor's time from the start of a publication until every rollout worker has loaded it;
`stall_s` is the longest time a rollout worker stopped serving for it (the swap under its model lock; the collective
path receives into staging buffers while serving goes on). All processes share this machine's cores and memory: on
one host the object store is shared memory, so this compares the two paths where the object store is at its best.

`--nodes 2` separates the actor from the rollout workers by a Ray node boundary on this one machine
(`ray.cluster_utils.Cluster`: a head raylet holding only the actor, a second raylet with its own object store holding
the rollout workers), so a published version must cross between two object stores by Ray's object transfer, as it
does between the machines of a cluster; the collective path is the same gloo broadcast. Both cross the loopback
interface, not a network card: the comparison is of the two transports' own costs, not of a cluster's network.

Writes docs/results/weight_sync.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import ray
from common import ROOT, host_used_gb, write_result

from verl_async_vla.controller.workers import WorkerSet
from verl_async_vla.models.sft import start_checkpoint
from verl_async_vla.validate import validate
from verl_async_vla.workers import ActorWorker, RolloutWorker
from verl_async_vla.workers.placement import WORKER_ENV, init_ray, release, spawn_group


def start_cluster(nodes: int, rollouts: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Ray with the actor on the head node and, with `nodes` = 2, the rollout workers on a second node (its own
    raylet and object store). -> (add the second node: call it after the actor is placed, shut everything down)."""
    if nodes == 1:
        init_ray(None, logical_cpus=rollouts + 4)
        return (lambda: None), ray.shutdown
    from ray.cluster_utils import Cluster

    store = int(6 * 2**30)  # 1 B parameters in bf16 are 2 GB: a version and its transfer buffers fit
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    ray.init(address=cluster.address, runtime_env={"env_vars": WORKER_ENV}, include_dashboard=False)

    # the head's one CPU is the actor's: the rollout workers can only land on the second node
    def add_rollout_node() -> None:
        cluster.add_node(num_cpus=rollouts, object_store_memory=store)
        cluster.wait_for_nodes()

    def shutdown() -> None:  # its raylets would outlive this script, and a later ray.init would join them
        ray.shutdown()
        cluster.shutdown()

    return add_rollout_node, shutdown


def measure(params: float, rollouts: int, repeats: int, bucket_mb: float, nodes: int = 1) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="weight_sync_"))
    cfg = validate({"model": {"name": "cost_model", "init": "scratch", "cost_weights_mb": 2 * params / 2**20},
                    "trainer": {"rollout_workers": rollouts}, "run_dir": str(tmp / "run")})  # fmt: skip
    ckpt = str(start_checkpoint(cfg))
    model_cfg = dataclasses.asdict(cfg.model)
    add_rollout_node, shutdown = start_cluster(nodes, rollouts)
    actor_wg = spawn_group(ActorWorker, 1, "bench_actor", model_cfg=model_cfg, algo_cfg=dataclasses.asdict(cfg.algo),
                           init_checkpoint=ckpt, seed=0)  # fmt: skip
    add_rollout_node()
    rollout_wg = spawn_group(RolloutWorker, rollouts, "bench_rollout", model_cfg=model_cfg, seed=0)
    workers = WorkerSet(None, rollout_wg, actor_wg, None, None, ckpt, 0)
    try:
        workers.form_weight_group("gloo")
        actor, handles = actor_wg.handles[0], rollout_wg.handles
        runs: dict[str, list[dict]] = {"object_store": [], "collective": []}
        peak = host_used_gb()
        version = 0
        for rep in range(repeats + 1):  # the first round warms both paths up (buffers, connections)
            for transport in runs:
                version += 1  # a new version each time: every publication is loaded, as in training
                out = ray.get(actor.publish_to.remote(handles, transport, bucket_mb, version))
                peak = max(peak, host_used_gb())
                if rep:
                    runs[transport].append(out)
        if nodes > 1:  # the claim of this mode: every rollout worker runs on another node than the actor
            actor_node = ray.get(actor.process_info.remote())["node"]
            rollout_nodes = {ray.get(r.process_info.remote())["node"] for r in handles}
            assert actor_node not in rollout_nodes, "a rollout worker shares the actor's node"
        expected = ray.get(actor.weights_digest.remote())[1]
        held = [d for _, d in ray.get([r.weights_digest.remote() for r in handles])]
        assert held == [expected] * rollouts, "a rollout worker holds other weights than the actor"

        def med(transport: str, key: str) -> float:
            values = [max(o[key]) if isinstance(o[key], list) else o[key] for o in runs[transport]]
            return round(statistics.median(values), 4)

        return {
            "params": int(params), "nodes": nodes, "bytes": runs["collective"][0]["bytes"], "rollout_workers": rollouts,
            "object_store_s": med("object_store", "publish_s"), "collective_s": med("collective", "publish_s"),
            "object_store_stall_s": med("object_store", "stall_s"), "collective_stall_s": med("collective", "stall_s"),
            # the lost serving time per version on the path the async trainer uses when the collective is on
            "rollout_stall_s": med("collective", "stall_s"),
            "host_peak_used_gb": round(peak, 1), "repeats": repeats,
        }  # fmt: skip
    finally:
        release(actor_wg)
        release(rollout_wg)
        shutdown()  # every size starts its own cluster (a second node is added after the actor is placed)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=float, nargs="+", default=[1e7, 1e8, 1e9])
    # one per size: at 1B (2 GB per copy) a second rollout worker's model and staging buffers do not fit 24 GB beside
    # the actor's model, snapshot and object-store copy (measured: the node ran out of memory)
    ap.add_argument("--rollouts", type=int, nargs="+", default=[2, 2, 1], help="rollout workers, per size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bucket-mb", type=float, default=256.0)
    ap.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        default=[1, 2],
        choices=[1, 2],
        help="1: actor and rollout workers on one Ray node (shared object store); 2: on two nodes",
    )
    args = ap.parse_args()
    rollouts = (
        args.rollouts if len(args.rollouts) == len(args.params) else [args.rollouts[0]] * len(args.params)
    )
    rows = []
    for nodes in args.nodes:
        for params, n in zip(args.params, rollouts, strict=True):
            row = measure(params, n, args.repeats, args.bucket_mb, nodes)
            print(row, flush=True)
            rows.append(row)
    write_result("weight_sync", {"rows": rows, "bucket_mb": args.bucket_mb})
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py")], check=True)


if __name__ == "__main__":
    main()
