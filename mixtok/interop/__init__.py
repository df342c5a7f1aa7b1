"""Weight import: pretrained checkpoints of other libraries turned into mixtok variables.

- `mixtok.interop.timm`: timm's MetaFormer family (PoolFormer, PoolFormerV2, ConvFormer, CAFormer), DaViT,
  MLP-Mixer, ViT and DeiT (the distilled ones included), `convert` / `to_timm` and the command
  `python -m mixtok.interop.timm NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.gfnet`: the official GFNet checkpoints (raoyongming/GFNet), `convert` / `to_official` and
  `python -m mixtok.interop.gfnet NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.affnet`: the official AFFNet checkpoints (microsoft/TokenMixers, cvnets), likewise.
- `mixtok.interop.cas_vit`, `.ffnet`, `.iformer`, `.lsnet`, `.transnext`: the official CAS-ViT
  (Tianfang-Zhang/CAS-ViT), FFNet (ysj9909/FFNet, training or fused form), iFormer (sail-sg/iFormer, the
  Inception Transformer), LSNet (jameslahm/lsnet) and TransNeXt (DaiShiResearch/TransNeXt) checkpoints,
  likewise (`load_state_dict(..., ema=True)` reads the EMA weights where the training script saves them,
  `--ema` on the command line; LSNet's distilled checkpoints through `distillation_head=`).
- `mixtok.interop.titok`: official TiTok state dicts (bytedance/1d-tokenizer: the released single-stage VQ
  tokenizers TiTok-BL-64 / BL-128 / SL-256 VQ8k, or mixtok's titok_* / one_d_piece_* variants), `convert` /
  `to_official` and `python -m mixtok.interop.titok NAME CHECKPOINT OUTPUT.msgpack`; the legacy two-stage
  checkpoints are refused in one line.
- `mixtok.interop.ms_mlp`: the official MS-MLP checkpoints (JegZheng/MS-MLP; `load_state_dict(..., ema=True)` for
  `model_ema`), `convert` / `to_official` and `python -m mixtok.interop.ms_mlp NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.strip_mlp`: the official Strip-MLP checkpoints (Med-Process/Strip_MLP; the training checkpoint's
  'model', BatchNorm statistics included), `convert` / `to_official` and
  `python -m mixtok.interop.strip_mlp NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.raft_mlp`: official RaftMLP state dicts (okojoalg/raft-mlp; no checkpoints are published, the
  training script's `last_model_0.pt` is a bare state dict), `convert` / `to_official` (the permuted blocks'
  LayerNorm weights reordered) and `python -m mixtok.interop.raft_mlp NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.wavemix`: the official WaveMix ImageNet state dicts (pranavphoenix/WaveMix Saved_weights; bare
  state dicts, timm.py's `head.2` naming accepted), `convert` / `to_official` and
  `python -m mixtok.interop.wavemix NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.ponet`: the official PoNet LRA classifier's state dict (lxchtan/PoNet examples/LRA `ModelForSC`;
  run_tasks.py's `{"model_state_dict": ...}` file), `convert` / `to_official` and
  `python -m mixtok.interop.ponet NAME CHECKPOINT OUTPUT.msgpack`.
- `mixtok.interop.hydra`: the official Hydra mixer's state dict (goombalab/hydra `Hydra`), `convert_mixer` /
  `to_official` (the repository releases no image model or checkpoint).
- `mixtok.interop.official`: what those share (the key table, both conversions, the command line: exit
  code 0 written, 2 bad input or arguments).
- `mixtok.interop.weight_files`: reading checkpoint files (.safetensors, .pth, .bin) and writing /
  reading converted variables (flax msgpack).

Submodules are not imported here, so `python -m mixtok.interop.<module>` runs its module exactly once.
"""
