"""A word-level tokenizer with hashed buckets for unseen words: small, deterministic, saved with the checkpoint.

Real VLAs bring their own (Llama/Qwen) tokenizers behind the same `encode(list[str]) -> LongTensor` call.
"""

from __future__ import annotations

import re
import zlib

import torch

PAD, UNK_BUCKETS = 0, 64
CACHE_TEXTS = 4096  # encoded instructions kept per tokenizer
BASE_VOCAB = (
    "reach touch move go to the a an pick place push put on in of cube block red green blue yellow left right "
    "front back top bottom object"
).split()


class WordTokenizer:
    def __init__(self, vocab: list[str] | None = None, max_len: int = 12):
        self.vocab = list(vocab or BASE_VOCAB)
        self.index = {w: i + 1 + UNK_BUCKETS for i, w in enumerate(self.vocab)}
        self.max_len = max_len
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return 1 + UNK_BUCKETS + len(self.vocab)

    def _word_id(self, word: str) -> int:
        if word in self.index:
            return self.index[word]
        return 1 + zlib.crc32(word.encode()) % UNK_BUCKETS  # stable across processes, unlike hash()

    def encode(self, texts: list[str]) -> torch.Tensor:
        # a run has a handful of instructions, each encoded at every inference and every minibatch: once per text
        rows = [self._cache.get(t) or self._encode_one(t) for t in texts]
        return torch.tensor(rows, dtype=torch.long).reshape(len(texts), self.max_len)

    def _encode_one(self, text: str) -> list[int]:
        words = re.findall(r"[a-z]+", text.lower())[: self.max_len]
        row = [self._word_id(w) for w in words] + [PAD] * (self.max_len - len(words))
        if len(self._cache) < CACHE_TEXTS:  # bounded: free-form instructions must not grow it forever
            self._cache[text] = row
        return row
