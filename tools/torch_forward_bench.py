#!/usr/bin/env python3
"""Time the reference model's forward in PyTorch eager on this machine, for the bench report's
"ONNX Runtime forward vs PyTorch eager" ratio (src/bench/machine.ts runs it next to
bench/runtime.ts and stores the result as the `torch` field of DIR/runtime.json).

What is timed matches bench/runtime.ts's reference forward: one CFG branch, batch 1, a random
latent of the model's shape (8 x 32 x 32 RGB -> 4 x 8 x 8 = 256 tokens for the reference model),
a random 16-token text embedding, timestep 500; the time and text embeddings are computed once
outside the timed region (as runtime.ts precomputes them), the patch embedding, every block and
the output head are timed. Median of at least 5 runs and 3 s after one warm-up, under
torch.inference_mode(), fp32.

PyTorch's OpenMP kernels (layer norm, softmax, reductions) slow down by an order of magnitude
when a thread shares its core with another busy process, so with --threads N > 1 the forward is
timed at 1 thread and at N threads and the faster is reported (`by_threads` has both).

    /usr/bin/python3 tools/torch_forward_bench.py [--model models/reference] [--threads N]

Prints one JSON object: {"forward_ms", "threads", "by_threads", "torch", "tokens", "params",
"weights", "iters"} (forward_ms and iters at the reported thread count).
The weights are the model folder's (random ones with --random-weights or when the folder has none:
the time does not depend on their values).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from mixcache_tools import st  # noqa: E402
from mixcache_tools.wan import WanConfig, WanTransformer3DModel, timestep_features  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models", "reference"))
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--text-tokens", type=int, default=16)
    ap.add_argument("--min-ms", type=float, default=3000.0)
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--random-weights", action="store_true")
    a = ap.parse_args()

    torch.manual_seed(0)
    with open(os.path.join(a.model, "transformer", "config.json"), encoding="utf-8") as f:
        cfg_json = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    cfg = WanConfig(**cfg_json)
    latent = {"frames": 8, "height": 32, "width": 32}
    meta = os.path.join(a.model, "mixcache.json")
    if os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            latent.update(json.load(f).get("latent", {}))

    model = WanTransformer3DModel(cfg)
    weights = "random"
    wpath = os.path.join(a.model, "transformer", "diffusion_pytorch_model.safetensors")
    if not a.random_weights and os.path.exists(wpath):
        sd = {k: torch.from_numpy(v.copy()) for k, v in st.load(wpath).items()}
        model.load_state_dict(sd)
        weights = os.path.relpath(wpath)
    model.eval()
    params = sum(p.numel() for p in model.parameters())

    x = torch.rand(1, cfg.in_channels, latent["frames"], latent["height"], latent["width"]) - 0.5
    text = torch.rand(1, a.text_tokens, cfg.text_dim) - 0.5
    t = torch.tensor([500.0])

    with torch.inference_mode():
        ce = model.condition_embedder
        temb = ce.time_embedder(timestep_features(t, cfg.freq_dim))
        tproj = ce.time_proj(F.silu(temb)).unflatten(1, (6, -1))
        ctx = ce.text_embedder(text)

        def forward():
            tok = model.patch_embedding(x)
            grid = tuple(tok.shape[2:])
            tok = tok.flatten(2).transpose(1, 2)
            rope = model.rope(grid)
            for blk in model.blocks:
                tok = blk(tok, tproj, ctx, rope)
            return model.head(tok, temb, grid, 1), grid

        def timed(threads: int) -> tuple[float, int, tuple]:
            torch.set_num_threads(threads)
            _, grid = forward()  # warm-up
            times = []
            t0 = time.perf_counter()
            while len(times) < a.min_iters or (time.perf_counter() - t0) * 1000 < a.min_ms:
                s = time.perf_counter()
                forward()
                times.append((time.perf_counter() - s) * 1000)
            return statistics.median(times), len(times), grid

        by_threads = {}
        best = None
        for n in sorted({1, max(1, a.threads)}):
            ms, iters, grid = timed(n)
            by_threads[str(n)] = ms
            if best is None or ms < best[0]:
                best = (ms, iters, n)

    print(json.dumps({
        "forward_ms": best[0],
        "threads": best[2],
        "by_threads": by_threads,
        "torch": torch.__version__,
        "tokens": grid[0] * grid[1] * grid[2],
        "params": params,
        "weights": weights,
        "iters": best[1],
    }))


if __name__ == "__main__":
    main()
