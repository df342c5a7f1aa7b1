r"""deit_small_patch16_224 on ImageNet-1k at 224 px: DeiT-S's recipe, and the config the token-reduction eval reads.

Train (facebookresearch/deit README_deit.md: `main.py --model deit_small_patch16_224 --batch-size 256` on 4 GPUs):

    python -m mixtok.train \
        --config experiments/configs/imagenet/deit_small_patch16_224.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/deit_small_patch16_224

Evaluate pretrained timm weights under every token-reduction rule on the validation split (`data_root/val`,
one folder per class), with no training: convert the weights once, then run `mixtok.reduction.evaluate`:

    python -m mixtok.interop.timm deit_small_patch16_224.fb_in1k model.safetensors deit_small.msgpack
    python -m mixtok.reduction.evaluate \
        --config experiments/configs/imagenet/deit_small_patch16_224.py:data_root=/data/imagenet \
        --weights deit_small.msgpack --out /tmp/deit_small_reduction

It evaluates the unreduced model and each rule at its default strengths (ToMe r = 8, 13, 16, 24, 31; keep-rate
rules 0.9, 0.7, 0.5 at blocks 3, 6, 9: EViT's setting), or the `--schedules` given (`"tome:r=13"`), and writes
accuracy, agreement with the unreduced model, tokens per block and GFLOPs per image to
/tmp/deit_small_reduction.json with the curve in .png. The evaluation preprocessing is DeiT's: resize 256
(bicubic), centre crop 224, ImageNet mean and std.

Expect: DeiT-S 79.9% top-1 unreduced (facebookresearch/deit README_deit.md: 79.854 with its own evaluation,
which notes that its DeiT-S "is *not* the same model as in Timm"); ToMe r = 13 off the shelf on timm's DeiT-S
weights 79.36% is for a DeiT-S trained with ToMe (facebookresearch/ToMe README: deit_S_r13). mixtok has not
run either here (no ImageNet on the development machine).

The recipe is facebookresearch/deit main.py's defaults: AdamW (eps 1e-8, betas (0.9, 0.999)), lr 5e-4 x global
batch / 512 = 1e-3 at batch 1024, weight decay 0.05, 300 epochs, 5 warm-up epochs from 1e-6, cosine to 1e-5, no
gradient clipping, label smoothing 0.1, drop path 0.1, weight EMA 0.99996, repeated augmentation with 3 copies,
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8 / cutmix 1.0 (switch 0.5, per batch), bicubic
training crops and evaluation resize (see experiments/configs/imagenet/hydra_vit_b.py, which uses the same
recipe, for how each is mapped). DeiT's hard distillation (the distilled models' teacher) is not part of the
trainer.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block, 4 steps). Run the same
command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DeiT-S README: --batch-size 256 on 4 GPUs
    return common.deit_recipe(arg, "deit_small_patch16_224")
