"""Typed configs. Hydra yaml is merged onto these dataclasses at start-up (validate.py), so a misspelt key or
a wrong type fails in the first second with OmegaConf's message naming the key, not an hour into a run. This module
imports nothing of the package: every registry may import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf


@dataclass
class LiberoConfig:
    """LIBERO backend (envs/libero/, `pip install verl-async-vla[libero]`)."""

    suite: str = "libero_spatial"  # libero_spatial | libero_object | libero_goal | libero_10 | libero_90
    task_ids: list[int] | None = None  # None = every task of the suite, spread round-robin over all envs
    cameras: list[str] = field(default_factory=lambda: ["agentview"])  # and/or "wrist"; tiled left to right
    eval_init_states: int = 10  # the last N official init states per task are held out for evaluation only
    settle_steps: int = (
        10  # no-op steps after an init state is applied (objects settle), as in OpenVLA's eval
    )
    fast_render: bool = (
        True  # no multisampling/shadows/reflections: ~2x faster on CPU, images differ from stock
    )
    hard_reset: bool = False  # True rebuilds the MuJoCo model every reset (~3 s instead of ~0.3 s)


@dataclass
class GymnasiumConfig:
    """Any continuous-action gymnasium env with rgb_array rendering (envs/gymnasium/)."""

    env_id: str = "Reacher-v5"
    instruction: str = "reach the target"  # the task's language instruction (gymnasium envs have none)
    make_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs for gymnasium.make


@dataclass
class MetaWorldConfig:
    """MetaWorld backend (envs/metaworld/, `pip install verl-async-vla[metaworld]`)."""

    suite: str = (
        "mt10"  # mt10 | mt50 | one task by name (e.g. reach-v3); tasks spread round-robin over all envs
    )
    # a MetaWorld camera: corner3 (the table fills a 64x64 frame) | corner | corner2 | topview | behindGripper
    camera: str = "corner3"
    eval_variations: int = (
        10  # the last N of a task's 50 parametric variations are held out for evaluation only
    )
    variation_seed: int = (
        0  # draws the 50 variations per task (MetaWorld's MT1 seed); the same in every process
    )
    fast_render: bool = True  # no multisampling/shadows/reflections: ~5 ms instead of ~100 ms per 64x64 frame
    # sparse (1 at success, as the embedded task and LIBERO) | dense (MetaWorld's shaped reward over 10 per step, and
    # at success the rest of the episode at 1 per step: envs/metaworld/shard.py)
    reward: str = "sparse"


@dataclass
class EmulatedConfig:
    """The emulated env (envs/emulated.py): only shapes, so payloads can be as large as a real VLA's."""

    cameras: int = 1  # images tiled side by side: an observation is (image_size, cameras x image_size, 3)
    state_dim: int = 4
    action_dim: int = 2


@dataclass
class ReachConfig:
    """The embedded colour-reach task (envs/embedded/reach.py)."""

    cubes: int = 3  # 3-5 coloured cubes on the table, the instruction names one (5: env=embedded_reach_hard)


@dataclass
class FaultInjectionConfig:
    """FAULT INJECTION ONLY (tests and the soak run, envs/wrappers.py): make one env misbehave on purpose."""

    # none | raise | hang | nan_obs | die (the env worker process exits) | schedule (the soak run: `kinds` in turn)
    kind: str = "none"
    env: int = 0  # global env index (worker rank x envs per worker + local index)
    after_steps: int = 20  # control calls (reset or step) of that env before the fault
    times: int = 1  # how many times the env faults across rebuilds and restarts (-1: every time: quarantined)
    hang_s: float = 3600.0  # how long a "hang" lasts
    # schedule: fault n is due every_s x n seconds after start_unix (a wall-clock time shared by every worker)
    every_s: float = 60.0
    start_unix: float = 0.0
    kinds: list[str] = field(default_factory=lambda: ["raise", "hang", "nan_obs", "die"])
    envs: int = 0  # schedule: how many envs the faults are spread over (validate: every training env)
    # faults already injected are counted under this key, across worker restarts and run resumes (validate sets
    # it from the run dir when empty)
    token: str = ""


