#!/usr/bin/env python3
"""Train a reference model (rectified flow) on a procedural dataset. Resumable.

    /usr/bin/python3 tools/train.py                     # train / resume checkpoints/reference.pt
    /usr/bin/python3 tools/train.py --dataset textures  # the textures model: checkpoints/textures.pt
    /usr/bin/python3 tools/train.py --max-minutes 120   # stop (with a checkpoint) after 2 hours
    nohup nice -n 10 /usr/bin/python3 tools/train.py > train.log 2>&1 &   # in the background

Rectified flow as in the Wan2.1 / SD3 recipe: x_s = (1 - s) x0 + s e, target v = e - x0,
s ~ logit-normal(0, 1), model timestep t = 1000 s; 10% caption dropout (empty prompt = zero text
embedding) for classifier-free guidance; AdamW with linear warm-up, gradient clipping, EMA weights.

The checkpoint is compact (EMA and live weights fp32, Adam moments bf16) and is written atomically
(temp file + rename) every --ckpt-minutes, on SIGINT/SIGTERM, and at the end, so an interrupted
run resumes where it stopped. Progress goes to stdout and to a JSONL log next to the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Threading on a small CPU: PyTorch's OpenMP pool and OpenBLAS's own pthread pool together
# oversubscribe the cores (measured on 2 cores: 6.9 samples/s with both pools, 10.7 with OpenBLAS
# single-threaded inside PyTorch's threads). Passive OpenMP waiting leaves the cores to other work.
# With the malloc settings below the two splits are close on the 2 x 64 reference config (50-iteration
# windows of a long run): 11.2-11.9 samples/s as set here, 12.0-12.3 with OPENBLAS_NUM_THREADS=2
# and --threads 1 (later windows of that run: 12-15).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# glibc malloc serves every block over its mmap threshold (at most 32 MiB; the attention scores
# here are ~34 MiB) with a fresh mmap, and gives freed heap memory back to the kernel: each
# iteration then re-faults gigabytes of zeroed pages. Measured on 2 cores over 30 iterations:
# defaults 7.8 samples/s and 5.8M page faults; heap only, no trimming 14.5 samples/s and 1.0M
# (tcmalloc: 14.2). The settings are read at process start, so the trainer re-executes itself
# once with them; MIXCACHE_TRAIN_MALLOC=0 turns this off.
_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
               "MALLOC_TOP_PAD_": str(1 << 30)}


def _ensure_malloc_env():
    if os.environ.get("MIXCACHE_TRAIN_MALLOC") == "0" or all(k in os.environ for k in _MALLOC_ENV):
        return
    env = dict(os.environ)
    for k, v in _MALLOC_ENV.items():
        env.setdefault(k, v)
    os.execve(sys.executable, list(sys.orig_argv), env)


if __name__ == "__main__":
    _ensure_malloc_env()

import numpy as np
import torch

from mixcache_tools.dataset import DATASETS, dataset_vocab, load_vocab, sample_clip, split_combos
from mixcache_tools.reference_config import CONFIGS
from mixcache_tools.text import encode, token_list
from mixcache_tools.wan import TextEncoder, WanConfig, WanTransformer3DModel


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="reference", choices=sorted(CONFIGS))
    p.add_argument("--dataset", default="shapes", choices=DATASETS,
                   help="training data (data/vocab.json): shapes (the reference model) or textures")
    p.add_argument("--ckpt", default="",
                   help="checkpoint to resume from and write (default checkpoints/reference.pt for shapes, "
                        "checkpoints/textures.pt for textures)")
    p.add_argument("--init-from", metavar="CKPT", default="",
                   help="when --ckpt does not exist yet: start from CKPT's weights, optimizer and counters "
                        "although its config or dataset differs (the transformer's parameter shapes must match, "
                        "e.g. a new head split; token embedding rows are carried over by word)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4, help="cosine floor reached at --total-samples")
    p.add_argument("--total-samples", type=int, default=400_000, help="length of the lr schedule")
    p.add_argument("--warmup", type=int, default=100, help="warm-up iterations")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.1, help="caption dropout probability")
    p.add_argument("--iters", type=int, default=0, help="stop after this many iterations (0 = no limit)")
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this wall time (0 = no limit)")
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def build(cfg: WanConfig, vocab: dict, seed: int):
    torch.manual_seed(seed)
    model = WanTransformer3DModel(cfg)
    text = TextEncoder(len(token_list(vocab)), vocab["max_text_tokens"], cfg.text_dim)
    return model, text


def save_atomic(obj, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def state_dict_all(model, text) -> dict:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd.update({"text_encoder." + k: v.detach().clone() for k, v in text.state_dict().items()})
    return sd


def load_all(model, text, sd: dict):
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("text_encoder.")})
    text.load_state_dict({k[len("text_encoder."):]: v for k, v in sd.items() if k.startswith("text_encoder.")})


def load_optimizer(opt, opt_sd: dict):
    """Load a compact checkpoint's optimizer state (Adam moments stored bf16) back in fp32."""
    for st in opt_sd["state"].values():
        for k in ("exp_avg", "exp_avg_sq"):
            st[k] = st[k].float()
    opt.load_state_dict(opt_sd)


