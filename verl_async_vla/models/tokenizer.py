"""A word-level tokenizer with hashed buckets for unseen words: small, deterministic, saved with the checkpoint.

Real VLAs bring their own (Llama/Qwen) tokenizers behind the same `encode(list[str]) -> LongTensor` call.
"""

from __future__ import annotations

import re
import zlib

import torch

PAD, UNK_BUCKETS = 0, 64
BASE_VOCAB = (
    "reach touch move go to the a an pick place push put on in of cube block red green blue yellow left right "
    "front back top bottom object"
).split()


class WordTokenizer:
    def __init__(self, vocab: list[str] | None = None, max_len: int = 12):
        self.vocab = list(vocab or BASE_VOCAB)
        self.index = {w: i + 1 + UNK_BUCKETS for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return 1 + UNK_BUCKETS + len(self.vocab)

    def _word_id(self, word: str) -> int:
        if word in self.index:
            return self.index[word]
        return 1 + zlib.crc32(word.encode()) % UNK_BUCKETS  # stable across processes, unlike hash()

    def encode(self, texts: list[str]) -> torch.Tensor:
        ids = torch.full((len(texts), self.max_len), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z]+", text.lower())[: self.max_len]
            ids[row, : len(words)] = torch.tensor([self._word_id(w) for w in words], dtype=torch.long)
        return ids
