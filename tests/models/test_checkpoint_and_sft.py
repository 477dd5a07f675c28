import dataclasses

import pytest
import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from verl_async_vla.models.sft import ensure_sft_checkpoint, sft_cache_path


def test_missing_checkpoint_error_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_round_trip_and_shape_check(tmp_path):
    cfg = ModelConfig(image_size=32, channels=8, hidden=32)
    policy = build_policy(cfg)
    path = save_checkpoint(tmp_path / "p.pt", policy, cfg, note="x")
    ckpt = load_checkpoint(path)
    other = build_policy(cfg)
    other.load_weights(ckpt["weights"])
    for a, b in zip(policy.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="model.chunk=4"):
        check_compatible(ckpt["model_cfg"], ModelConfig(image_size=32, channels=8, hidden=32, chunk=2))


def test_sft_checkpoint_is_built_once_then_cached(small_cfg):
    path = ensure_sft_checkpoint(small_cfg)
    assert path == sft_cache_path(small_cfg) and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert ensure_sft_checkpoint(small_cfg).stat().st_mtime_ns == mtime
    assert load_checkpoint(path)["meta"]["stage"] == "sft"


def test_sft_cache_key_ignores_fields_that_do_not_change_the_weights(small_cfg):
    """Where a run puts the model, and hf_vla-only knobs on another model, never invalidate a cached start."""
    base = sft_cache_path(small_cfg)
    model = dataclasses.replace(small_cfg.model, device="cuda", hf_dtype="bfloat16", hf_path="/elsewhere")
    assert sft_cache_path(dataclasses.replace(small_cfg, model=model)) == base
    assert sft_cache_path(dataclasses.replace(small_cfg, model=dataclasses.replace(model, hidden=64))) != base
