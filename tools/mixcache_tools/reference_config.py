"""The reference model's shape: Wan2.1 architecture, scaled down for a 2-core CPU."""
from .wan import WanConfig

# 8 frames x 32 x 32 RGB clips, patch (2, 4, 4) -> 4 x 8 x 8 = 256 tokens.
# Two heads of 64 rather than four of 32: Wan's 3D RoPE gives each spatial axis 2*floor(d_h/6)
# channels with frequencies 10000^(-2k/d) (diffusers WanRotaryPosEmbed). At d_h = 32 an axis gets
# 5 frequencies, of which only 1 and 0.16 rad/patch vary over an 8-patch grid, and the 1 rad/patch
# one aliases (6 patches ~ 2 pi): trained 73k samples that way, the model drew shapes split across
# opposite edges. At d_h = 64 (10 frequencies: 1, 0.40, 0.16, 0.06, ...) offsets are separable.
# The parameter shapes are the same, so training continued from the 4 x 32 run (train.py --init-from).
REFERENCE = WanConfig(
    patch_size=[2, 4, 4],
    num_attention_heads=2,
    attention_head_dim=64,
    in_channels=3,
    out_channels=3,
    text_dim=64,
    freq_dim=256,
    ffn_dim=512,
    num_layers=8,
)

# A few-second config for smoke tests.
TINY = WanConfig(
    patch_size=[2, 4, 4],
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=3,
    out_channels=3,
    text_dim=16,
    freq_dim=32,
    ffn_dim=48,
    num_layers=2,
)

# TINY with one head: identical parameter shapes (the --init-from smoke test).
TINY_1HEAD = WanConfig(**{**TINY.__dict__, "num_attention_heads": 1, "attention_head_dim": 24})

CONFIGS = {"reference": REFERENCE, "tiny": TINY, "tiny-1head": TINY_1HEAD}
