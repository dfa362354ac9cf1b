"""A byte-level BPE tokenizer in tiktoken's file format, learned from the demo corpus.

The 256 single bytes come first, then merges learned greedily (most frequent pair,
ties broken by the pair's bytes) until the vocabulary with Llama-3's special tokens on
top is `vocab_size`. torchtune's llama3_tokenizer loads the pair of files as it loads
Meta's.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Dict, List, Tuple

import regex

# The pre-tokenization pattern of Llama 3 (and torchtune's Llama3Tokenizer).
PATTERN = regex.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
    "<|video|>",
]


def special_token_id(token: str, vocab_size: int) -> int:
    """The id a special token gets: they take the top of the vocabulary, in order."""
    return vocab_size - len(SPECIAL_TOKENS) + SPECIAL_TOKENS.index(token)


def learn_merges(text: str, merges: int) -> List[bytes]:
    """The `merges` tokens BPE learns from `text`, in the order learned."""
    words = Counter(tuple(bytes([b]) for b in piece.encode("utf-8")) for piece in PATTERN.findall(text))
    learned: List[bytes] = []
    for _ in range(merges):
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = best[0] + best[1]
        learned.append(merged)
        words = Counter({_merge(word, best, merged): count for word, count in words.items()})
    return learned


def _merge(word: Tuple[bytes, ...], pair: Tuple[bytes, bytes], merged: bytes) -> Tuple[bytes, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_tokenizer(text: str, folder: Path, vocab_size: int) -> Dict[str, Path]:
    """Write `tokenizer.model` (tiktoken BPE) and `special_tokens.json` into `folder`."""
    regular = vocab_size - len(SPECIAL_TOKENS)
    tokens = [bytes([b]) for b in range(256)] + learn_merges(text, regular - 256)
    if len(tokens) < regular:  # the corpus ran out of pairs: pad with unused tokens
        tokens += [f"<unused_{i}>".encode() for i in range(regular - len(tokens))]
    model = folder / "tokenizer.model"
    model.write_text("".join(f"{base64.b64encode(tok).decode()} {rank}\n" for rank, tok in enumerate(tokens)))
    special = folder / "special_tokens.json"
    special.write_text(
        json.dumps(
            {"added_tokens": [{"id": regular + i, "content": tok} for i, tok in enumerate(SPECIAL_TOKENS)]},
            indent=1,
        )
        + "\n"
    )
    return {"path": model, "special_tokens_path": special}
