"""Weight import: pretrained checkpoints of other libraries turned into mixtok variables.

- `mixtok.interop.timm`: timm's MetaFormer family (PoolFormer, PoolFormerV2, ConvFormer, CAFormer),
  `convert` / `to_timm` and the command `python -m mixtok.interop.timm NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.gfnet`: the official GFNet checkpoints (raoyongming/GFNet), `convert` / `to_official` and
  `python -m mixtok.interop.gfnet NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.affnet`: the official AFFNet checkpoints (microsoft/TokenMixers, cvnets), likewise.
- `mixtok.interop.official`: what those two share (the key table, both conversions, the command line).
- `mixtok.interop.weight_files`: reading checkpoint files (.safetensors, .pth, .bin) and writing /
  reading converted variables (flax msgpack).

Submodules are not imported here, so `python -m mixtok.interop.<module>` runs its module exactly once.
"""
