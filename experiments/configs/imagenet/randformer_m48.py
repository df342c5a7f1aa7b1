r"""RandFormer-M48 on ImageNet-1k at 224 px: frozen random token mixing in stages 3-4.

    python -m mixtok.train \
        --config experiments/configs/imagenet/randformer_m48.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/randformer_m48

Expect: MetaFormer Baselines for Vision (Yu et al., TPAMI 2024) reports 81.4% top-1 on ImageNet-1k
val at 224 px, trained on ImageNet-1k only (sail-sg/metaformer README, "Models with basic token
mixers trained on ImageNet-1K"). mixtok has not reproduced it: parts of the official recipe listed
in mixtok/train/recipes.py (RandAugment, Mixup / CutMix, random erasing, ...) are not implemented
yet, so expect a lower top-1 until they are.

Official recipe, from sail-sg/metaformer: scripts/randformer/train_randformer_m48.sh and train.py's
defaults: AdamW, lr 4e-3 at global batch 4096, 5 warm-up epochs, drop path 0.3, 300 epochs, weight
decay 0.05, label smoothing 0.1; eval crop_pct 1.0.

RandFormer's frozen token-mixing matrices are sized at initialisation (196 and 49 tokens at 224 px):
the model trains and evaluates at one resolution.

Compute: 93,835 steps of 4,096 images (300 epochs, 384M images at 224 px); 11.9 GMACs per image
forward (official README), so about 1.4e19 multiply-adds to train (3x forward). The official script
runs on 8 GPUs (type not stated) with 4 gradient-accumulation steps of 128 images per GPU. Time: not
measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps): about half a minute on a 2-core CPU, mostly compilation (measured 15-42 s over the 28
configs). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import metaformer_imagenet


def get_config(arg=None):
    return metaformer_imagenet("randformer_m48", arg, lr=4e-3, batch_size=4096, warmup_epochs=5,
                               drop_path_rate=0.3)
