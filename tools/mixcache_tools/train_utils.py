"""Rebuild the PyTorch modules from a training checkpoint (export, golden file, evaluation)."""
from __future__ import annotations

from .wan import TextEncoder, WanConfig, WanTransformer3DModel


def build_from_checkpoint(ck: dict, which: str = "ema"):
    cfg_json = {k: v for k, v in ck["config"].items() if not k.startswith("_")}
    cfg = WanConfig(**cfg_json)
    model = WanTransformer3DModel(cfg)
    sd = ck[which]
    tsd = {k[len("text_encoder."):]: v for k, v in sd.items() if k.startswith("text_encoder.")}
    text = TextEncoder(tsd["token_embedding.weight"].shape[0], int(ck["max_text_tokens"]), cfg.text_dim)
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("text_encoder.")})
    text.load_state_dict(tsd)
    model.eval()
    text.eval()
    return model, text
