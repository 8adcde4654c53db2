"""Write test/golden/shapes.json: reference values from the Python generators of both datasets
(tools/mixcache_tools/dataset.py, textures.py) that the TypeScript mirrors (src/data/shapes.ts,
textures.ts) must reproduce bit for bit (the sha256 of every clip's float32 bytes).

Run with:  /usr/bin/python3 tools/dataset_golden.py
Needs only numpy. Re-run (and commit the JSON) whenever the generator or data/vocab.json changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from mixcache_tools.dataset import (  # noqa: E402
    Mulberry32,
    all_combos,
    dataset_vocab,
    load_vocab,
    sample_clip,
    split_combos,
    trajectory,
)

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "test", "golden", "shapes.json")

# (seed, which combination list sample_clip draws from)
CASES = [(0, "all"), (1, "all"), (7, "all"), (12345, "all"), (3, "all"), (42, "all"),
         (4294967295, "all"), (5, "train"), (99, "train")]


def checksums(clip: np.ndarray) -> dict:
    flat = clip.astype(np.float64).ravel()
    w = (np.arange(flat.size) % 101) / 101.0  # position-weighted: catches layout errors a plain sum misses
    return {"sum": float(flat.sum()), "weighted_sum": float((flat * w).sum()), "abs_sum": float(np.abs(flat).sum()),
            "sha256": hashlib.sha256(np.ascontiguousarray(clip, dtype="<f4").tobytes()).hexdigest()}


def pixel_probes(vocab: dict, attrs, traj, clip: np.ndarray) -> list:
    """[c, t, y, x, value] at fixed corners and around the shape (centre and edges, where values are fractional)."""
    _, T, H, W = clip.shape
    r = vocab["sizes"][attrs.size]
    pts = {(0, 0, 0, 0), (2, T - 1, H - 1, W - 1), (1, T // 2, H // 2, W // 2)}
    for t in (0, T - 1):
        cx, cy = traj[t]
        for ox, oy in ((0, 0), (r, 0), (0, -r), (0.7 * r, 0.7 * r), (-0.6 * r, 0.4 * r)):
            x = min(W - 1, max(0, int(np.floor(cx + ox))))
            y = min(H - 1, max(0, int(np.floor(cy + oy))))
            for c in range(3):
                pts.add((c, t, y, x))
    return [[c, t, y, x, float(clip[c, t, y, x])] for (c, t, y, x) in sorted(pts)]


# textures: seeds over all combinations, chosen so every background and pattern appears
TEXTURE_SEEDS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 4294967295]


def textures_section() -> dict:
    vocab = dataset_vocab(load_vocab(), "textures")
    combos = all_combos(vocab)
    train, heldout = split_combos(vocab)
    caps = [a.caption(vocab) for a in heldout]
    out = {
        "n_combos": len(combos),
        "n_train": len(train),
        "heldout_first": caps[:12],
        "heldout_sha256": hashlib.sha256("\n".join(caps).encode("utf-8")).hexdigest(),
        "clips": [],
    }
    seen_bg, seen_pat = set(), set()
    for seed in TEXTURE_SEEDS + [(1 << 20) + k for k in range(60)]:
        pool = train if seed % 3 == 2 else combos
        attrs, clip = sample_clip(vocab, pool, seed)
        if seed not in TEXTURE_SEEDS and attrs.background in seen_bg and attrs.pattern in seen_pat:
            continue
        seen_bg.add(attrs.background)
        seen_pat.add(attrs.pattern)
        out["clips"].append({
            "seed": seed, "combos": "train" if seed % 3 == 2 else "all",
            "attrs": {"shape": attrs.shape, "colour": attrs.colour, "size": attrs.size, "motion": attrs.motion,
                      "background": attrs.background, "pattern": attrs.pattern},
            "caption": attrs.caption(vocab), "shape": list(clip.shape), **checksums(clip),
        })
    assert seen_bg == set(vocab["backgrounds"]) and seen_pat == set(vocab["patterns"]), (seen_bg, seen_pat)
    return out


def main() -> None:
    vocab = dataset_vocab(load_vocab(), "shapes")
    combos = all_combos(vocab)
    train, heldout = split_combos(vocab)
    rng = Mulberry32(12345)
    rng_neg = Mulberry32(-1)
    out = {
        "$comment": "Written by tools/dataset_golden.py from tools/mixcache_tools/dataset.py; checked by test/shapes.test.ts.",
        "mulberry32": {
            "seed12345_u32": [rng.next_u32() for _ in range(6)],
            "seedminus1_random": [rng_neg.random() for _ in range(4)],
        },
        "n_combos": len(combos),
        "n_train": len(train),
        "heldout": [a.caption(vocab) for a in heldout],
        "clips": [],
    }
    for seed, which in CASES:
        pool = combos if which == "all" else train
        attrs, clip = sample_clip(vocab, pool, seed)
        rng = Mulberry32(seed)
        rng.random()  # the draw that picked the combination
        traj = trajectory(vocab, attrs, rng)
        out["clips"].append({
            "seed": seed,
            "combos": which,
            "attrs": {"shape": attrs.shape, "colour": attrs.colour, "size": attrs.size,
                      "motion": attrs.motion, "background": attrs.background},
            "caption": attrs.caption(vocab),
            "trajectory": [[float(x), float(y)] for x, y in traj],
            "shape": list(clip.shape),
            "pixels": pixel_probes(vocab, attrs, traj, clip),
            **checksums(clip),
        })
    out["textures"] = textures_section()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    text = json.dumps(out, indent=1)
    # put each innermost list of numbers on one line to keep the file small and readable
    text = re.sub(r"\[\s+([-0-9.eE+,\s]+?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    tx = out["textures"]
    print(f"wrote {OUT}: shapes {len(out['clips'])} clips, {len(heldout)} held-out combos of {len(combos)}; "
          f"textures {len(tx['clips'])} clips, {tx['n_combos'] - tx['n_train']} held-out of {tx['n_combos']}")


if __name__ == "__main__":
    main()