@dataclass
class EnvFaultConfig:
    """What a misbehaving env costs (sampling/env_faults.py): only its current episode, discarded and counted."""

    step_timeout_s: float = 300.0  # a reset or step taking longer is a hang (0: never time out)
    max_rebuilds: int = 3  # an env rebuilt more often than this is quarantined
    min_live_fraction: float = 0.5  # the run stops when fewer of the training envs than this remain
    inject: FaultInjectionConfig = field(default_factory=FaultInjectionConfig)


@dataclass
class WorldModelConfig:
    """Imagined envs (world_models/, docs/world_models.md): env workers whose shards are a learned world model, as
    ranks after the real ones. Only training uses them; evaluation and every success figure are the real simulator's."""

    name: str = "none"  # none | a registered world model (world_models/registry.py: WORLD_MODELS)
    # world_model.safetensors written by `python -m verl_async_vla.world_models.pretrain`; its episodes.npz beside it
    # holds the real contexts imagined episodes start from
    checkpoint: str | None = None
    workers: int = 1  # env workers of imagined envs (env.num_envs_per_worker each): the real:imagined knob


@dataclass
class EnvConfig:
    name: str = "embedded_reach"  # embedded_reach | libero | metaworld | gymnasium | emulated
    num_workers: int = 2  # EnvWorker ranks (shards)
    num_envs_per_worker: int = 32
    image_size: int = 64
    max_episode_steps: int = 40  # control steps
    latency: str = "none"  # none | uniform | longtail: injected simulator timing (envs/wrappers.py)
    reach: ReachConfig = field(default_factory=ReachConfig)
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    metaworld: MetaWorldConfig = field(default_factory=MetaWorldConfig)
    gymnasium: GymnasiumConfig = field(default_factory=GymnasiumConfig)
    emulated: EmulatedConfig = field(default_factory=EmulatedConfig)
    faults: EnvFaultConfig = field(default_factory=EnvFaultConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)

    @property
    def imagined_workers(self) -> int:
        """Env workers of imagined envs (ranks num_workers, num_workers + 1, ...); 0 without a world model."""
        return self.world_model.workers if self.world_model.name != "none" else 0


@dataclass
class ModelConfig:
    name: str = "tiny_vla"
    # gaussian (OFT-style chunk) | discrete (OpenVLA-style 256-bin tokens) | flow (pi0-style flow matching)
    action_head: str = "gaussian"
    action_dim: int = 2
    state_dim: int = 4
    chunk: int = 4  # actions per inference call (action chunking)
    image_size: int = 64
    channels: int = 32
    hidden: int = 256
    text_dim: int = 32
    n_bins: int = 256
    init_log_std: float = -0.5
    # tiny_vla's conv encoder computes in: float32 | bfloat16 (autocast; weights, heads and log-probs stay float32) |
    # auto (bfloat16 where the CPU has native bf16 math, else float32: models/precision.py). Rollout and actor run
    # the same setting, so behaviour and proximal log-probs come from the same numerics.
    vision_dtype: str = "auto"
    # model.action_head=flow only (models/flow_head.py): K denoising steps, how RL gets log-probs, the expert
    flow_steps: int = 5
    # flow_noise (learned noise every step) | flow_sde (one SDE step per decision). flow_noise is the default: on
    # the embedded task it learned faster (seed 0, 120k env steps, zero start: greedy 0.86 against flow_sde's 0.75)
    flow_method: str = "flow_noise"
    # flow_sde's a in sigma_t = a sqrt(t / (1 - t)) (pi_RL: 0.5); 2.0 here. Sync, the main job's budget, 3 seeds:
    # greedy 0.88 final (mean over evals 0.69) at 2.0, 0.84 (0.67) at 1.5, 0.67 (0.54) at 1.0; seed-0 screen 0.41 at
    # 0.5 (docs/results/embedded_heads.json)
    flow_noise_level: float = 2.0
    flow_sigma_min: float = 0.1  # flow_noise's learned std bounds
    flow_sigma_max: float = 0.5
    # where a rollout's denoising chain starts: zero (the noise mean, as greedy evaluation does: all of a decision's
    # randomness is then in the transitions its log-prob scores) | noise (a draw, as pi0 samples). zero is the
    # default: seed 0, 120k env steps, greedy 0.86 against 0.45 (flow_noise), 0.75 against 0.56 (flow_sde, a = 1)
    flow_start: str = "zero"
    flow_expert_width: int = 128  # the action expert's width
    flow_expert: str = (
        "mlp"  # mlp (an MLP on the policy's features) | pi0 (hf_vla: attends to the VLM's KV cache)
    )
    flow_value_on: str = "prefix"  # prefix (pi0.5: value on the VLM features) | expert (pi0: on the expert's)
    checkpoint: str | None = None  # start weights; None = `init`
    init: str = (
        "sft"  # without a checkpoint: sft (cached scripted-expert BC start) | scratch (random weights)
    )
    # model.name=cost_model only (emulated-cluster mode, models/cost_model.py):
    cost_profile: str = "tiny_vla_cpu"
    emulated_gpus: int = 1  # data-parallel replicas one rollout / actor worker stands for
    cost_weights_mb: float = 0.0  # extra trainable-weight payload per version (published like real weights)
    # model.name=hf_vla only (a pretrained Hugging Face VLM as backbone, models/hf_vla.py):
    hf_path: str | None = None  # local save_pretrained directory (model + processor); never downloaded
    hf_dtype: str = "float32"  # bfloat16 on GPU
    hf_train_backbone: bool = False  # false: heads + proprio projection train, the backbone stays frozen
    hf_prompt: str = "In: What action should the robot take to {instruction}?\nOut:"  # OpenVLA's prompt
    # LoRA adapters on the frozen backbone (peft, a verl dependency): 0 = none; they train and travel with the heads
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: str = (
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"  # modules adapted (full-match regex)
    )
    # cpu | cuda: where rollout and actor workers put the model (cuda asks Ray for a GPU per process)
    device: str = "cpu"


