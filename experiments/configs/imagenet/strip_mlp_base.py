r"""strip_mlp_base on ImageNet-1k at 224 px: Strip-MLP (strip token mixing), the official recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/strip_mlp_base.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/strip_mlp_base

Expect: the official README (Med-Process/Strip_MLP) reports 83.6% top-1 on ImageNet-1k val at 224 px (Strip-MLP-B),
trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below), but
the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Strip-MLP: Efficient Token Interaction for Vision MLP (Cao et al., ICCV 2023).

Official recipe (Med-Process/Strip_MLP @ 492d7050: configs/smlp_base_alpha3_patch4_224_imagenet1k.yaml
on config.py's defaults, main.py, lr_scheduler.py, optimizer.py, data/build.py, utils.py; Swin Transformer's
training code): embed dim
112, layers (2, 2, 18, 2), alpha 3, drop path 0.1 on every block (hard-coded in models/strip_mlp.py BasicBlock; the
yaml's DROP_RATE 0.2 reaches no layer that runs), AdamW (eps 1e-8, betas (0.9, 0.999)), weight decay 0.05 on every
parameter but the 1-D ones (norms, biases: optimizer.py set_weight_decay, mixtok's default; the GRN's [1, 1, 1, C]
gamma and beta are 4-D, so they decay, as there), base lr 5e-4, warm-up lr 5e-7, min lr 5e-6 at the README's
global batch 128 (one GPU, --batch-size 128). main.py computes batch-scaled rates (`linear_scaled_lr`, divided by
TRAIN.EPOCHS, not 512) but never writes them into the config it then freezes, so the optimizer and scheduler run
the unscaled ones; this config keeps them at batch 128 and scales them linearly with `batch_size=`. 300 epochs
with 20 of linear warm-up, gradient clipping at global norm 5.0 (TRAIN.CLIP_GRAD), label smoothing 0.1, eval crop
224 / 256 = 0.875 (TEST.CROP: Resize(256) then CenterCrop(224), bicubic). No weight EMA.

Schedule (lr_scheduler.py): timm's CosineLRScheduler over the updates (`t_in_epochs=False`, stepped with
`step_update` after every update), t_initial = 300 epochs of updates with the warm-up inside it, warm-up from
WARMUP_LR, cosine to MIN_LR, no cool-down: `timm_cosine` with `schedule_on="step"`. Mixup / CutMix (config.py
AUG): mixup 0.8, cutmix 1.0, prob 1.0, switch 0.5, per batch, soft targets smoothed by 0.1.

Augmentations (config.py AUG with data/build.py: timm's create_transform): RandAugment rand-m9-mstd0.5-inc1, random
erasing p 0.25 (per-pixel noise, one box), training crops with bicubic interpolation (DATA.INTERPOLATION), bicubic
evaluation resize; its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Differences: main.py trains in float32 (--amp-opt-level defaults to O0); `:bf16` computes in bfloat16. The official
loader drops each epoch's last partial batch (10,009 updates an epoch at 128); mixtok's stream never drops one.
BatchNorm statistics are the global batch's under data parallelism (the official DistributedDataParallel keeps
per-GPU BatchNorm; at the README's one GPU they are the same).

Compute: 3,002,735 steps of 128 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4 steps). Run the same
command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

recipe = import_beside(__file__, "strip_mlp_tiny_light")


def get_config(arg=None):
    return recipe.strip_mlp_config(arg, "strip_mlp_base")  # configs/smlp_base_alpha3_patch4_224_imagenet1k.yaml