TOKEN_KEY = "text_encoder.token_embedding.weight"


def remap_tokens(ck: dict, tokens: list, model, text) -> None:
    """--init-from across vocabularies: rebuild the token embedding of CKPT (weights, EMA and Adam
    moments) for `tokens`, carrying every word's row over by name; new words keep this run's
    initialisation (moments zero). A no-op when the token lists agree."""
    old = ck.get("tokens")
    if old == tokens or old is None:
        return
    pos = {w: i for i, w in enumerate(old)}
    fresh = text.token_embedding.weight.detach().clone()

    def rebuild(t: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        out = init.clone().to(t.dtype)
        for i, w in enumerate(tokens):
            if w in pos:
                out[i] = t[pos[w]]
        return out

    for which in ("model", "ema"):
        ck[which][TOKEN_KEY] = rebuild(ck[which][TOKEN_KEY], fresh)
    # the optimizer's parameter ids follow `params`: transformer, then text encoder parameters
    names = [n for n, _ in model.named_parameters()] + ["text_encoder." + n for n, _ in text.named_parameters()]
    pid = names.index(TOKEN_KEY)
    st = ck["optimizer"]["state"].get(pid)
    if st is not None:
        for k in ("exp_avg", "exp_avg_sq"):
            st[k] = rebuild(st[k], torch.zeros_like(fresh))
    carried = sum(1 for w in tokens if w in pos)
    print(f"token embedding: {carried} of {len(tokens)} words carried over from the old vocabulary", flush=True)


def lr_at(args, it: int, samples: int) -> float:
    if it < args.warmup:
        return args.lr * (it + 1) / args.warmup
    frac = min(1.0, samples / max(1, args.total_samples))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * frac))


