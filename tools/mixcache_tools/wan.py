"""Wan2.1 text-to-video transformer in plain PyTorch, with the diffusers `WanTransformer3DModel`
parameter names, so the exported safetensors load in the TypeScript runtime (and in diffusers).

Written from the description in docs/design/wan21.md (diffusers transformer_wan.py semantics):
patch embedding (Conv3d), sinusoidal timestep features (cos first), time MLP and 6-way modulation,
text projection (Linear-GELU(tanh)-Linear), blocks of self-attention (q/k RMSNorm across heads,
3D RoPE on interleaved pairs), cross-attention (affine LayerNorm, no gate) and a GELU(tanh) FFN,
and the modulated output head with channel-last unpatchify. Everything runs in fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class WanConfig:
    patch_size: list = field(default_factory=lambda: [1, 2, 2])
    num_attention_heads: int = 12
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    eps: float = 1e-6
    image_dim: object = None
    added_kv_proj_dim: object = None
    rope_max_seq_len: int = 1024
    pos_embed_seq_len: object = None

    @property
    def dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def to_json(self) -> dict:
        d = asdict(self)
        d["_class_name"] = "WanTransformer3DModel"
        return d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x, ctx=None, rope=None):
        B, L, D = x.shape
        kv = x if ctx is None else ctx
        q = self.norm_q(self.to_q(x))
        k = self.norm_k(self.to_k(kv))
        v = self.to_v(kv)
        q = q.view(B, L, self.heads, -1)
        k = k.view(B, kv.shape[1], self.heads, -1)
        v = v.view(B, kv.shape[1], self.heads, -1)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        a = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        a = a.transpose(1, 2).reshape(B, L, D)
        return self.to_out[0](a)


def attention(q, k, v):
    """softmax(q k^T / sqrt(d_h)) v over [B, H, L, d_h] (SDPA defaults: no mask, no dropout)."""
    w = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(w.softmax(dim=-1), v)


def rope_tables(cfg: WanConfig, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [L, d_h/2] for the 3D RoPE: d_h split into t/h/w parts of
    d_h - 4*floor(d_h/6), 2*floor(d_h/6), 2*floor(d_h/6); theta 10000; angles in float64."""
    dh = cfg.attention_head_dim
    d_hw = 2 * (dh // 6)
    d_t = dh - 2 * d_hw
    Fp, Hp, Wp = grid
    parts = []
    for d_a, n, axis in ((d_t, Fp, 0), (d_hw, Hp, 1), (d_hw, Wp, 2)):
        k = torch.arange(d_a // 2, dtype=torch.float64)
        omega = 10000.0 ** (-2.0 * k / d_a)
        pos = torch.arange(n, dtype=torch.float64)
        ang = pos[:, None] * omega[None, :]  # [n, d_a/2]
        shape = [1, 1, 1, d_a // 2]
        shape[axis] = n
        parts.append(ang.view(*shape).expand(Fp, Hp, Wp, d_a // 2))
    ang = torch.cat(parts, dim=-1).reshape(Fp * Hp * Wp, dh // 2)
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """x [B, L, H, d_h]; rotate interleaved pairs (x[2j], x[2j+1]) by angle j."""
    xr = x.float().unflatten(-1, (-1, 2))
    a, b = xr[..., 0], xr[..., 1]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return out.flatten(-2).type_as(x)


def timestep_features(t: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """Sinusoidal features [B, freq_dim], cos first (diffusers Timesteps, flip_sin_to_cos=True,
    downscale_freq_shift=0): omega_i = 10000^(-i/half)."""
    half = freq_dim // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * omega[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class GeluTanh(nn.Module):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


class TimeEmbedder(nn.Module):
    def __init__(self, freq_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(freq_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class TextEmbedder(nn.Module):
    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(text_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class ConditionEmbedder(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        D = cfg.dim
        self.time_embedder = TimeEmbedder(cfg.freq_dim, D)
        self.time_proj = nn.Linear(D, 6 * D)
        self.text_embedder = TextEmbedder(cfg.text_dim, D)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, ffn_dim)
        self.net = nn.ModuleList([proj, nn.Identity(), nn.Linear(ffn_dim, dim)])

    def forward(self, x):
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        D = cfg.dim
        self.eps = cfg.eps
        self.attn1 = Attention(D, cfg.num_attention_heads, cfg.eps)
        self.attn2 = Attention(D, cfg.num_attention_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(D, eps=cfg.eps, elementwise_affine=True)
        self.ffn = FeedForward(D, cfg.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, D) / D**0.5)

    # Each module returns its residual contribution; the block adds them. The TypeScript runtime
    # executes exactly these three functions as separate graphs.
    def sa(self, x, mod, rope):
        shift, scale, gate = mod[:, 0:1], mod[:, 1:2], mod[:, 2:3]
        h = F.layer_norm(x, (x.shape[-1],), eps=self.eps) * (1 + scale) + shift
        return self.attn1(h, rope=rope) * gate

    def ca(self, x, ctx):
        return self.attn2(self.norm2(x), ctx=ctx)

    def ffn_res(self, x, mod):
        shift, scale, gate = mod[:, 3:4], mod[:, 4:5], mod[:, 5:6]
        h = F.layer_norm(x, (x.shape[-1],), eps=self.eps) * (1 + scale) + shift
        return self.ffn(h) * gate

    def forward(self, x, tproj, ctx, rope):
        mod = self.scale_shift_table + tproj  # [B, 6, D]
        x = x + self.sa(x, mod, rope)
        x = x + self.ca(x, ctx)
        x = x + self.ffn_res(x, mod)
        return x


class WanTransformer3DModel(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, D, kernel_size=tuple(cfg.patch_size), stride=tuple(cfg.patch_size))
        self.condition_embedder = ConditionEmbedder(cfg)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        pt, ph, pw = cfg.patch_size
        self.proj_out = nn.Linear(D, cfg.out_channels * pt * ph * pw)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, D) / D**0.5)
        self._rope_cache: dict = {}

    def rope(self, grid):
        if grid not in self._rope_cache:
            self._rope_cache[grid] = rope_tables(self.cfg, grid)
        return self._rope_cache[grid]

    def embed(self, x, t, text):
        """-> tokens [B, L, D], tproj [B, 6, D], temb [B, D], ctx [B, S, D], grid."""
        ce = self.condition_embedder
        tok = self.patch_embedding(x)  # [B, D, F', H', W']
        grid = tuple(tok.shape[2:])
        tok = tok.flatten(2).transpose(1, 2)
        temb = ce.time_embedder(timestep_features(t, self.cfg.freq_dim))
        tproj = ce.time_proj(F.silu(temb)).unflatten(1, (6, -1))
        ctx = ce.text_embedder(text)
        return tok, tproj, temb, ctx, grid

    def head(self, x, temb, grid, B):
        shift, scale = (self.scale_shift_table + temb[:, None, :]).chunk(2, dim=1)
        y = F.layer_norm(x, (x.shape[-1],), eps=self.cfg.eps) * (1 + scale) + shift
        y = self.proj_out(y)  # [B, L, pt*ph*pw*C]
        pt, ph, pw = self.cfg.patch_size
        Fp, Hp, Wp = grid
        C = self.cfg.out_channels
        y = y.view(B, Fp, Hp, Wp, pt, ph, pw, C).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return y.reshape(B, C, Fp * pt, Hp * ph, Wp * pw)

    def forward(self, x, t, text):
        B = x.shape[0]
        tok, tproj, temb, ctx, grid = self.embed(x, t, text)
        rope = self.rope(grid)
        for blk in self.blocks:
            tok = blk(tok, tproj, ctx, rope)
        return self.head(tok, temb, grid, B)


class TextEncoder(nn.Module):
    """The reference model's text encoder: token embedding + learned position embedding over the
    dataset vocabulary, output [B, S, text_dim]. Padding rows (id 0) are exactly zero, as Wan's
    zero-padded umT5 output; the empty prompt therefore encodes to all zeros (the CFG negative)."""

    def __init__(self, vocab_size: int, max_tokens: int, text_dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, text_dim)
        self.position_embedding = nn.Parameter(torch.randn(max_tokens, text_dim) * 0.02)
        nn.init.normal_(self.token_embedding.weight, std=0.5)

    def forward(self, ids):  # ids [B, S] int64, 0 = pad
        mask = (ids != 0).float()[..., None]
        return (self.token_embedding(ids) + self.position_embedding[None]) * mask
