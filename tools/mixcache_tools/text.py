"""Word-level tokenizer over the dataset vocabulary. The token list is exported as
tokenizer.json next to the model; the TypeScript tokenizer (src/text/tokenizer.ts) reads that file."""
from __future__ import annotations

import re

PAD = "<pad>"


def token_list(vocab: dict) -> list[str]:
    """Id 0 is padding; then every word of the caption template and the attribute values, in order
    of first appearance (patterns last, in the textures dataset)."""
    words: list[str] = [PAD]
    pieces = [re.sub(r"\{[a-z]+\}", " ", vocab["caption_template"])]
    for key in ("sizes", "colours", "shapes", "motions", "backgrounds", "patterns"):
        if key not in vocab:
            continue
        vals = vocab[key]
        pieces.extend(vals if isinstance(vals, list) else list(vals.keys()))
    for p in pieces:
        for w in p.split():
            if w not in words:
                words.append(w)
    return words


def encode(text: str, tokens: list[str], max_tokens: int) -> list[int]:
    index = {w: i for i, w in enumerate(tokens)}
    words = text.lower().split()
    if len(words) > max_tokens:
        raise ValueError(f"prompt has {len(words)} words, the model takes at most {max_tokens}")
    ids = []
    for w in words:
        if w not in index:
            raise ValueError(f"word {w!r} is not in the vocabulary: {' '.join(tokens[1:])}")
        ids.append(index[w])
    return ids + [0] * (max_tokens - len(ids))