def main(argv=None):
    args = parse_args(argv)
    if not args.ckpt:
        args.ckpt = "checkpoints/reference.pt" if args.dataset == "shapes" else f"checkpoints/{args.dataset}.pt"
    torch.set_num_threads(args.threads)
    # Denormal floats (tiny Adam moments and gradients late in training) take a slow path on x86.
    torch.set_flush_denormal(True)
    vocab = dataset_vocab(load_vocab(), args.dataset)
    tokens = token_list(vocab)
    train_combos, heldout = split_combos(vocab)
    cfg = CONFIGS[args.config]
    model, text = build(cfg, vocab, args.seed)
    params = list(model.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99))
    ema_model, ema_text = build(cfg, vocab, args.seed)
    state = {"iter": 0, "samples": 0, "wall_s": 0.0, "loss_log": []}

    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, map_location="cpu")
        if ck["config"] != cfg.to_json():
            sys.exit(f"error: {args.ckpt} was trained with a different config; use --config or another --ckpt")
        if ck.get("dataset", "shapes") != args.dataset:
            sys.exit(f"error: {args.ckpt} was trained on the {ck.get('dataset', 'shapes')!r} dataset, not "
                     f"{args.dataset!r}; use --dataset {ck.get('dataset', 'shapes')} or another --ckpt")
        load_all(model, text, ck["model"])
        load_all(ema_model, ema_text, ck["ema"])
        load_optimizer(opt, ck["optimizer"])
        state = ck["state"]
        print(f"resumed {args.ckpt}: iter {state['iter']}, {state['samples']} samples, {state['wall_s']/60:.1f} min", flush=True)
    elif args.init_from:
        # A config change that keeps every parameter shape (here: the attention head split, which
        # only regroups q/k/v channels and re-assigns RoPE frequencies) continues from the old run.
        if not os.path.exists(args.init_from):
            sys.exit(f"error: --init-from {args.init_from}: no such checkpoint")
        ck = torch.load(args.init_from, map_location="cpu")
        remap_tokens(ck, tokens, model, text)
        want = {k: tuple(v.shape) for k, v in state_dict_all(model, text).items()}
        have = {k: tuple(v.shape) for k, v in ck["model"].items()}
        if want != have:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            sys.exit(f"error: --init-from {args.init_from}: parameter shapes differ from config {args.config!r} "
                     f"({len(diff)} tensors, e.g. {diff[0]}); only configs with identical shapes can continue")
        load_all(model, text, ck["model"])
        # the old EMA averages weights of the old config: restart it from the live weights
        load_all(ema_model, ema_text, ck["model"])
        load_optimizer(opt, ck["optimizer"])
        state = ck["state"]
        state.setdefault("stages", []).append(
            {"config": ck["config"], "dataset": ck.get("dataset", "shapes"),
             "until_iter": state["iter"], "until_samples": state["samples"]})
        print(f"initialised from {args.init_from} (iter {state['iter']}, {state['samples']} samples, other config); "
              f"continuing as {args.config!r} into {args.ckpt}", flush=True)
    else:
        load_all(ema_model, ema_text, state_dict_all(model, text))
        print(f"new run: {sum(p.numel() for p in model.parameters())} transformer params, "
              f"{len(train_combos)} train / {len(heldout)} held-out combinations", flush=True)

    log_path = os.path.splitext(args.ckpt)[0] + ".log.jsonl"
    ema_params = list(ema_model.parameters()) + list(ema_text.parameters())

    def checkpoint():
        opt_sd = opt.state_dict()
        # state_dict() shares the live per-parameter dicts: build new ones, never convert in place
        opt_sd["state"] = {
            pid: {k: (v.to(torch.bfloat16) if k in ("exp_avg", "exp_avg_sq") else v.clone()) for k, v in st.items()}
            for pid, st in opt_sd["state"].items()
        }
        save_atomic({
            "config": cfg.to_json(), "dataset": args.dataset, "tokens": tokens,
            "max_text_tokens": vocab["max_text_tokens"],
            "model": state_dict_all(model, text), "ema": state_dict_all(ema_model, ema_text),
            "optimizer": opt_sd, "state": state, "args": vars(args),
        }, args.ckpt)
        print(f"checkpoint {args.ckpt} at iter {state['iter']}", flush=True)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t_start = time.time()
    t_ckpt = time.time()
    wall0 = state["wall_s"]
    run_iters = 0
    window = []
    t_window = time.time()
    while not stop["flag"]:
        it = state["iter"]
        B = args.batch
        base = args.seed * 1_000_003 + it * B
        x0 = np.empty((B, 3, cfg_frames(vocab), vocab["clip"]["height"], vocab["clip"]["width"]), dtype=np.float32)
        ids = np.zeros((B, vocab["max_text_tokens"]), dtype=np.int64)
        g = np.random.default_rng(base)
        for b in range(B):
            attrs, clip = sample_clip(vocab, train_combos, base + b)
            x0[b] = clip
            if g.random() >= args.dropout:
                ids[b] = encode(attrs.caption(vocab), tokens, vocab["max_text_tokens"])
        x0t = torch.from_numpy(x0)
        noise = torch.from_numpy(g.standard_normal(x0.shape).astype(np.float32))
        s = torch.sigmoid(torch.from_numpy(g.standard_normal(B).astype(np.float32)))
        sb = s.view(B, 1, 1, 1, 1)
        xs = (1 - sb) * x0t + sb * noise
        target = noise - x0t

        for group in opt.param_groups:
            group["lr"] = lr_at(args, it, state["samples"])
        pred = model(xs, s * 1000.0, text(torch.from_numpy(ids)))
        loss = (pred - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        # EMA with the usual short-run correction, so early checkpoints are usable too
        decay = min(args.ema, (1 + it) / (10 + it))
        with torch.no_grad():
            for pe, p in zip(ema_params, params):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)

        state["iter"] += 1
        state["samples"] += B
        run_iters += 1
        window.append(loss.item())
        if state["iter"] % 50 == 0:
            dt = time.time() - t_window
            rec = {"iter": state["iter"], "samples": state["samples"], "loss": float(np.mean(window)),
                   "grad_norm": float(gnorm), "lr": opt.param_groups[0]["lr"],
                   "samples_per_s": len(window) * B / max(dt, 1e-9),
                   "wall_s": wall0 + time.time() - t_start}
            state["loss_log"].append(rec)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"iter {rec['iter']:6d}  samples {rec['samples']:8d}  loss {rec['loss']:.4f}  "
                  f"{rec['samples_per_s']:.1f} samples/s  lr {rec['lr']:.2e}", flush=True)
            window = []
            t_window = time.time()
        state["wall_s"] = wall0 + time.time() - t_start
        if args.iters and run_iters >= args.iters:
            break
        if args.max_minutes and time.time() - t_start >= args.max_minutes * 60:
            break
        if time.time() - t_ckpt >= args.ckpt_minutes * 60:
            checkpoint()
            t_ckpt = time.time()
    checkpoint()


def cfg_frames(vocab: dict) -> int:
    return vocab["clip"]["frames"]


if __name__ == "__main__":
    main()
