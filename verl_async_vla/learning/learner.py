"""The learner: the trainable policy, its optimizer and update RNG, the PPO update, scoring and the train state.
No Ray: `workers/actor_worker.py` is its Ray facade, and the two trainers' intakes (the lockstep `ingest` and the
stream's `TrainerLoop`) both train through it, so an update is the same code whichever trainer runs it.

One update (`update`): advantages under the configured estimator (algos/advantages.py) from the proximal values,
the off-policy correction's inputs (algos/off_policy.py), then `algo.ppo_epochs` passes over minibatches with the
actor-critic loss (algos/losses.py); with N data-parallel ranks each minibatch's rows are split and the gradients
summed (learning/data_parallel.py). Then `version` goes up by one. A row whose every decision the update's starting
version produced takes the rollout's log-prob and value as pi_prox. The others, by `algo.proximal`
(algos/off_policy.py: PROXIMAL_PASSES): under `scoring_pass` they are scored first (the async trainer's rank 0 scores
them while it waits when its strategy lets a rank score alone, `scores_alone`; under `fsdp2` every rank scores
together here); under `first_epoch` each minibatch's first-epoch forward fills them, with N ranks each rank its share,
summed over the group before the second epoch.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from verl import DataProto

from verl_async_vla.algos.advantages import compute_advantages
from verl_async_vla.algos.losses import actor_critic_loss
from verl_async_vla.algos.off_policy import correction_inputs, proximal_pass
from verl_async_vla.config.schema import AlgoConfig, ModelConfig
from verl_async_vla.learning.data_parallel import DataParallel
from verl_async_vla.learning.episode_queue import (
    EpisodeQueue,
    add_proximal_columns,
    take_behaviour_as_proximal,
)
from verl_async_vla.learning.train_state import (
    numpy_rng_from_data,
    numpy_rng_to_data,
    optimizer_from_data,
    optimizer_to_data,
    read_state,
    torch_rng_from_list,
    torch_rng_to_list,
    write_state,
)
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.checkpoint import check_compatible, load_checkpoint
from verl_async_vla.plumbing.process import resident_mb, return_free_memory
from verl_async_vla.telemetry.calibration import measure


class Learner:
    def __init__(self, model_cfg: ModelConfig, algo: AlgoConfig, init_checkpoint: str, seed: int,
                 dp: DataParallel | None = None):  # fmt: skip
        torch.manual_seed(seed)
        self.model_cfg, self.algo = model_cfg, algo
        self.policy = build_policy(model_cfg)
        ckpt = load_checkpoint(init_checkpoint)
        check_compatible(ckpt["model_cfg"], model_cfg)
        self.policy.load_weights(ckpt["weights"])
        self.dp = dp or DataParallel(0, 1)
        self.policy = self.dp.wrap(self.policy)  # fsdp2: from here on each rank holds 1/N of every parameter
        self.optimizer = OPTIMIZERS[algo.optimizer](self.policy.parameters(), algo.lr)
        self.version = 0
        self.rng = np.random.default_rng(
            seed
        )  # the same on every rank: every rank plans the same minibatches
        # a rank that cannot score alone (fsdp2: every forward is a collective) scores inside the update, with all
        self.scores_alone = not self.dp.sharded
        # False (algo.proximal resolved to first_epoch): stale rows get pi_prox from the update's first epoch instead
        self.scoring_pass = proximal_pass(algo) == "scoring_pass"
        # sharded: the full weights of `version`, gathered onto rank 0 once per version (publishing, checkpoints)
        self._gathered = self.dp.full_weights(self.policy) if self.dp.sharded else None
        self.trained_episode_ids: list[int] = []
        # held by every update: a run checkpoint reads weights, optimizer and version together
        self.lock = threading.RLock()

    # ---- the update -----------------------------------------------------------------------------------------
    def update(self, batch: DataProto) -> dict[str, float]:
        """PPO epochs over episode rows, with the configured off-policy correction; then a new version. The
        batch carries `prox_log_prob` / `prox_values` (learning/episode_queue.py scores them)."""
        with self.lock:
            wall0, cpu0 = time.monotonic(), time.thread_time()
            metrics = self._update(batch)
            # this thread's CPU against the update's wall time: below 1, the update waited for a core or the GIL
            # (other stages on shared cores, or this process's own receiving threads)
            metrics["actor/update_wall_s"] = time.monotonic() - wall0
            metrics["actor/update_cpu_share"] = (time.thread_time() - cpu0) / max(
                metrics["actor/update_wall_s"], 1e-9
            )
            return metrics

    def _update(self, batch: DataProto) -> dict[str, float]:
        if "prox_version" not in batch.batch.keys():
            add_proximal_columns(batch)
        queue = EpisodeQueue()  # rows not scored under these weights yet (none, where the intake scored them)
        queue.add(batch)
        queue.score(np.arange(len(batch)), self.version, self.proximal_scorer())
        return self._train(batch)

    def proximal_scorer(self) -> Callable[[DataProto, torch.Tensor], tuple[torch.Tensor, ...]] | None:
        """What scores stale rows' pi_prox before an update: None under `algo.proximal=first_epoch` (the update's
        first epoch does)."""
        return self.score_proximal if self.scoring_pass else None

    def _train(self, batch: DataProto) -> dict[str, float]:
        """The PPO epochs on a batch whose pi_prox columns are filled, or, for rows whose `prox_version` is not
        this version (first_epoch), filled by the first epoch's forwards."""
        b = batch.batch
        mask = b["mask"]
        # the same rows on every rank: every rank holds the whole batch and the same version
        pending = torch.nonzero(b["prox_version"] != self.version).flatten()
        if len(pending):
            b["prox_log_prob"][pending] = 0.0  # each rank fills its share; the shares are summed (share_rows)
            b["prox_values"][pending] = b["values"][pending]
        inputs = correction_inputs(self.algo, b["old_log_prob"], b["prox_log_prob"], mask)
        values = b["prox_values"] * mask
        adv, returns = compute_advantages(self.algo, b["rewards"], values, mask, inputs.log_rho,
                                          batch.non_tensor_batch.get("env_key"))  # fmt: skip
        lag = (self.version - b["policy_version"])[mask > 0].float()
        n = len(batch)
        rows_per_mb = max(1, min(n, self.algo.minibatch_size // max(1, int(mask.sum(1).float().mean()))))
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        params = list(self.policy.parameters())
        for epoch in range(self.algo.ppo_epochs):
            if epoch == 1 and len(pending):
                self._complete_proximal(b, pending)
                inputs = correction_inputs(self.algo, b["old_log_prob"], b["prox_log_prob"], mask)
            for minibatch in np.array_split(self.rng.permutation(n), max(1, n // rows_per_mb)):
                rows = self.dp.my_rows(
                    minibatch
                )  # all of it on one rank; a share of it per rank with N ranks
                self.optimizer.zero_grad()
                m: dict[str, float] = {}
                # a rank with no rows still runs a forward and backward under fsdp2 (each is a collective), on one
                # row at weight 0
                if len(rows) or self.dp.sharded:
                    weight = (
                        self.dp.loss_weight(self.algo.loss_agg_mode, mask, rows, minibatch)
                        if len(rows)
                        else 0.0
                    )
                    r = torch.from_numpy(rows if len(rows) else minibatch[:1])
                    log_prob, entropy, vpred = self.score(batch, r)
                    if epoch == 0 and len(pending) and len(rows):
                        stale = b["prox_version"][r] != self.version
                        # pi_prox of these rows: this forward, detached (the loss's centre below)
                        if stale.any():
                            b["prox_log_prob"][r[stale]] = log_prob[stale].detach()
                            inputs = correction_inputs(self.algo, b["old_log_prob"], b["prox_log_prob"], mask)
                    loss, m = actor_critic_loss(
                        self.algo, log_prob, entropy, vpred, inputs.old_log_prob[r], values[r], adv[r], returns[r],
                        mask[r], None if inputs.is_weights is None else inputs.is_weights[r],
                    )  # fmt: skip
                    (loss * weight).backward()
                self.dp.sum_gradients([p for p in params if p.requires_grad])
                m["actor/grad_norm"] = self.dp.grad_norm(params, self.algo.max_grad_norm)
                self.optimizer.step()
                for k, v in m.items():
                    sums[k] += v
                steps += 1
        if self.algo.ppo_epochs == 1 and len(pending):
            self._complete_proximal(b, pending)  # the metrics below read every row's pi_prox
            inputs = correction_inputs(self.algo, b["old_log_prob"], b["prox_log_prob"], mask)
        self.version += 1
        if self.dp.sharded:
            self._gathered = self.dp.full_weights(self.policy)
        # after every update, not every 10th: with a 10-update cadence resident memory swung by +-40 % between trims
        # (soak, 2026-11-30), hiding whether anything is retained; one trim costs a few ms against a seconds-long update
        return_free_memory()
        self.trained_episode_ids.extend(batch.non_tensor_batch["episode_id"].tolist())
        metrics = {k: v / steps for k, v in sums.items()}
        metrics.update({
            "actor/policy_version": self.version,
            # what the actor keeps between updates (read after the trim): the soak's leak check reads this series
            "actor/rss_mb": resident_mb(),
            "actor/optimizer_steps": steps,
            "actor/episodes": n,
            # the actor stage's work, for its capacity in the timeline (env steps it trained, not produced): real
            # env steps only, the budget's unit; world-model steps apart (env.world_model)
            **trained_steps_by_source(batch),
            "lag/mean": float(lag.mean()),
            "lag/p99": float(torch.quantile(lag, 0.99)),
            "lag/max": float(lag.max()),
            "actor/behaviour_abs_log_ratio": float(inputs.log_rho.abs()[mask > 0].mean()),
            # the share of rows whose pi_prox came from the first epoch (algo.proximal=first_epoch) rather than a pass
            "actor/prox_first_epoch": len(pending) / max(1, n),
            # of the policy's parameter elements, the share this rank holds (1 unsharded, ~1/N under fsdp2)
            "actor/param_share": self.dp.param_share(self.policy),
        })  # fmt: skip
        return metrics

    def _complete_proximal(self, b: Any, pending: torch.Tensor) -> None:
        """After the first epoch: every rank filled pi_prox for its share of the pending rows; all of them, on every
        rank, from here on."""
        self.dp.share_rows(b["prox_log_prob"], pending)
        b["prox_version"][pending] = self.version

    def score(self, batch: DataProto, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(log-prob, entropy, value) of `rows` under the current weights, (r, T). Only valid decisions are fed to
        the model (padding never is) and scattered back."""
        b = batch.batch
        mask = b["mask"][rows].bool()
        t = mask.shape[1]
        instr = np.repeat(batch.non_tensor_batch["instruction"][rows.numpy()], t).reshape(-1, t)[mask.numpy()]
        obs = PolicyObs(b["image"][rows][mask], b["state"][rows][mask], list(instr))
        trace = b["action_trace"][rows][mask] if "action_trace" in b.keys() else None  # flow heads only
        out = self.policy.evaluate(obs, b["actions"][rows][mask], trace)
        full = [torch.zeros(mask.shape) for _ in range(3)]
        for dst, src in zip(full, (out.log_prob, out.entropy, out.value), strict=True):
            dst[mask] = src
        return tuple(full)

    def score_proximal(self, batch: DataProto, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`score` for pi_prox, by the strategy: alone, or each rank a share of the rows (fsdp2)."""
        return self.dp.score(lambda r: self.score(batch, r), rows)

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the trainable weights (the next update changes the live ones). Sharded: rank 0's gathered
        copy of the current version (replaced, never changed, by the next update)."""
        with self.lock:
            if self._gathered is None:
                return self.policy.get_weights()
            if self.dp.rank != 0:
                raise RuntimeError(
                    "under trainer.actor_strategy=fsdp2 only actor rank 0 holds the whole weights"
                )
            return dict(self._gathered)

    def calibrate(self, batch: DataProto, updates: int) -> dict[str, Any]:
        """The learner alone (telemetry/calibration.py): `updates` PPO updates on one recorded, on-policy batch (the
        behaviour policy is the proximal one, so no scoring pass), each timed on its own, then the proximal scoring
        pass alone. The weights it leaves behind are not meant to be trained on."""
        add_proximal_columns(batch)
        take_behaviour_as_proximal(batch.batch, torch.arange(len(batch)))
        batch.batch["prox_version"][:] = self.version
        env_steps = float(np.sum(batch.non_tensor_batch["env_steps"]))
        with self.lock:
            each = [measure(lambda: self._train(batch)) for _ in range(updates)]
            with torch.no_grad():
                score = measure(lambda: self.score(batch, torch.arange(len(batch))))
        return {"updates": updates, "env_steps": env_steps * updates, "wall_s": sum(u["wall_s"] for u in each),
                "cpu_s": sum(u["cpu_s"] for u in each), "per_update": each, "env_steps_per_update": env_steps,
                "score_wall_s": score["wall_s"], "score_cpu_s": score["cpu_s"]}  # fmt: skip

    # ---- train state (learning/train_state.py) --------------------------------------------------------------
    def save_state(self, directory: Path | None, received: list[int]) -> dict[str, int]:
        """Weights, optimizer, version, RNGs and the consumer's episode ids, consistent: between updates. Sharded,
        every rank calls it (the optimizer's moments are gathered onto rank 0, a collective); rank 0 writes, the
        others pass `directory=None`."""
        with self.lock:
            optimizer = self.dp.optimizer_state(self.policy, self.optimizer)
            if directory is None:
                return {"policy_version": self.version, "trained": len(self.trained_episode_ids)}
            tensors, optim = optimizer_to_data(optimizer)
            tensors.update({f"w.{k}": v for k, v in self.weights().items()})
            meta = {"model_cfg": dataclasses.asdict(self.model_cfg), "optimizer": optim,
                    "policy_version": self.version, "torch_rng": torch_rng_to_list(),
                    "numpy_rng": numpy_rng_to_data(self.rng), "received": list(received),
                    "trained": list(self.trained_episode_ids), "actor_strategy": type(self.dp).__name__}  # fmt: skip
            write_state(directory, "actor", tensors, meta)
            return {"policy_version": self.version, "trained": len(self.trained_episode_ids)}

    def load_state(self, directory: Path, keep_ledger: bool) -> list[int] | None:
        """Continue from `save_state`'s output (either strategy's: both save whole tensors in one layout); every
        rank calls it. `keep_ledger`: also take back the trained episode ids, and return the received ones (None
        otherwise: an async run's earlier segment was reconciled when it was saved)."""
        tensors, meta = read_state(directory, "actor")
        check_compatible(meta["model_cfg"], self.model_cfg)
        with self.lock:
            self.dp.load_weights(self.policy, {k[2:]: v for k, v in tensors.items() if k.startswith("w.")})
            self.dp.load_optimizer_state(
                self.policy, self.optimizer, optimizer_from_data(tensors, meta["optimizer"])
            )
            if self.dp.sharded:
                self._gathered = self.dp.full_weights(self.policy)
            self.version = int(meta["policy_version"])
            torch_rng_from_list(meta["torch_rng"])
            numpy_rng_from_data(self.rng, meta["numpy_rng"])
            if not keep_ledger:
                return None
            self.trained_episode_ids = list(meta["trained"])
            return list(meta["received"])


# `algo.optimizer`: Adam (eps 1e-5 as in CleanRL's PPO) by default; plain SGD makes an update linear in the gradient,
# which is what tests/learning/test_data_parallel.py needs to see a gradient scale error
OPTIMIZERS: dict[str, Callable[[Iterable[torch.nn.Parameter], float], torch.optim.Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr, eps=1e-5),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
}


def trained_steps_by_source(batch: DataProto) -> dict[str, float]:
    """Env steps and episodes of a trained batch, real (the simulator) and imagined (a world model) apart."""
    steps = batch.non_tensor_batch["env_steps"]
    imagined = batch.non_tensor_batch.get("imagined", np.zeros(len(steps), bool)).astype(bool)
    return {
        "actor/trained_env_steps": float(np.sum(steps[~imagined])),
        "actor/trained_imagined_env_steps": float(np.sum(steps[imagined])),
        "actor/imagined_episodes": float(imagined.sum()),
    }
