"""Writes a tiny, randomly initialised PaliGemma checkpoint (model + processor) with save_pretrained: the same
files a real PaliGemma / pi0-backbone directory holds, small enough for CPU tests, generated (nothing downloaded).
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>", "\n"] + sorted(
    set(
        "in: what action should the robot take to pick put place up the a on of in red green blue black bowl "
        "plate cube block reach ? out:".split()
    )  # fmt: skip
)


def write_tiny_paligemma(path: str | Path, image_size: int = 32, patch: int = 8, seed: int = 0,
                         text_layers: int = 1) -> Path:  # fmt: skip
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PreTrainedTokenizerFast,
        SiglipImageProcessor,
    )

    path = Path(path)
    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(path)
    images = SiglipImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    images.image_seq_length = (image_size // patch) ** 2  # what PaliGemmaProcessor reads
    images.save_pretrained(path)
    cfg = PaliGemmaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=patch, projection_dim=32),
        text_config=dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=text_layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=len(WORDS)),
        image_token_id=vocab["<image>"], vocab_size=len(WORDS), projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    PaliGemmaForConditionalGeneration(cfg).save_pretrained(path)
    (path / "processor_config.json").write_text('{"processor_class": "PaliGemmaProcessor"}\n')
    return path
