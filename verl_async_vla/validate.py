"""Config validation: merge user config onto the schema and check cross-field rules, all before Ray starts or any
process spawns. It reads the env, model and algorithm registries, which import the schema, so it sits above them at
the package top beside the entry points (main.py, calibrate.py), not in config/ (that would make config and every
registry import each other)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from verl_async_vla.config.schema import WEIGHT_TRANSPORTS, RunConfig
from verl_async_vla.learning.data_parallel import ACTOR_STRATEGIES
from verl_async_vla.learning.learner import OPTIMIZERS
from verl_async_vla.plumbing.process import actor_thread_count, core_layout


def validate(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """Merge user config onto the schema and check cross-field rules; raises ValueError naming the fix."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        run: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0]
        key = getattr(err, "full_key", None)
        raise ValueError(
            f"invalid config{f' at {key!r}' if key else ''}: {first}. See the valid keys and types with "
            "`python -m verl_async_vla.main --cfg job`."
        ) from None
    m, e = run.model, run.env
    from verl_async_vla.envs import ENV_REGISTRY  # cheap: backends import lazily

    if e.name not in ENV_REGISTRY:
        raise ValueError(
            f"env.name={e.name!r} is unknown; available: {sorted(ENV_REGISTRY)} (pick with env=<name>)."
        )
    from verl_async_vla.envs.wrappers import PROFILES

    if e.latency != "none" and e.latency not in PROFILES:
        raise ValueError(f"env.latency={e.latency!r} is unknown; use none or one of {sorted(PROFILES)}.")
    _check_world_model(e)
    from verl_async_vla.models import MODEL_NAMES

    if m.name not in MODEL_NAMES:
        raise ValueError(
            f"model.name={m.name!r} is unknown; available: {MODEL_NAMES} (pick with model=<name>)."
        )
    if m.name == "hf_vla":
        from verl_async_vla.models.hf_vla import check_hf_path

        check_hf_path(m.hf_path)
    if m.device != "cpu" and not m.device.startswith("cuda"):
        raise ValueError(f"model.device={m.device!r} is unknown; use cpu or cuda.")
    from verl_async_vla.models.precision import resolve_vision_dtype

    resolve_vision_dtype(m.vision_dtype, m.device)  # the one list of names; raises naming model.vision_dtype
    if m.init not in ("sft", "scratch"):
        raise ValueError(
            f"model.init={m.init!r} is unknown; use 'sft' or 'scratch' (or set model.checkpoint)."
        )
    from verl_async_vla.models.heads import ACTION_HEADS

    if m.action_head not in ACTION_HEADS:
        raise ValueError(
            f"model.action_head={m.action_head!r} is unknown; use one of {sorted(ACTION_HEADS)}."
        )
    if m.action_head == "flow":
        _check_flow(m)
    if m.image_size != e.image_size:
        raise ValueError(
            f"model.image_size={m.image_size} differs from env.image_size={e.image_size}; set both to the same value."
        )
    if m.chunk < 1 or m.chunk > e.max_episode_steps:
        raise ValueError(
            f"model.chunk={m.chunk} must be in [1, env.max_episode_steps={e.max_episode_steps}]."
        )
    a = run.algo
    from verl_async_vla.algos.advantages import ESTIMATOR_ARGS, OUTCOME
    from verl_async_vla.algos.off_policy import get_correction, proximal_pass

    correction = get_correction(a.off_policy)
    proximal_pass(a)  # refuses algo.proximal=first_epoch with a correction that needs pi_prox up front
    if correction.policy_loss:  # a correction and its loss come as a pair
        a.policy_loss = correction.policy_loss
    if correction.adv_estimator:  # the V-trace correction is an estimator: the two come as a pair
        a.adv_estimator = correction.adv_estimator
    elif a.adv_estimator == "vtrace":
        raise ValueError(f"algo.adv_estimator=vtrace needs its correction: set algo.off_policy=vtrace (it selects "
                         f"the V-trace estimator), not algo.off_policy={a.off_policy!r}.")  # fmt: skip
    if a.gipo_sigma <= 0 or a.m2_threshold <= 0:
        raise ValueError(
            f"algo.gipo_sigma={a.gipo_sigma} and algo.m2_threshold={a.m2_threshold} must be > 0."
        )
    if a.adv_estimator not in ESTIMATOR_ARGS:
        raise ValueError(f"algo.adv_estimator={a.adv_estimator!r} is not supported: use one of "
                         f"{sorted(ESTIMATOR_ARGS)} (algos/advantages.py).")  # fmt: skip
    envs = run.env.num_workers * run.env.num_envs_per_worker
    if a.adv_estimator in OUTCOME and a.train_batch_episodes < 2 * envs:
        raise ValueError(f"algo.adv_estimator={a.adv_estimator} compares an episode with the other episodes of its "
                         f"env in the batch, but algo.train_batch_episodes={a.train_batch_episodes} gives fewer "
                         f"than 2 per env ({envs} envs): raise it to at least {2 * envs}, or use fewer envs.")  # fmt: skip
    if a.train_batch_episodes < 1 or a.is_cap <= 0:
        raise ValueError("algo.train_batch_episodes must be >= 1 and algo.is_cap > 0.")
    if run.trainer.pipeline_stages < 1:
        raise ValueError("trainer.pipeline_stages must be >= 1 (1 = plain lockstep).")
    if run.trainer.placement not in ("disaggregated", "colocated"):
        raise ValueError(
            f"trainer.placement={run.trainer.placement!r} is unknown; use disaggregated or colocated."
        )
    if run.trainer.placement == "colocated" and run.trainer.rollout_workers != run.trainer.actor_workers:
        raise ValueError(
            "trainer.placement=colocated fuses one rollout and one actor per process: set trainer.rollout_workers"
            f" = trainer.actor_workers (now {run.trainer.rollout_workers} and {run.trainer.actor_workers})."
        )
    t = run.trainer
    from verl_async_vla.learning.staleness import STALE_POLICIES

    if t.stale_policy not in STALE_POLICIES:
        raise ValueError(f"trainer.stale_policy={t.stale_policy!r} is unknown; use one of {STALE_POLICIES}.")
    if t.max_staleness < 0:
        raise ValueError(f"trainer.max_staleness={t.max_staleness} must be >= 0 (policy versions).")
    if t.publish_lag and (t.name != "async_vla" or not 0 < t.publish_lag < t.max_staleness):
        # at lag >= S every sample would be due in the very update after it starts: the actor would wait on all
        # open episodes every time (pause) or drop them (drop)
        raise ValueError(f"trainer.publish_lag={t.publish_lag} (an ablation's forced lag) needs trainer=async_vla and "
                         f"0 <= publish_lag < trainer.max_staleness={t.max_staleness}.")  # fmt: skip
    if t.max_batch < 1 or t.max_wait_ms < 0:
        raise ValueError("trainer.max_batch must be >= 1 and trainer.max_wait_ms >= 0.")
    if t.actor_workers < 1 or (t.actor_workers > 1 and t.placement != "disaggregated"):
        raise ValueError(
            "trainer.actor_workers must be >= 1; several data-parallel actor ranks need "
            "trainer.placement=disaggregated (colocated fuses one actor with each rollout worker)."
        )
    if t.torch_threads < 1:
        raise ValueError(f"trainer.torch_threads={t.torch_threads} must be >= 1.")
    actor_thread_count(t.actor_threads, t.torch_threads, t.actor_workers, 1)  # raises with the fix named
    if t.actor_strategy not in ACTOR_STRATEGIES:
        raise ValueError(
            f"trainer.actor_strategy={t.actor_strategy!r} is unknown; use one of {list(ACTOR_STRATEGIES)}."
        )
    if run.algo.optimizer not in OPTIMIZERS:
        raise ValueError(f"algo.optimizer={run.algo.optimizer!r} is unknown; use one of {list(OPTIMIZERS)}.")
    for name in ("num_workers", "num_envs_per_worker"):
        if getattr(e, name) < 1:
            raise ValueError(f"env.{name} must be >= 1, got {getattr(e, name)}.")
    if run.trainer.checkpoint_every < 0 or run.trainer.checkpoint_keep < 1:
        raise ValueError("trainer.checkpoint_every must be >= 0 (0: off) and trainer.checkpoint_keep >= 1.")
    if m.lora_rank < 0 or (m.lora_rank > 0 and m.name != "hf_vla"):
        raise ValueError(f"model.lora_rank={m.lora_rank}: LoRA adapts a Hugging Face backbone (model.name=hf_vla); "
                         "use 0 for other models.")  # fmt: skip
    if t.weight_sync not in WEIGHT_TRANSPORTS:
        raise ValueError(
            f"trainer.weight_sync={t.weight_sync!r} is unknown; use one of {list(WEIGHT_TRANSPORTS)}."
        )
    if t.weight_sync == "collective" and t.placement != "disaggregated":
        raise ValueError(
            "trainer.weight_sync=collective needs trainer.placement=disaggregated (colocated rollout and actor "
            "share one process: there is nothing to broadcast); use trainer.weight_sync=object_store."
        )
    core_layout(t.cpu_layout, t.actor_workers, os.cpu_count() or 1)  # raises with the fix named
    if t.cpu_layout != "shared" and t.placement != "disaggregated":
        raise ValueError(
            f"trainer.cpu_layout={t.cpu_layout} gives the actor processes cores of their own, but "
            "trainer.placement=colocated runs the actor inside the rollout processes; use trainer.cpu_layout=shared."
        )
    if t.weight_bucket_mb <= 0:
        raise ValueError("trainer.weight_bucket_mb must be > 0.")
    if run.trainer.worker_restarts < 0 or run.trainer.run_restarts < 0:
        raise ValueError(
            "trainer.worker_restarts and trainer.run_restarts must be >= 0 (0: a lost worker ends the run)."
        )
    if run.trainer.resume not in (None, "auto"):
        run.run_dir = run.trainer.resume  # continue that run in its own directory
    f = e.faults
    if f.step_timeout_s < 0 or f.max_rebuilds < 0 or not 0.0 <= f.min_live_fraction <= 1.0:
        raise ValueError(
            "env.faults: step_timeout_s must be >= 0 (0: no timeout), max_rebuilds >= 0 and min_live_fraction in "
            f"[0, 1]; got {f.step_timeout_s}, {f.max_rebuilds}, {f.min_live_fraction}."
        )
    from verl_async_vla.envs.wrappers import FAULT_KINDS

    if f.inject.kind not in FAULT_KINDS:
        raise ValueError(
            f"env.faults.inject.kind={f.inject.kind!r} is unknown; use one of {list(FAULT_KINDS)}."
        )
    if f.inject.kind != "none" and not f.inject.token:  # one run, resumed or not, counts its faults once
        import hashlib

        f.inject.token = hashlib.sha1(os.path.abspath(run.run_dir).encode()).hexdigest()[:16]
    if f.inject.kind == "schedule" and f.inject.envs <= 0:
        f.inject.envs = e.num_workers * e.num_envs_per_worker
    if f.inject.kind == "schedule":
        bad = [k for k in f.inject.kinds if k not in FAULT_KINDS[1:-1]]
        if bad or not f.inject.kinds or f.inject.every_s <= 0 or f.inject.start_unix <= 0:
            raise ValueError(
                "env.faults.inject.kind=schedule needs kinds from "
                f"{list(FAULT_KINDS[1:-1])} (got {list(f.inject.kinds)}), every_s > 0 and start_unix set to a "
                "wall-clock time (the soak benchmark sets it)."
            )
    return run


