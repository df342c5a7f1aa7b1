r"""TiTok-L-32 (ViT-L encoder and decoder, 32 tokens) on ImageNet-1k at 256 px, single-stage RGB.

    python -m mixtok.train \
        --config experiments/configs/imagenet/titok_l32.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/titok_l32

Expect: the official rFID 2.21 (two-stage, paper); mixtok's single-stage recipe without a pretrained perceptual network
has not reproduced it (no run has been made). Eval reports PSNR, SSIM and codebook usage; rFID needs
Inception weights you supply (mixtok.evaluate.compute_rfid).

Recipe and its differences from the official two-stage one: mixtok.train.tokenizer_recipes. Global
batch 256, 1,000,000 steps. `:runlocal` smoke-tests it on a laptop (sample photos, 32 px, 4 steps).
"""

from mixtok.train.tokenizer_recipes import titok_imagenet


def get_config(arg=None):
    return titok_imagenet("titok_l32", arg, batch_size=256)
