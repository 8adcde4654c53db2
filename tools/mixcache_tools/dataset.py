"""The procedural datasets: "shapes" (one coloured shape moving over a plain background) and
"textures" (the same shapes with a surface pattern, over a stochastic textured background; see
textures.py).

The generator is deterministic from a seed and mirrored bit-for-bit in TypeScript
(src/data/shapes.ts); both read data/vocab.json. Keep the two in step: the golden test
test/shapes.test.ts checks clip checksums written by `python3 tools/dataset_golden.py`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_PATH = os.path.join(ROOT, "data", "vocab.json")


def load_vocab(path: str = VOCAB_PATH) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


class Mulberry32:
    """Tiny 32-bit PRNG (mulberry32) chosen because it is trivial to mirror exactly in TypeScript."""

    def __init__(self, seed: int):
        self.a = seed & 0xFFFFFFFF

    def next_u32(self) -> int:
        self.a = (self.a + 0x6D2B79F5) & 0xFFFFFFFF
        t = self.a
        t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF
        return (t ^ (t >> 14)) & 0xFFFFFFFF

    def random(self) -> float:
        return self.next_u32() / 4294967296.0


@dataclass(frozen=True)
class Attrs:
    shape: str
    colour: str
    size: str
    motion: str
    background: str
    pattern: str = ""  # textures dataset only

    def caption(self, vocab: dict) -> str:
        return vocab["caption_template"].format(
            size=self.size, colour=self.colour, shape=self.shape, motion=self.motion, background=self.background,
            pattern=self.pattern,
        )


DATASETS = ("shapes", "textures")


def dataset_vocab(vocab: dict, name: str) -> dict:
    """The flat vocabulary of one dataset. "shapes" is the top level of data/vocab.json; "textures"
    is the top level with the fields of its "textures" object replacing or extending it. The result
    carries "dataset": name and is what a model folder ships as vocab.json."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    base = {k: v for k, v in vocab.items() if k not in ("textures", "$comment")}
    if name == "textures":
        base.update({k: v for k, v in vocab["textures"].items() if k != "$comment"})
    base["dataset"] = name
    return base


def all_combos(vocab: dict) -> list[Attrs]:
    """Every attribute combination, in the fixed order shape, colour, size, motion, background
    (then pattern, where the vocabulary has patterns)."""
    patterns = vocab.get("patterns") or [""]
    out = []
    for s in vocab["shapes"]:
        for c in vocab["colours"]:
            for z in vocab["sizes"]:
                for m in vocab["motions"]:
                    for b in vocab["backgrounds"]:
                        for p in patterns:
                            out.append(Attrs(s, c, z, m, b, p))
    return out


def split_combos(vocab: dict) -> tuple[list[Attrs], list[Attrs]]:
    """(train, heldout). Held-out = the first round(fraction*N) entries of a seeded Fisher-Yates
    shuffle of all combinations; training never sees them."""
    combos = all_combos(vocab)
    idx = list(range(len(combos)))
    rng = Mulberry32(vocab["heldout"]["seed"])
    for i in range(len(idx) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        idx[i], idx[j] = idx[j], idx[i]
    n_hold = int(round(vocab["heldout"]["fraction"] * len(combos)))
    held = set(idx[:n_hold])
    train = [c for k, c in enumerate(combos) if k not in held]
    heldout = [c for k, c in enumerate(combos) if k in held]
    return train, heldout


def trajectory(vocab: dict, attrs: Attrs, rng: Mulberry32) -> list[tuple[float, float]]:
    """Shape centre per frame: constant speed, random start chosen so the shape stays in view."""
    clip = vocab["clip"]
    T, H, W = clip["frames"], clip["height"], clip["width"]
    r = vocab["sizes"][attrs.size]
    dx, dy = vocab["motions"][attrs.motion]
    travel = vocab["speed_px_per_frame"] * (T - 1)

    def start(extent: int, d: int) -> float:
        lo, hi = r + 0.5, extent - r - 0.5
        u = rng.random()
        if d == 0:
            return lo + u * (hi - lo)
        span = hi - lo - travel
        base = lo + u * span
        return base if d > 0 else base + travel

    x0 = start(W, dx)
    y0 = start(H, dy)
    v = vocab["speed_px_per_frame"]
    return [(x0 + dx * v * f, y0 + dy * v * f) for f in range(T)]


def _inside(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        s = 0.85 * r
        return (np.abs(x - cx) <= s) & (np.abs(y - cy) <= s)
    if shape == "triangle":
        # upright triangle: apex (cx, cy - r), base at y = cy + 0.75 r, half-width r at the base
        top = cy - r
        return (y <= cy + 0.75 * r) & (y >= top) & (np.abs(x - cx) <= (y - top) / 1.75)
    raise ValueError(f"unknown shape {shape!r}")


def render(vocab: dict, attrs: Attrs, rng: Mulberry32) -> np.ndarray:
    """Clip as float32 [3, T, H, W] in [-1, 1]. 2x2 supersampling for smooth edges."""
    clip = vocab["clip"]
    T, H, W = clip["frames"], clip["height"], clip["width"]
    r = float(vocab["sizes"][attrs.size])
    fg = np.array(vocab["colours"][attrs.colour], dtype=np.float64)
    bg = np.array(vocab["backgrounds"][attrs.background], dtype=np.float64)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.empty((3, T, H, W), dtype=np.float32)
    for f, (cx, cy) in enumerate(trajectory(vocab, attrs, rng)):
        cov = np.zeros((H, W))
        for oy in (0.25, 0.75):
            for ox in (0.25, 0.75):
                cov += _inside(attrs.shape, xs + ox, ys + oy, cx, cy, r)
        cov *= 0.25
        rgb = bg[:, None, None] * (1 - cov) + fg[:, None, None] * cov  # [3, H, W] in 0..255
        out[:, f] = (rgb / 255.0 * 2.0 - 1.0).astype(np.float32)
    return out


def sample_clip(vocab: dict, combos: list[Attrs], seed: int) -> tuple[Attrs, np.ndarray]:
    """A clip from a seed: attributes drawn uniformly from `combos`, then position, then pixels."""
    rng = Mulberry32(seed)
    attrs = combos[int(rng.random() * len(combos))]
    if vocab.get("dataset") == "textures":
        from .textures import render_textured
        return attrs, render_textured(vocab, attrs, rng)
    return attrs, render(vocab, attrs, rng)
