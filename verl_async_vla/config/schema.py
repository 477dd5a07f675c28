"""Typed configs. Hydra yaml is merged onto these dataclasses at start-up, so a misspelt key or a wrong type fails
in the first second with OmegaConf's message naming the key, not an hour into a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


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
class EnvConfig:
    name: str = "embedded_reach"  # embedded_reach | libero | gymnasium | emulated
    num_workers: int = 2  # EnvWorker ranks (shards)
    num_envs_per_worker: int = 32
    image_size: int = 64
    max_episode_steps: int = 40  # control steps
    latency: str = "none"  # none | uniform | longtail: injected simulator timing (envs/wrappers.py)
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    gymnasium: GymnasiumConfig = field(default_factory=GymnasiumConfig)


@dataclass
class ModelConfig:
    name: str = "tiny_vla"
    action_head: str = "gaussian"  # "gaussian" (OFT-style chunk) | "discrete" (OpenVLA-style 256-bin tokens)
    action_dim: int = 2
    state_dim: int = 4
    chunk: int = 4  # actions per inference call (action chunking)
    image_size: int = 64
    channels: int = 32
    hidden: int = 256
    text_dim: int = 32
    n_bins: int = 256
    init_log_std: float = -0.5
    checkpoint: str | None = None  # start weights; None = `init`
    init: str = (
        "sft"  # without a checkpoint: sft (cached scripted-expert BC start) | scratch (random weights)
    )
    # model.name=cost_model only (emulated-cluster mode, models/cost_model.py):
    cost_profile: str = "tiny_vla_cpu"
    emulated_gpus: int = 1  # data-parallel replicas one rollout / actor worker stands for
    # model.name=hf_vla only (a pretrained Hugging Face VLM as backbone, models/hf_vla.py):
    hf_path: str | None = None  # local save_pretrained directory (model + processor); never downloaded
    hf_dtype: str = "float32"  # bfloat16 on GPU
    hf_train_backbone: bool = False  # false: heads + proprio projection train, the backbone stays frozen
    hf_prompt: str = "In: What action should the robot take to {instruction}?\nOut:"  # OpenVLA's prompt
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
    ppo_epochs: int = 4
    minibatch_size: int = 128
    max_grad_norm: float = 0.5
    train_batch_episodes: int = 64  # episodes per optimizer round (one policy version)
    off_policy: str = "tis"  # none | behaviour_ppo | tis | decoupled_ppo | vtrace  (algos/off_policy.py)
    is_cap: float = 2.0  # C in min(pi_prox/mu, C); rho-bar = c-bar for V-trace


@dataclass
class TrainerConfig:
    name: str = "sync"  # set by the `trainer=` config group
    total_env_steps: int = 350_000
    rollout_workers: int = 1
    pipeline_stages: int = 1  # sync only: k env groups whose env steps and inference overlap (RLinf-style)
    actor_workers: int = 1
    placement: str = (
        "disaggregated"  # disaggregated: a pool per role | colocated: rollout + actor share processes
    )
    torch_threads: int = 1  # per worker: 2 cores are shared by all Ray actors
    eval_every: int = 10  # iterations; 0 disables
    eval_episodes: int = 64
    checkpoint_every: int = 0  # iterations; 0 = only the final checkpoint
    progress: bool = True
    timeline: bool = False  # write trace.json (Chrome/Perfetto), timeline.png and timeline_summary.json
    # async_vla only (the sync controller has no queues to bound):
    max_batch: int = 64  # dynamic batcher (rollout side): rows per inference call at most
    # dynamic batcher: longest a request waits for company when the rollout worker is free. 0 = continuous
    # batching (a free server takes what is ready; requests that arrive during a call form the next batch); raise
    # it when a call has a large fixed cost and envs are few
    max_wait_ms: float = 0.0
    max_staleness: int = 1  # versions
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
    if m.init not in ("sft", "scratch"):
        raise ValueError(
            f"model.init={m.init!r} is unknown; use 'sft' or 'scratch' (or set model.checkpoint)."
        )
    if m.action_head not in ("gaussian", "discrete"):
        raise ValueError(f"model.action_head={m.action_head!r} is unknown; use 'gaussian' or 'discrete'.")
    if m.image_size != e.image_size:
        raise ValueError(
            f"model.image_size={m.image_size} differs from env.image_size={e.image_size}; set both to the same value."
        )
    if m.chunk < 1 or m.chunk > e.max_episode_steps:
        raise ValueError(
            f"model.chunk={m.chunk} must be in [1, env.max_episode_steps={e.max_episode_steps}]."
        )
    a = run.algo
    from verl_async_vla.algos.off_policy import OFF_POLICY_MODES

    if a.off_policy not in OFF_POLICY_MODES:
        raise ValueError(f"algo.off_policy={a.off_policy!r} is unknown; use one of {OFF_POLICY_MODES}.")
    if a.off_policy == "decoupled_ppo":
        a.policy_loss = "decoupled_ppo"  # the correction and its loss come as a pair
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
    if run.trainer.actor_workers != 1:
        raise ValueError(
            "trainer.actor_workers > 1 needs torch.distributed data parallelism (GPU extra); use 1 on CPU."
        )
    for name in ("num_workers", "num_envs_per_worker"):
        if getattr(e, name) < 1:
            raise ValueError(f"env.{name} must be >= 1, got {getattr(e, name)}.")
    return run
