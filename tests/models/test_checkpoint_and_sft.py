import dataclasses

import pytest
import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import (
    check_compatible,
    convert_legacy,
    load_checkpoint,
    save_checkpoint,
)
from verl_async_vla.models.sft import ensure_sft_checkpoint, sft_cache_path


def test_missing_checkpoint_error_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_round_trip_and_shape_check(tmp_path):
    cfg = ModelConfig(image_size=32, channels=8, hidden=32)
    policy = build_policy(cfg)
    path = save_checkpoint(tmp_path / "p.safetensors", policy, cfg, note="x")
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


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__file__ if False else 'PWNED').touch()",))


def test_a_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    """A .pt someone hands you can run code when unpickled: it is refused, and nothing in it executes."""
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "verl_async_vla/policy-v1", "payload": _RunsCodeWhenUnpickled()}, evil)
    with pytest.raises(ValueError, match="not a safetensors file.*refused"):
        load_checkpoint(evil)
    with pytest.raises(ValueError, match="cannot be read as tensors and plain values only"):
        convert_legacy(evil, tmp_path / "out.safetensors")
    assert not (tmp_path / "PWNED").exists()


def test_legacy_checkpoint_converts_and_damage_is_named(tmp_path):
    cfg = ModelConfig(image_size=32, channels=8, hidden=32)
    policy = build_policy(cfg)
    old = tmp_path / "old.pt"
    torch.save({"format": "verl_async_vla/policy-v1", "model_cfg": dataclasses.asdict(cfg),
                "weights": policy.get_weights(), "meta": {"policy_version": 3}}, old)  # fmt: skip
    ckpt = load_checkpoint(convert_legacy(old, tmp_path / "new.safetensors"))
    assert ckpt["meta"]["policy_version"] == 3 and ckpt["model_cfg"]["hidden"] == 32
    good = save_checkpoint(tmp_path / "p.safetensors", policy, cfg)
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:100])  # a half-copied file
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "cut.safetensors")
