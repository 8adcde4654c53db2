"""Golden file for the TypeScript runtime: fixed inputs and the PyTorch outputs of each stage of the
exported model (text encoder, time path, text projection, patch embedding, each module of block 0,
the head, a full forward per CFG branch, and one CFG sampler step). Written next to the exported
weights as golden.safetensors; test/golden.test.ts checks the ONNX runtime against it without
needing PyTorch."""
from __future__ import annotations

import math

import numpy as np
import torch

from .text import encode


def unipc_sigmas(steps: int, shift: float) -> np.ndarray:
    """diffusers UniPC flow sigmas (use_flow_sigmas, final_sigmas_type zero), as in docs/design/wan21.md 4.1."""
    base = np.linspace(1.0, 1.0 / 1000, steps + 1)[:-1]
    s = shift * base / (1 + (shift - 1) * base)
    if abs(s[0] - 1) < 1e-6:
        s[0] -= 1e-6
    return np.concatenate([s, [0.0]]).astype(np.float32)


@torch.no_grad()
def write_golden(path: str, model, text_encoder, tokens: list[str], max_tokens: int, save) -> None:
    g = torch.Generator().manual_seed(1234)
    cfg = model.cfg
    clip = (1, cfg.in_channels, 8, 32, 32)
    x = torch.randn(clip, generator=g)
    # a caption of the model's own dataset (the textures vocabulary names a pattern and a texture)
    prompt = ("a large striped red circle moving right on a grass background" if "striped" in tokens
              else "a large red circle moving right on a black background")
    ids = torch.tensor([encode(prompt, tokens, max_tokens)])
    text = text_encoder(ids)
    empty = text_encoder(torch.zeros_like(ids))
    sig = unipc_sigmas(50, 3.0)
    t = torch.tensor([float(math.trunc(1000 * (1 - 1e-6)))])  # the UniPC grid's first timestep, 999
    tok, tproj, temb, ctx, grid = model.embed(x, t, text)
    rope = model.rope(grid)
    blk = model.blocks[0]
    mod = blk.scale_shift_table + tproj
    sa = blk.sa(tok, mod, rope)
    h1 = tok + sa
    ca = blk.ca(h1, ctx)
    h2 = h1 + ca
    ffn = blk.ffn_res(h2, mod)
    hid = torch.randn(tok.shape, generator=g)
    head = model.head(hid, temb, grid, 1)
    v_c = model(x, t, text)
    v_u = model(x, t, empty)
    guidance = 5.0
    v = v_u + guidance * (v_c - v_u)
    # first UniPC step is first order (= Euler on the UniPC grid)
    x1 = x + (float(sig[1]) - float(sig[0])) * v
    out = {
        "input.x": x, "input.t": t, "input.text_ids": ids.to(torch.float32), "input.hidden": hid,
        "text.embedding": text, "text.empty": empty,
        "time.temb": temb, "time.tproj": tproj, "text.ctx": ctx, "patch.tokens": tok,
        "block0.sa": sa, "block0.ca": ca, "block0.ffn": ffn, "head.v": head,
        "forward.cond": v_c, "forward.uncond": v_u, "step.x1": x1,
    }
    save(path, {k: v.numpy() for k, v in out.items()}, {"prompt": prompt, "guidance": str(guidance), "sampler": "unipc", "steps": "50", "shift": "3.0"})
