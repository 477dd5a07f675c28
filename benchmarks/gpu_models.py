"""The policies on a CUDA device: does what the CPU tests check also hold on a GPU?

    python benchmarks/gpu_models.py          # needs a CUDA device; writes docs/results/gpu_models.json

For the tiny VLA with every action head and for `hf_vla` on a generated tiny PaliGemma (float32 and bfloat16
backbone, frozen and LoRA, Gaussian and flow heads, the flow head's MLP and pi0 experts): `act` then `evaluate` of the same samples under the same
weights (on-policy the importance ratio must be 1: the largest |log pi - log mu| is reported), greedy actions
repeatable, and a few SFT steps (the head's BC loss: flow matching for the flow head) lowering the loss. Only the
models run here (no Ray, no simulator): the whole pipeline on a GPU is not covered by this check.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, write_result

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import PolicyObs, build_policy

sys.path.insert(0, str(ROOT / "tests" / "assets"))
INSTRUCTIONS = [
    "reach the red cube",
    "pick up the black bowl",
    "put the bowl on the plate",
    "touch the blue block",
]
HEADS = [("gaussian", {}), ("discrete", {"action_head": "discrete"}), ("flow_sde", {"action_head": "flow", "flow_method": "flow_sde"}),
         ("flow_noise", {"action_head": "flow", "flow_method": "flow_noise"})]  # fmt: skip


def observations(batch: int, size: int) -> PolicyObs:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)
    return PolicyObs(image, torch.randn(batch, 4, generator=g), [INSTRUCTIONS[i % 4] for i in range(batch)])


def check(cfg: ModelConfig, obs: PolicyObs) -> dict:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    policy = build_policy(cfg).to(cfg.device)
    dev = PolicyObs(obs.image.to(cfg.device), obs.state.to(cfg.device), obs.instruction)
    with torch.no_grad():
        out = policy.act(dev)
        ev = policy.evaluate(dev, out.actions, out.trace)
        greedy = [policy.act(dev, deterministic=True).actions for _ in range(2)]
    gap = (ev.log_prob.float().cpu() - out.log_prob.float().cpu()).abs().max().item()
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], 1e-3)
    targets = torch.tanh(torch.randn_like(out.actions.float())).to(cfg.device)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = policy.bc_loss(dev, targets)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    torch.cuda.synchronize()
    return {
        "max_abs_log_ratio_on_policy": gap,
        "ratio_one": gap < 1e-3,
        "greedy_repeatable": bool(torch.equal(greedy[0], greedy[1])),
        "bc_loss_first_last": [round(losses[0], 4), round(sum(losses[-5:]) / 5, 4)],
        "bc_loss_lowered": sum(losses[-5:]) / 5 < losses[0],
        "trainable_mb": round(
            sum(v.numel() * v.element_size() for v in policy.get_weights().values()) / 2**20, 3
        ),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this check needs a GPU (the CPU paths are covered by the test suite)"
        )
    rows = []
    for name, head in HEADS:
        cfg = ModelConfig(device="cuda", **head)
        rows.append({"model": "tiny_vla", "head": name, **check(cfg, observations(16, 64))})
        print(rows[-1], flush=True)
    try:
        import transformers
        from tiny_hf_vlm import write_tiny_paligemma

        hf_dir = str(write_tiny_paligemma(Path(tempfile.mkdtemp()) / "paligemma"))
        for dtype in ("float32", "bfloat16"):
            for lora in (0, 4):
                pi0 = [(f"{n} (pi0 expert)", {**h, "flow_expert": "pi0"}) for n, h in HEADS[2:]]
                for name, head in HEADS[:1] + HEADS[2:] + pi0:
                    cfg = ModelConfig(name="hf_vla", hf_path=hf_dir, image_size=32, hidden=32, device="cuda",
                                      hf_dtype=dtype, lora_rank=lora, flow_expert_width=32, **head)  # fmt: skip
                    rows.append({"model": f"hf_vla (tiny PaliGemma, {dtype}, lora_rank={lora})", "head": name,
                                 **check(cfg, observations(4, 40))})  # fmt: skip
                    print(rows[-1], flush=True)
        hf = {"transformers": transformers.__version__}
    except ImportError as err:
        hf = {"skipped": f"hf_vla not checked: {err}"}
    write_result("gpu_models", {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                "python": platform.python_version(), **hf, "rows": rows,
                                "all_passed": all(r["ratio_one"] and r["greedy_repeatable"] and r["bc_loss_lowered"]
                                                  for r in rows)})  # fmt: skip


if __name__ == "__main__":
    main()
