"""The "textures" dataset: a patterned shape moving over a stochastic textured background.

Why it exists: on flat-colour clips every sampling trajectory lands on nearly the same output, so
taking fewer steps costs almost nothing. Real video models draw fine detail out of the noise and
the trajectory decides which detail. Here the caption names a texture class ("grass", "static",
"striped", ...) but the instance (blade positions, sand grains, ripple phases, brick shades, the
cloud field, static pixels, dot layout, stripe phase) comes from the clip's random stream, so a
model has to pick one out of the noise as real models do.

Mirrored bit for bit by src/data/textures.ts. Only IEEE-exact operations are used (+ - * /, floor,
min, max, comparisons; no sin or exp, whose last bit differs between libm and V8), in the same
order on both sides, and every random number comes from the clip's Mulberry32 stream in this
order: combination, trajectory (2), pattern parameters, background parameters.
"""
from __future__ import annotations

import numpy as np

from .dataset import Attrs, Mulberry32, _inside, trajectory

N_BLADES = 48          # grass blades per clip
DOT_CELLS = 10         # dotted: a DOT_CELLS x DOT_CELLS grid of 2-px cells centred on the shape
WATER_DIRS = ((1, 0), (0, 1), (1, 1), (1, -1))


def _fmod(v, p):
    """v mod p for positive p, as v - floor(v / p) * p (the TypeScript side computes the same)."""
    return v - np.floor(v / p) * p


def pattern_params(pattern: str, rng: Mulberry32) -> dict:
    if pattern == "plain":
        return {}
    if pattern == "striped":
        o = int(rng.random() * 3)
        return {"orient": o, "phase": rng.random() * 4.0}
    if pattern == "checkered":
        px = rng.random() * 4.0
        py = rng.random() * 4.0
        return {"px": px, "py": py}
    if pattern == "dotted":
        return {"cells": [rng.random() < 0.3 for _ in range(DOT_CELLS * DOT_CELLS)]}
    raise ValueError(f"unknown pattern {pattern!r}")