def _check_flow(m: Any) -> None:
    from verl_async_vla.models.flow_head import FLOW_EXPERTS, FLOW_VALUE_ON, check_flow_settings

    check_flow_settings(m)
    if m.name == "cost_model":
        raise ValueError(
            "model.name=cost_model emulates a Gaussian head's compute; use model.action_head=gaussian."
        )
    if m.flow_expert not in FLOW_EXPERTS:
        raise ValueError(f"model.flow_expert={m.flow_expert!r} is unknown; use one of {list(FLOW_EXPERTS)}.")
    if m.flow_expert == "pi0" and m.name != "hf_vla":
        raise ValueError("model.flow_expert=pi0 attends to a VLM's KV cache: use it with model.name=hf_vla "
                         "(or model.flow_expert=mlp on the tiny VLA).")  # fmt: skip
    if m.flow_value_on not in FLOW_VALUE_ON:
        raise ValueError(
            f"model.flow_value_on={m.flow_value_on!r} is unknown; use one of {list(FLOW_VALUE_ON)}."
        )


def _check_world_model(e: Any) -> None:
    """`env.world_model`: a registered model, a checkpoint that exists, at least one imagined worker."""
    w = e.world_model
    if w.name == "none":
        return
    from verl_async_vla.world_models.registry import WORLD_MODELS

    if w.name not in WORLD_MODELS:
        raise ValueError(
            f"env.world_model.name={w.name!r} is unknown; use none or one of {sorted(WORLD_MODELS)} "
            "(env/world_model=<name> on the command line)."
        )
    if w.workers < 1:
        raise ValueError(f"env.world_model.workers={w.workers} must be >= 1 (or env/world_model=none).")
    if not w.checkpoint or not os.path.isfile(os.path.expanduser(w.checkpoint)):
        raise ValueError(
            f"env.world_model.checkpoint={w.checkpoint!r} does not exist: pre-train one with `python -m "
            "verl_async_vla.world_models.pretrain --out <dir>` and pass env.world_model.checkpoint="
            "<dir>/world_model.safetensors."
        )
