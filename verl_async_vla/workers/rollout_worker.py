"""RolloutWorker: policy inference. Answers a batch of observations with action chunks, the behaviour log-prob and
value, tagged with the policy version that produced them; takes new weights by version between batches."""

from __future__ import annotations

import threading
import time

import numpy as np
import ray
import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, register

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.learning.weight_plane import BucketLayout, WeightGroup, digest
from verl_async_vla.models import build_policy
from verl_async_vla.models.policy import PolicyObs
from verl_async_vla.plumbing.process import lower_priority, pin_to_cores, process_info, set_thread_budget
from verl_async_vla.plumbing.wire import weights_from_wire
from verl_async_vla.sampling.inference_server import InferenceServer
from verl_async_vla.sampling.request_channel import Address
from verl_async_vla.telemetry.calibration import timed
from verl_async_vla.telemetry.timeline import Span, SpanRecorder
from verl_async_vla.workers.codec import proto_to_policy_obs, rows_to_policy_obs


class RolloutWorker(Worker):
    def __init__(self, model_cfg: dict, seed: int, torch_threads: int = 1, niceness: int = 0,
                 cores: list[int] | None = None):  # fmt: skip
        super().__init__()
        set_thread_budget(torch_threads)
        # trainer.rollout_nice and trainer.cpu_layout; threads started later (the server's) inherit both
        lower_priority(niceness)
        pin_to_cores(cores)
        torch.manual_seed(seed * 104729 + self.rank)
        self.policy = build_policy(ModelConfig(**model_cfg)).eval()
        self.policy_version = -1  # no weights yet
        self.spans = SpanRecorder("rollout", f"rollout/{self.rank}")
        self.model_lock = threading.RLock()  # weights change between batches, never during one
        self.server: InferenceServer | None = None
        self.weight_group: WeightGroup | None = None
        self.last_stall_s = 0.0
        # versions swapped in, by the transport they came by
        self.loads = {"object_store": 0, "collective": 0}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_weights(self, weights: dict, version: int) -> int:
        """`weights` as `ActorWorker.get_weights` sends them (numpy on the wire, codec.weights_to_wire)."""
        return self._swap_in(weights_from_wire(weights), version, "object_store")

    def _swap_in(self, weights: dict[str, torch.Tensor], version: int, transport: str) -> int:
        """Load a newer version between two inference batches; the time serving stops is kept (`last_stall_s`)."""
        t0 = time.perf_counter()
        with self.model_lock:  # no batch runs while the weights change
            if version > self.policy_version:
                if self.server is not None:
                    self.server.flush_deliveries()
                self.policy.load_weights(weights)
                self.policy_version = version
                self.loads[transport] += 1
            self.last_stall_s = time.perf_counter() - t0
            return self.policy_version

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_weights_timed(self, weights_and_version: tuple[dict, int]) -> tuple[int, float]:
        """The object-store path of the weight plane: -> (version held, seconds serving stopped)."""
        version = self.set_weights(*weights_and_version)
        return version, self.last_stall_s

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def weights_digest(self) -> tuple[int, float]:
        """(version, fingerprint of the weights it serves): compared with the actor's."""
        with self.model_lock:
            return self.policy_version, digest(self.policy.get_weights())

    # ---- the collective weight plane (learning/weight_plane.py) ---------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def join_weight_group(self, addr: str, port: int, world: int, rank: int, backend: str) -> None:
        self.weight_group = WeightGroup(addr, port, world, rank, backend)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def receive_weights(self, version: int, layout: BucketLayout) -> tuple[int, float]:
        """Receive a broadcast version into staging buffers while serving goes on, then swap it in. -> (version
        held, seconds serving stopped)."""
        if self.weight_group is None:
            raise RuntimeError("receive_weights before join_weight_group")
        staged = self.weight_group.receive(layout)
        return self._swap_in(staged, version, "collective"), self.last_stall_s

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def weight_loads(self) -> dict[str, int]:
        """Versions swapped in so far, by the transport each came by (`trainer.weight_sync`)."""
        return dict(self.loads)

    # ---- async data plane: requests straight from env workers -----------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def start_serving(self, max_batch: int, max_wait_ms: float, authkey: bytes) -> Address:
        """Serve env workers' requests (sampling/inference_server.py). -> the request channel's address, where env
        workers connect (sampling/request_channel.py)."""
        self.server = InferenceServer(self.act_rows, self.model_lock, self.rank, max_batch, max_wait_ms / 1000.0,
                                      ray.util.get_node_ip_address(), authkey)  # fmt: skip
        return self.server.address

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def serving_stats(self) -> dict[str, float] | None:
        """None: not serving (a restarted process before it rejoins)."""
        return None if self.server is None else self.server.status()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def process_info(self) -> dict:
        return process_info("rollout", self.rank)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stop_serving(self) -> dict[str, float]:
        server, self.server = self.server, None
        return {} if server is None else server.stop()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def rng_state(self) -> list[int]:
        """The sampling RNG (torch's, in this process): part of a run checkpoint."""
        return torch.get_rng_state().tolist()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_rng_state(self, state: list[int]) -> None:
        torch.set_rng_state(torch.tensor(state, dtype=torch.uint8))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.spans.drain()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_weights_packed(self, weights_and_version: tuple[dict, int]) -> int:
        """Takes `ActorWorker.get_weights`' result as is, so the driver can pass its ObjectRef unresolved."""
        return self.set_weights(*weights_and_version)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def calibrate(self, obs: DataProto, batch_sizes: list[int], seconds: float) -> list[dict]:
        """Inference alone (telemetry/calibration.py): recorded observations answered in batches of each size for
        `seconds`. -> per size: rows answered, wall and this process's CPU seconds."""
        out = []
        for size in batch_sizes:
            rows = proto_to_policy_obs(obs.select_idxs(np.arange(size) % len(obs)))

            def call(rows=rows, size=size) -> int:
                with self.model_lock, torch.no_grad():
                    self.policy.act(rows)
                return size

            m = timed(call, seconds)
            out.append({"batch": size, "rows": m["work"], "wall_s": m["wall_s"], "cpu_s": m["cpu_s"]})
        return out

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def generate(self, data: DataProto) -> DataProto:
        """The driver's path (lockstep): a DataProto of observations -> one of answers."""
        deterministic = bool(data.meta_info.get("deterministic", False))
        tensors = self._act(proto_to_policy_obs(data), deterministic)
        return DataProto.from_dict(tensors=tensors, non_tensors={"env_key": data.non_tensor_batch["env_key"]})

    def act_rows(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inference server's path (async): numpy observation rows -> numpy answer columns, no DataProto."""
        return {k: v.numpy() for k, v in self._act(rows_to_policy_obs(rows), deterministic=False).items()}

    def _act(self, obs: PolicyObs, deterministic: bool) -> dict[str, torch.Tensor]:
        if self.policy_version < 0:
            raise RuntimeError("RolloutWorker.generate called before set_weights: publish version 0 first")
        t0 = time.time()
        with self.model_lock, torch.no_grad():
            out = self.policy.act(obs, deterministic=deterministic)
            version = self.policy_version
        n = out.actions.shape[0]
        self.spans.record(t0, batch=n, version=version)
        tensors = {
            "actions": out.actions,
            "old_log_prob": out.log_prob,
            "values": out.value,
            "policy_version": torch.full((n,), version, dtype=torch.long),
        }
        # what a flow head's log-prob depends on: it travels with the sample to the actor
        if out.trace is not None:
            tensors["action_trace"] = out.trace.float()
        return tensors
