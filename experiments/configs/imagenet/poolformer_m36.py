r"""PoolFormer-M36 on ImageNet-1k at 224 px: PoolFormer v1, pooling token mixer.

    python -m mixtok.train \
        --config experiments/configs/imagenet/poolformer_m36.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/poolformer_m36

Expect: MetaFormer Is Actually What You Need for Vision (Yu et al., CVPR 2022) reports 82.1% top-1
on ImageNet-1k val at 224 px, trained on ImageNet-1k only (sail-sg/poolformer README, "PoolFormer
Models"). mixtok has not reproduced it: parts of the official recipe listed in
mixtok/train/recipes.py (RandAugment, Mixup / CutMix, random erasing, ...) are not implemented yet,
so expect a lower top-1 until they are.

Official recipe, from sail-sg/poolformer: README.md "Train" and train.py's defaults: AdamW, lr 1e-3
at global batch 1024 (8 GPUs x 128; the README's rule is lr = batch / 1024 * 1e-3), 5 warm-up
epochs, drop path 0.3, 300 epochs, weight decay 0.05, label smoothing 0.1, apex mixed precision;
eval crop_pct 0.95 (timm's pretrained config).

Compute: 375,341 steps of 1,024 images (300 epochs, 384M images at 224 px); 8.8 GMACs per image
forward (official README), so about 1.0e19 multiply-adds to train (3x forward). The official command
runs on 8 GPUs (type not stated), batch 128 per GPU. Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps): about half a minute on a 2-core CPU, mostly compilation (measured 15-42 s over the 28
configs). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import metaformer_imagenet


def get_config(arg=None):
    return metaformer_imagenet("poolformer_m36", arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                               drop_path_rate=0.3, eval_crop_pct=0.95)