@dataclass
class SFTConfig:
    demo_episodes: int = 96
    steps: int = 80
    batch_size: int = 64
    lr: float = 1e-3
    cache_dir: str = "~/.cache/verl_async_vla/sft"


@dataclass
class AlgoConfig:
    adv_estimator: str = "gae"  # any name in verl's ADV_ESTIMATOR_REGISTRY that takes (rewards, values, mask)
    policy_loss: str = "vanilla"  # any name in verl's POLICY_LOSS_REGISTRY
    gamma: float = 0.99
    lam: float = 0.95
    clip_ratio: float = 0.2
    clip_ratio_c: float = 3.0
    loss_agg_mode: str = "token-mean"
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    cliprange_value: float = 100.0
    lr: float = 3e-4
    optimizer: str = "adam"  # adam | sgd (learning/learner.py: OPTIMIZERS)
    ppo_epochs: int = 4
    minibatch_size: int = 128
    max_grad_norm: float = 0.5
    train_batch_episodes: int = 64  # episodes per optimizer round (one policy version)
    # none | behaviour_ppo | tis | decoupled_ppo | vtrace | gipo | m2po | topr  (algos/off_policy.py: CORRECTIONS)
    # default none: in the ablation (docs/benchmarks.md, Off-policy correction under staleness) no correction beat the
    # decoupling alone at any staleness measured; at lag <= 1 the IS weights are ~1 and change nothing
    off_policy: str = "none"
    # C: tis truncates pi_prox/mu at it, decoupled_ppo leaves out a sample above it; V-trace's rho-bar = c-bar
    # auto | first_epoch | scoring_pass: how pi_prox is obtained for stale rows (algos/off_policy.py: PROXIMAL_PASSES)
    proximal: str = "auto"
    is_cap: float = 2.0
    gipo_sigma: float = 0.5  # gipo: width of the Gaussian damping in log-ratio (AcceRL's default)
    m2_threshold: float = (
        0.04  # m2po: tau_M2, the second moment of the log-ratio the kept decisions may reach
    )


WEIGHT_TRANSPORTS = ("object_store", "collective")  # trainer.weight_sync (learning/weight_plane.py)


