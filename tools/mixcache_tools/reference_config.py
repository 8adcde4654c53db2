"""The reference model's shape: Wan2.1 architecture, scaled down for a 2-core CPU."""
from .wan import WanConfig

# 8 frames x 32 x 32 RGB clips, patch (2, 4, 4) -> 4 x 8 x 8 = 256 tokens.
REFERENCE = WanConfig(
    patch_size=[2, 4, 4],
    num_attention_heads=4,
    attention_head_dim=32,
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

CONFIGS = {"reference": REFERENCE, "tiny": TINY}
