#!/usr/bin/env python3
"""Export a training checkpoint to the shipped model folder (default models/reference/):

    transformer/config.json                      diffusers WanTransformer3DModel fields
    transformer/diffusion_pytorch_model.safetensors   EMA weights, fp32, diffusers key names
    text_encoder/config.json, text_encoder/model.safetensors
    tokenizer/tokenizer.json                     word-level vocabulary
    vocab.json                                   the model's dataset vocabulary, flat (tokenizer words, evaluator)
    mixcache.json                                latent shape, fps, sampler defaults
    cache_profiles/                              calibration profiles (written by `mixcache calibrate`)
    training.json                                samples seen, wall time, loss curve (for the model card)
    golden.safetensors                           fixed inputs + PyTorch outputs per stage (runtime parity test)

    /usr/bin/python3 tools/export.py [--ckpt checkpoints/reference.pt] [--out models/reference]
    /usr/bin/python3 tools/export.py --dataset textures   # checkpoints/textures.pt -> models/textures
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch

from mixcache_tools import st
from mixcache_tools.dataset import DATASETS, dataset_vocab, load_vocab
from mixcache_tools.golden import write_golden
from mixcache_tools.train_utils import build_from_checkpoint


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="",
                   help="which model: shapes (models/reference) or textures (models/textures); default: the checkpoint's")
    p.add_argument("--ckpt", default="", help="default checkpoints/reference.pt, or checkpoints/DATASET.pt")
    p.add_argument("--out", default="", help="default models/reference, or models/DATASET")
    p.add_argument("--weights", choices=["ema", "model"], default="ema")
    args = p.parse_args(argv)
    folder = {"shapes": "reference"}
    if not args.ckpt:
        args.ckpt = f"checkpoints/{folder.get(args.dataset or 'shapes', args.dataset)}.pt"
    ck = torch.load(args.ckpt, map_location="cpu")
    dataset = ck.get("dataset", "shapes")
    if args.dataset and args.dataset != dataset:
        sys.exit(f"error: {args.ckpt} was trained on the {dataset!r} dataset, not {args.dataset!r}")
    if not args.out:
        args.out = f"models/{folder.get(dataset, dataset)}"
    sd = ck[args.weights]
    vocab = dataset_vocab(load_vocab(), dataset)
    cfg = dict(ck["config"])
    cfg["_diffusers_version"] = "0.35.0"
    out = args.out
    tr = {k: v.float().numpy() for k, v in sd.items() if not k.startswith("text_encoder.")}
    te = {k[len("text_encoder."):]: v.float().numpy() for k, v in sd.items() if k.startswith("text_encoder.")}
    st.save(os.path.join(out, "transformer", "diffusion_pytorch_model.safetensors"), tr, {"format": "pt"})
    write_json(os.path.join(out, "transformer", "config.json"), cfg)
    st.save(os.path.join(out, "text_encoder", "model.safetensors"), te, {"format": "pt"})
    write_json(os.path.join(out, "text_encoder", "config.json"), {
        "type": "embedding", "vocab_size": int(te["token_embedding.weight"].shape[0]),
        "max_tokens": int(ck["max_text_tokens"]), "text_dim": int(te["token_embedding.weight"].shape[1]),
    })
    write_json(os.path.join(out, "tokenizer", "tokenizer.json"), {"type": "word", "tokens": ck["tokens"], "max_tokens": int(ck["max_text_tokens"])})
    write_json(os.path.join(out, "vocab.json"), vocab)
    clip = vocab["clip"]
    write_json(os.path.join(out, "mixcache.json"), {
        "format": 1,
        "name": f"mixcache-{folder.get(dataset, dataset)}-{dataset}" if dataset == "shapes" else f"mixcache-{dataset}",
        "family": "wan",
        "pixel_space": True,
        "latent": {"channels": 3, "frames": clip["frames"], "height": clip["height"], "width": clip["width"]},
        "fps": clip["fps"],
        "defaults": {"sampler": "unipc", "steps": 50, "guidance": 5.0, "shift": 3.0, "negative_prompt": ""},
    })
    os.makedirs(os.path.join(out, "cache_profiles"), exist_ok=True)
    state = ck["state"]
    log = state.get("loss_log", [])
    write_json(os.path.join(out, "training.json"), {
        "iterations": state["iter"], "samples_seen": state["samples"], "wall_s": round(state["wall_s"], 1),
        "batch": ck["args"]["batch"], "lr": ck["args"]["lr"], "ema": ck["args"]["ema"],
        "loss_curve": [{"samples": r["samples"], "loss": round(r["loss"], 5)} for r in log[:: max(1, len(log) // 200)]],
        "final_loss": round(sum(r["loss"] for r in log[-10:]) / max(1, len(log[-10:])), 5) if log else None,
        "exported_weights": args.weights,
        # earlier configs this run trained under before --init-from (same shapes, other head split)
        "dataset": dataset,
        "stages": [{"num_attention_heads": g["config"]["num_attention_heads"],
                    "attention_head_dim": g["config"]["attention_head_dim"],
                    "dataset": g.get("dataset", "shapes"),
                    "until_samples": g["until_samples"]} for g in state.get("stages", [])],
    })
    model, text = build_from_checkpoint(ck, args.weights)
    write_golden(os.path.join(out, "golden.safetensors"), model, text, ck["tokens"], int(ck["max_text_tokens"]), st.save)
    print(f"exported {args.ckpt} ({state['samples']} samples, {state['wall_s']/3600:.2f} h) -> {out}")


if __name__ == "__main__":
    main()