@dataclass
class TrainerConfig:
    name: str = "sync"  # set by the `trainer=` config group
    total_env_steps: int = 350_000
    rollout_workers: int = 1
    pipeline_stages: int = 1  # sync only: k env groups whose env steps and inference overlap (RLinf-style)
    actor_workers: int = 1
    # how N actor ranks share the work (learning/data_parallel.py): all_reduce = every rank holds the whole policy
    # and optimizer, gradients summed | fsdp2 = torch's fully_shard, each rank holds 1/N of them
    actor_strategy: str = "all_reduce"
    placement: str = (
        "disaggregated"  # disaggregated: a pool per role | colocated: rollout + actor share processes
    )
    torch_threads: int = 1  # per worker: 2 cores are shared by all Ray actors
    # the actor's intra-op threads (plumbing/process.py: actor_thread_count): 0 = torch_threads, -1 = the machine's
    # cores over the actor ranks. sync (-1): nothing else runs during a lockstep update, so it may take every core;
    # async_vla (0): the producers run beside it, and a second thread only waits at their barriers (docs/architecture.md)
    actor_threads: int = -1
    # CPU priority (Linux nice, added to the worker processes' own; Ray started by the run puts every worker at 0):
    # the actor keeps its priority and the producers yield to it, so on shared cores the stage that sets the pace
    # never waits for a core. 19 is the lowest: CFS weighs nice 0 against 19 as 1024 to 15 (plumbing/process.py)
    env_nice: int = 19
    rollout_nice: int = 19
    # where processes may run (plumbing/process.py: core_layout): shared = anywhere; actor_apart = each actor rank
    # on a core of its own, every other process (driver, Ray's own, env, rollout) on the rest
    cpu_layout: str = "shared"
    eval_every: int = 10  # iterations; 0 disables
    eval_episodes: int = 64
    # whole-run checkpoints (controller/checkpointing.py): every N updates; 0 = only the final policy checkpoint
    checkpoint_every: int = 25
    checkpoint_keep: int = 3  # run checkpoints kept (the oldest are deleted)
    # continue a run: "auto" (the latest run checkpoint in run_dir, if any) or a run directory (becomes run_dir)
    resume: str | None = None
    # an env or rollout worker process that dies is restarted up to this many times (each); async_vla rejoins it
    # to the running pipeline (controller/recovery.py)
    worker_restarts: int = 3
    # a run that loses a worker it cannot rejoin (the actor; any worker in sync) resumes from its latest run
    # checkpoint up to this many times (main.py); 0: it stops with the error
    run_restarts: int = 2
    progress: bool = True
    # verl Tracking backends every metrics record also goes to, e.g. [console] or [tensorboard, wandb]
    logger: list[str] = field(default_factory=list)
    timeline: bool = False  # write trace.json (Chrome/Perfetto), timeline.png and timeline_summary.json
    # both trainers: how each version reaches the rollout workers (learning/weight_plane.py): object_store | collective
    weight_sync: str = "object_store"
    weight_bucket_mb: float = 256.0  # collective: tensors are broadcast in flat buckets of this size
    # async_vla only (the sync controller has no queues to bound):
    max_batch: int = 64  # dynamic batcher (rollout side): rows per inference call at most
    # dynamic batcher: longest a request waits for company when the rollout worker is free. 0 = continuous
    # batching (a free server takes what is ready; requests that arrive during a call form the next batch); raise
    # it when a call has a large fixed cost and envs are few. Measured on 2 shared cores (2026-12-02), once
    # requests travel on the request channel instead of Ray calls: 0 trained more env steps/s than 3 ms on
    # longtail (392 vs 372). (With a Ray call per request, 3 ms had won: each call cost more than the wait.) On the
    # CPU-bound embedded workload it is a wash (2026-12-07, 3 repeats, medians: 0 ms 1918, 2 ms 1919 trained env
    # steps/s), as was an env-side wait that packs a worker's requests into fewer messages (1 ms 1857, 3 ms 1892;
    # tried on branch speed-coalesce, not kept): messages are no longer what async's CPU per step is spent on.
    max_wait_ms: float = 0.0
    max_staleness: int = 1  # versions
    # ABLATION ONLY (benchmarks/off_policy_ablation.py): the rollout workers act with weights this many versions
    # behind the actor's newest, so every sample is at least that stale (a forced lag); < max_staleness
    publish_lag: int = 0
    stale_policy: str = "pause"  # pause producers | drop stale episodes (counted)
    ray_address: str | None = None  # None starts a local Ray instance


@dataclass
class RunConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    run_dir: str = "outputs/run"


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass (nested ones included) from `dataclasses.asdict` output, e.g. inside a worker."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