def pattern_dark(pattern: str, p: dict, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Boolean map: where the shape's surface takes the dark shade, in shape-local coordinates
    (the pattern moves with the shape)."""
    if pattern == "plain":
        return np.zeros(lx.shape, dtype=bool)
    if pattern == "striped":
        c = ly if p["orient"] == 0 else (lx if p["orient"] == 1 else lx + ly)
        return _fmod(c + p["phase"], 4.0) < 2.0
    if pattern == "checkered":
        k = np.floor((lx + p["px"]) / 2.0) + np.floor((ly + p["py"]) / 2.0)
        return _fmod(k, 2.0) == 1.0
    if pattern == "dotted":
        i = np.clip(np.floor((lx + 10.0) / 2.0), 0, DOT_CELLS - 1).astype(np.int64)
        j = np.clip(np.floor((ly + 10.0) / 2.0), 0, DOT_CELLS - 1).astype(np.int64)
        cells = np.array(p["cells"], dtype=bool)
        return cells[j * DOT_CELLS + i]
    raise ValueError(f"unknown pattern {pattern!r}")


def background(vocab: dict, name: str, rng: Mulberry32) -> np.ndarray:
    """The textured background as float64 [3, T, H, W] in 0..255."""
    clip = vocab["clip"]
    T, H, W = clip["frames"], clip["height"], clip["width"]
    base = [float(v) for v in vocab["backgrounds"][name]]
    det = [float(v) for v in vocab["background_detail"][name]]
    out = np.empty((3, T, H, W), dtype=np.float64)
    for c in range(3):
        out[c] = base[c]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)

    def put(mask: np.ndarray, t, value_per_channel):
        for c in range(3):
            out[c, t][mask] = value_per_channel[c]

    if name == "grass":
        img = np.empty((3, H, W), dtype=np.float64)
        for c in range(3):
            img[c] = base[c]
        for _ in range(N_BLADES):
            x = int(rng.random() * W)
            y0 = int(rng.random() * H)
            length = 2 + int(rng.random() * 6)
            a = 0.5 + 0.5 * rng.random()
            for y in range(y0, min(H, y0 + length)):
                for c in range(3):
                    img[c, y, x] = base[c] + (det[c] - base[c]) * a
        out[:] = img[:, None]
    elif name == "sand":
        img = np.empty((3, H, W), dtype=np.float64)
        light = [base[c] + (255.0 - base[c]) * 0.35 for c in range(3)]
        for y in range(H):
            for x in range(W):
                u = rng.random()
                v = det if u < 0.2 else (light if u < 0.3 else base)
                for c in range(3):
                    img[c, y, x] = v[c]
        out[:] = img[:, None]
    elif name == "water":
        waves = []
        for _ in range(2):
            d = WATER_DIRS[int(rng.random() * 4)]
            period = 5 + int(rng.random() * 4)
            waves.append((d, period, rng.random() * period))
        for t in range(T):
            hi = np.zeros((H, W), dtype=bool)
            for (dx, dy), period, ph in waves:
                s = xs * dx + ys * dy + ph + t
                hi |= _fmod(s, float(period)) < 1.5
            put(hi, t, det)
    elif name == "brick":
        ox = int(rng.random() * 8)
        oy = int(rng.random() * 4)
        rows, cols = H // 4 + 2, W // 8 + 2
        shade = [0.7 + 0.5 * rng.random() for _ in range(rows * cols)]
        img = np.empty((3, H, W), dtype=np.float64)
        for y in range(H):
            yy = y + oy
            row = yy // 4
            for x in range(W):
                xx = x + ox + (4 if row % 2 == 1 else 0)
                if yy % 4 == 0 or xx % 8 == 0:
                    for c in range(3):
                        img[c, y, x] = det[c]
                else:
                    s = shade[row * cols + xx // 8]
                    for c in range(3):
                        img[c, y, x] = min(255.0, base[c] * s)
        out[:] = img[:, None]
    elif name == "cloud":
        gh, gw = H // 8 + 2, (W + T) // 8 + 2
        lat = np.array([rng.random() for _ in range(gh * gw)], dtype=np.float64).reshape(gh, gw)
        for t in range(T):
            gx = (xs + t) / 8.0
            gy = ys / 8.0
            i = np.floor(gx)
            j = np.floor(gy)
            a = gx - i
            b = gy - j
            a = a * a * (3.0 - 2.0 * a)
            b = b * b * (3.0 - 2.0 * b)
            ii = i.astype(np.int64)
            jj = j.astype(np.int64)
            n = (lat[jj, ii] * (1.0 - a) + lat[jj, ii + 1] * a) * (1.0 - b) + \
                (lat[jj + 1, ii] * (1.0 - a) + lat[jj + 1, ii + 1] * a) * b
            cover = np.minimum(1.0, np.maximum(0.0, (n - 0.45) * 4.0))
            for c in range(3):
                out[c, t] = base[c] + (det[c] - base[c]) * cover
    elif name == "static":
        for t in range(T):
            hi = np.empty((H, W), dtype=bool)
            for y in range(H):
                for x in range(W):
                    hi[y, x] = rng.random() >= 0.5
            put(hi, t, det)
    else:
        raise ValueError(f"unknown background {name!r}")
    return out


def render_textured(vocab: dict, attrs: Attrs, rng: Mulberry32) -> np.ndarray:
    """Clip as float32 [3, T, H, W] in [-1, 1]: the shape (2x2 supersampled coverage, as the shapes
    dataset) with its pattern over the textured background."""
    clip = vocab["clip"]
    T, H, W = clip["frames"], clip["height"], clip["width"]
    r = float(vocab["sizes"][attrs.size])
    fg = [float(v) for v in vocab["colours"][attrs.colour]]
    shade = float(vocab["pattern_shade"])
    traj = trajectory(vocab, attrs, rng)
    pat = pattern_params(attrs.pattern, rng)
    bg = background(vocab, attrs.background, rng)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.empty((3, T, H, W), dtype=np.float32)
    for f, (cx, cy) in enumerate(traj):
        cov = np.zeros((H, W))
        for oy in (0.25, 0.75):
            for ox in (0.25, 0.75):
                cov += _inside(attrs.shape, xs + ox, ys + oy, cx, cy, r)
        cov *= 0.25
        dark = pattern_dark(attrs.pattern, pat, (xs + 0.5) - cx, (ys + 0.5) - cy)
        s = np.where(dark, shade, 1.0)
        for c in range(3):
            rgb = bg[c, f] * (1 - cov) + (fg[c] * s) * cov
            out[c, f] = (rgb / 255.0 * 2.0 - 1.0).astype(np.float32)
    return out
