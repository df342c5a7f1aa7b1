r"""Video tokenizer quickstart: a small OmniTokenizer (VQ) on 9-frame 32x32 clips filmed across the bundled photos.

    python -m mixtok.train --config experiments/configs/quickstart_video_tokenizer.py --workdir /tmp/mixtok_omni

The model is OmniTokenizer as mixtok builds it (`omnitokenizer_vq`: the first frame in p x p patches, the rest in
pt x p x p patches, per-frame spatial transformer, per-location causal temporal transformer, the l2-normalised EMA
VQ codebook), shrunk: width 64, 2 heads of 32, spatial blocks "tt" in the encoder and the decoder (32-px frames
in 4-px patches are an 8 x 8 grid, one 8 x 8 window: window layers would be global ones), 1 temporal layer each,
patch 4, temporal patch 4, 512 codes of 8 numbers (dead codes restarted). A 9-frame clip [9, 32, 32, 3] is
3 x 8 x 8 = 192 tokens.
Data: `sample_videos` (pans, zooms and rotations across 14 photographs; eval: clips of 3 photographs never
trained on). Training: clips only (data.image_ratio 0), L2 loss, AdamW, cosine.

Measured on a 2-core CPU shared with other jobs (load average about 5; JAX 0.10.2, 2026-12-08) with the command
above: held-out PSNR 14.54 dB (per-frame mean), SSIM 0.497, temporal PSNR 34.0 dB, in 11 min 14 s wall (674 s,
including compilation and four evals); eval codebook usage 98%, perplexity 358. PSNR by step: 15.34 (250),
14.65 (500), 14.35 (750), 14.54 (1,000). This is FAR below the issue's aim (22 dB) and over the 10-minute target:
the eval PNG strips show reconstructions that are blurred, roughly uniform colour fields that barely follow the
clip's content (the codebook is in use, so not a collapsed codebook). Not yet understood; tried on 120 steps only
(per-batch train PSNR swings between 11 and 21 dB): lr 3e-4 (fixed-batch PSNR 14.0 -> 15.5), FSQ 8-8-8-8 instead
of VQ (no better), 1,024 codes without dead-code restart (about 15 codes in use). Each step costs about 0.6 s
here (patch 8 is about 3x cheaper, but 16 tokens a latent frame). A suspect, not tested: the patch embedding's
LayerNorm over each raw patch (`PatchEmbed`, as the official model) makes a patch's embedding invariant to that
patch's brightness offset and contrast, which at 4-px patches of 32-px frames leaves the decoder little context to
recover them.

Options after a colon (e.g. `:steps=3000,width=96`): steps, width, frames (1 + 4k), patch, codebook, batch, lr.
"""

from ml_collections import ConfigDict

from mixtok.train.config import parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, steps=1000, width=64, frames=9, patch=4, codebook=512, batch=4, lr=1e-3)
    config = ConfigDict()
    config.seed = 0
    config.task = "tokenizer"
    config.total_steps = args.steps
    config.batch_size = args.batch
    config.eval_batch_size = 32
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 250
    config.keep_checkpoints = 2

    config.data = ConfigDict(
        dict(
            name="sample_videos",
            image_size=32,
            num_frames=args.frames,
            num_examples=20_000,
            num_eval_examples=64,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )

    config.model = ConfigDict()
    config.model.name = "omnitokenizer_vq"
    config.model.dtype = "float32"
    config.model.kwargs = ConfigDict(
        dict(
            patch_size=args.patch,
            temporal_patch_size=4,
            dim=args.width,
            heads=2,
            dim_head=args.width // 2,
            temporal_depth=1,
            encoder_blocks="tt",
            decoder_blocks="tt",
            fix_temporal_peg=True,  # a causal encoder (omnitokenizer.py); converted official weights want False
            quantizer=dict(
                name="vq",
                codebook_size=args.codebook,
                code_dim=8,
                l2_normalize=True,
                normalize_codebook=False,
                ema_decay=0.99,
                ema_epsilon=1e-7,
                beta=0.25,
                # Codes whose usage EMA falls below 0.05 picks a step are restarted from batch vectors: without it
                # about 15 of 512 codes stay in use (the official codebook's restart: `restart_thres`).
                dead_code_threshold=0.05,
            ),
        )
    )

    config.loss = ConfigDict(dict(reconstruction="l2"))
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=args.lr,
            min_lr=1e-5,
            warmup_steps=min(100, args.steps // 10),
            weight_decay=1e-4,
            b1=0.9,
            b2=0.99,
            grad_clip=1.0,
        )
    )
    return config
