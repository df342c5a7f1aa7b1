r"""ms_mlp_b on ImageNet-1k at 224 px: MS-MLP (mix-shift token mixing), the official base recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/ms_mlp_b.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/ms_mlp_b

Expect: the official README (JegZheng/MS-MLP) reports 83.8% top-1 on ImageNet-1k val at 224 px (MS-MLP-Base),
trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below), but
the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Mixing and Shifting: Exploiting Global and Local Dependencies in Vision MLPs (Zheng et al., 2022).

Official recipe (JegZheng/MS-MLP @ a10d34d9: configs/msmlp_base_patch4_shift5_224.yaml on config.py's defaults,
main.py, lr_scheduler.py, optimizer.py, data/build.py; Swin Transformer's training code): embed dim 128, depths (3,
3, 27, 3), drop path 0.5 (the yaml's DROP_PATH_RATE), AdamW (eps 1e-8, betas (0.9, 0.999)), weight decay 0.05 on
every parameter but the 1-D ones (norms, biases, layer scales: optimizer.py set_weight_decay, which is mixtok's
default), base lr 5e-4, warm-up lr 5e-7 and min lr 5e-6, each scaled by global batch / 512 (main.py
`linear_scaled_lr`): 1e-3, 1e-6 and 1e-5 at global batch 1024 (README command: --batch-size 64 on 8 GPUs with
--accumulation-steps 2; main.py scales the rates by the accumulation steps too, so an update of 1,024 images takes
the same rates as the tiny / small runs; mixtok takes the whole 1,024 in one step, which is the same update); 300
epochs with 20 of linear warm-up, gradient clipping at global norm 5.0 (TRAIN.CLIP_GRAD), label smoothing 0.1, eval
crop 224 / 256 = 0.875 (TEST.CROP: Resize(256) then CenterCrop(224), bicubic). No weight EMA (main.py --model_ema
defaults to False).

Schedule (lr_scheduler.py): timm's CosineLRScheduler over the updates (`t_in_epochs=False`, stepped with
`step_update` after every update), t_initial = 300 epochs of updates with the warm-up inside it (no warm-up prefix),
warm-up from the scaled WARMUP_LR, cosine to the scaled MIN_LR, no cool-down: `timm_cosine` with
`schedule_on="step"`. Mixup / CutMix (config.py AUG): mixup 0.8, cutmix 1.0, prob 1.0, switch 0.5, per batch, soft
targets smoothed by 0.1.

Augmentations (config.py AUG with data/build.py: timm's create_transform): RandAugment rand-m9-mstd0.5-inc1, random
erasing p 0.25 (per-pixel noise, one box), training crops with bicubic interpolation (DATA.INTERPOLATION), bicubic
evaluation resize; its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Differences: main.py trains in apex AMP O1 (--amp-opt-level default); `:bf16` is the nearest (mixtok computes in
bfloat16, parameters float32). The official loader drops each epoch's last partial batch (1,251 updates an epoch);
mixtok's stream never drops one.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4 steps). Run the same
command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

recipe = import_beside(__file__, "ms_mlp_t")


def get_config(arg=None):
    return recipe.ms_mlp_config(arg, "ms_mlp_b", drop_path_rate=0.5)  # configs/msmlp_base_patch4_shift5_224.yaml
