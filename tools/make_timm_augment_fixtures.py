"""Writes the timm augmentation fixtures: timm's own ops run on bundled photos with fixed parameters.

tests/data/test_augment_timm.py runs mixtok.data.augment on the same inputs and parameters and checks the
outputs against these, op by op, so CI checks parity with timm without installing torch. Needs torch and timm
(the `timm` extra) and scikit-image (a core dependency), not mixtok or JAX; run it from the repository root:

    python tools/make_timm_augment_fixtures.py --out tests/fixtures/timm_augment

Inputs are three scikit-image photos (astronaut, chelsea, coffee), cropped and shrunk with PIL to small
landscape, portrait and square images. It writes `timm_augment.npz` holding

    input/<photo>                      uint8 [H, W, 3]
    op/<photo>/<k>                     timm/data/auto_augment.py NAME_TO_OP[op](image, *args, fillcolor=,
                                       resample=) for case k of manifest["op_cases"] (op, magnitude, negate,
                                       resample, and the args timm's LEVEL_TO_ARG gave)
    chain/<k>                          a whole RandAugment (rand_augment_transform via create_transform,
                                       rand-m9-mstd0.5-inc1) on input/astronaut, seeded; manifest["chains"][k]
                                       lists the ops, args and interpolations it applied
    erase/input                        input/astronaut after ToTensor + Normalize (ImageNet), as [H, W, 3]
    erase/<k>/output, erase/<k>/values timm/data/random_erasing.py RandomErasing on it, seeded; the boxes in
                                       manifest["erasing"][k], each box's fill values in order
    erase_stats/<k>                    [N, 5] boxes (image, top, left, height, width) of many seeded draws
    rrc/<photo>/<k>                    RandomResizedCropAndInterpolation with the fixed box and interpolation of
                                       manifest["rrc_cases"][k]
    rrc_stats/<k>                      [N, 4] boxes (top, left, height, width) from its get_params, seeded
    eval/<photo>/<k>                   transforms_imagenet_eval(size, crop_pct, 'bicubic') uint8 output

plus `manifest.json`: versions, the level-to-args table (every op at several magnitudes, both signs), the
parsed form of timm's RandAugment config strings (op list, weights, n, p, magnitude, mstd, mmax, fill), the
cases above, and the npz's SHA-256. The whole set is about 1.6 MB.
"""

import argparse
import hashlib
import json
import os
import platform
import random
import sys

import numpy as np

SEED = 20261207
PHOTOS = {  # photo -> (top, left, height, width) of the crop of the original, then the small size (h, w)
    "astronaut": ((0, 0, 384, 512), (48, 64)),
    "chelsea": ((0, 80, 300, 225), (64, 48)),
    "coffee": ((0, 100, 400, 400), (56, 56)),
}
OP_PHOTOS = ("astronaut", "chelsea")
OP_MAGNITUDES = (2.0, 5.0, 9.3)
LEVEL_MAGNITUDES = (0.0, 0.7, 2.0, 3.3, 5.0, 7.77, 9.0, 9.3, 10.0, 12.0, 15.0)
LEVEL_HPARAMS = dict(translate_const=100, translate_pct=0.3, img_mean=(124, 116, 104))
CONFIG_STRINGS = (
    "rand-m9-mstd0.5-inc1",
    "rand-m9-mstd0.5",
    "rand-m9-n3-mstd0.5",
    "rand-m7-mstd0.5-inc1",
    "rand-m9-mstd101",
    "rand-mstd1-tweights",
    "rand-m10-n2-mmax15-mstd0.5-inc1",
    "rand-m6-n4-p0.7",
    "rand-m9-inc0",
    "rand-t3a",
    "rand-m10-n3-t3aw",
)
CHAIN_CONFIG = "rand-m9-mstd0.5-inc1"
CHAINS = 12
ERASING_CASES = (  # mode, max_count
    ("pixel", 1),
    ("pixel", 3),
    ("rand", 2),
    ("const", 1),
)
ERASE_STATS = ((1, 3000), (3, 1500))  # max_count, images
RRC_SIZE = 32
RRC_BOXES = (  # fraction of (top, left, height, width) of the photo
    (0.0, 0.0, 1.0, 1.0),
    (0.1, 0.25, 0.5, 0.4),
    (0.5, 0.3, 0.2, 0.3),
)
RRC_STATS = (((48, 64), 4000), ((20, 200), 4000))  # image (h, w), draws
EVAL_CASES = ((32, 0.875), (40, 0.9), (41, 0.9), (45, 0.95), (48, 1.0))  # 41: odd margin 19, rounded half to even
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_photos():
    from PIL import Image
    from skimage import data

    photos = {}
    for name, ((top, left, height, width), (out_h, out_w)) in PHOTOS.items():
        array = getattr(data, name)()[top : top + height, left : left + width, :3]
        photos[name] = np.asarray(Image.fromarray(array).resize((out_w, out_h), Image.Resampling.LANCZOS))
    return photos


def level_table(aa):
    """timm's LEVEL_TO_ARG for every op, magnitude and sign (its coin flip replaced by the given sign)."""
    table = []
    original = aa._randomly_negate
    try:
        for negate in (False, True):
            aa._randomly_negate = (lambda v: -v) if negate else (lambda v: v)
            for name, level in aa.LEVEL_TO_ARG.items():
                for magnitude in LEVEL_MAGNITUDES:
                    args = [] if level is None else list(level(magnitude, dict(LEVEL_HPARAMS)))
                    table.append(dict(op=name, magnitude=magnitude, negate=negate, args=args))
    finally:
        aa._randomly_negate = original
    return table


def parsed_configs(aa, aa_params):
    out = {}
    for config_str in CONFIG_STRINGS:
        ra = aa.rand_augment_transform(config_str, dict(aa_params))
        op = ra.ops[0]
        out[config_str] = dict(
            ops=[o.name for o in ra.ops],
            weights=None if ra.choice_weights is None else [float(w) for w in ra.choice_weights],
            num_layers=ra.num_layers,
            prob=op.prob,
            magnitude=op.magnitude,
            magnitude_std=op.magnitude_std,
            magnitude_max=op.magnitude_max,
            fill=list(op.kwargs["fillcolor"]),
            translate_const=op.hparams["translate_const"],
        )
    return out


def op_cases(aa, photos, arrays):
    from PIL import Image

    fill = LEVEL_HPARAMS["img_mean"]
    resamples = (int(Image.Resampling.BILINEAR), int(Image.Resampling.BICUBIC))
    cases = []
    for name, level in aa.LEVEL_TO_ARG.items():
        if name.startswith("GaussianBlurRand") or name == "PosterizeOriginal":
            continue  # draw inside the op / AutoAugment-only
        geometric = name.startswith(("Rotate", "Shear", "Translate"))
        settings = [(m, k % 2 == 1, resamples[k % 2]) for k, m in enumerate(OP_MAGNITUDES)]
        if geometric:
            settings.append((OP_MAGNITUDES[-1], True, resamples[1]))
        for magnitude, negate, resample in settings:
            aa_negate = aa._randomly_negate
            aa._randomly_negate = (lambda v: -v) if negate else (lambda v: v)
            try:
                args = [] if level is None else list(level(magnitude, dict(LEVEL_HPARAMS)))
            finally:
                aa._randomly_negate = aa_negate
            k = len(cases)
            cases.append(dict(op=name, magnitude=magnitude, negate=negate, resample=resample, args=args, fill=fill))
            for photo in OP_PHOTOS:
                image = Image.fromarray(photos[photo])
                try:
                    out = aa.NAME_TO_OP[name](image, *args, fillcolor=fill, resample=resample)
                except ValueError as e:  # Pillow >= 11 refuses posterize(bits=0); older Pillow gave black
                    cases[-1]["pil_error"] = str(e)
                    continue
                arrays[f"op/{photo}/{k}"] = np.asarray(out)
    return cases


def chains(aa, timm_data, photos, arrays):
    """Whole RandAugment runs as timm's train transform builds them, every applied op recorded."""
    train = timm_data.create_transform(48, is_training=True, auto_augment=CHAIN_CONFIG, mean=MEAN, std=STD)
    (ra,) = [t for t in train.transforms if isinstance(t, aa.RandAugment)]
    log = []

    def recorder(name, fn):
        def op(img, *args, **kwargs):
            log.append(dict(op=name, args=list(args), resample=int(kwargs["resample"]), fill=list(kwargs["fillcolor"])))
            return fn(img, *args, **kwargs)

        return op

    for op in ra.ops:
        op.aug_fn = recorder(op.name, op.aug_fn)
    from PIL import Image

    out = []
    for k in range(CHAINS):
        random.seed(SEED + k)
        np.random.seed(SEED + k)
        log.clear()
        arrays[f"chain/{k}"] = np.asarray(ra(Image.fromarray(photos["astronaut"])))
        out.append(list(log))
    return out


def erasing(torch, photos, arrays):
    from timm.data import random_erasing as re_module

    image = torch.from_numpy(photos["astronaut"].copy()).permute(2, 0, 1).float() / 255.0
    image = (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    arrays["erase/input"] = image.permute(1, 2, 0).numpy().copy()
    rng = random.Random(SEED)
    integers = []

    class Recorder:  # random.* as timm calls it, remembering randint's results (the boxes' top and left)
        def __getattr__(self, name):
            return getattr(rng, name)

        def randint(self, a, b):
            integers.append(rng.randint(a, b))
            return integers[-1]

    boxes = []
    original_pixels = re_module._get_pixels

    def get_pixels(per_pixel, rand_color, patch_size, dtype, device):
        values = original_pixels(per_pixel, rand_color, patch_size, dtype=dtype, device=device)
        boxes.append(dict(top=integers[-2], left=integers[-1], height=patch_size[1], width=patch_size[2]))
        if record_values:
            arrays[f"erase/{len(cases)}/values/{len(boxes) - 1}"] = values.permute(1, 2, 0).numpy().copy()
        return values

    cases, stats, record_values = [], {}, True
    re_module.random, re_module._get_pixels = Recorder(), get_pixels
    try:
        for mode, max_count in ERASING_CASES:
            torch.manual_seed(SEED + len(cases))
            boxes.clear()
            eraser = re_module.RandomErasing(1.0, mode=mode, max_count=max_count, device="cpu")
            arrays[f"erase/{len(cases)}/output"] = eraser(image.clone()).permute(1, 2, 0).numpy().copy()
            cases.append(dict(mode=mode, max_count=max_count, boxes=list(boxes)))
        record_values = False
        for max_count, images in ERASE_STATS:
            eraser = re_module.RandomErasing(1.0, mode="const", max_count=max_count, device="cpu")
            rows = []
            for i in range(images):
                boxes.clear()
                eraser(torch.zeros(3, *photos["astronaut"].shape[:2]))
                rows += [(i, b["top"], b["left"], b["height"], b["width"]) for b in boxes]
            arrays[f"erase_stats/{max_count}"] = np.asarray(rows, np.int32)
            height, width = photos["astronaut"].shape[:2]
            stats[str(max_count)] = dict(images=images, height=height, width=width)
    finally:
        re_module.random, re_module._get_pixels = random, original_pixels
    return cases, stats


def resized_crops(timm_data, photos, arrays):
    from PIL import Image

    cases = []
    for box in RRC_BOXES:
        for interpolation in ("bilinear", "bicubic"):
            cases.append(dict(box_fraction=list(box), interpolation=interpolation))
    for photo, image in photos.items():
        height, width = image.shape[:2]
        for k, case in enumerate(cases):
            top, left, h, w = case["box_fraction"]
            crop = (int(top * height), int(left * width), max(1, int(h * height)), max(1, int(w * width)))
            rrc = timm_data.transforms.RandomResizedCropAndInterpolation(RRC_SIZE, interpolation=case["interpolation"])
            rrc.get_params = lambda img, scale, ratio, crop=crop: crop
            arrays[f"rrc/{photo}/{k}"] = np.asarray(rrc(Image.fromarray(image)))
            case.setdefault("boxes", {})[photo] = list(crop)
    stats = []
    random.seed(SEED)
    for (height, width), draws in RRC_STATS:
        img = Image.new("RGB", (width, height))
        rrc = timm_data.transforms.RandomResizedCropAndInterpolation(RRC_SIZE)
        rows = [rrc.get_params(img, rrc.scale, rrc.ratio) for _ in range(draws)]
        arrays[f"rrc_stats/{len(stats)}"] = np.asarray(rows, np.int32)
        stats.append(dict(height=height, width=width, draws=draws, scale=list(rrc.scale), ratio=list(rrc.ratio)))
    return cases, stats


def eval_transforms(timm_data, photos, arrays):
    from PIL import Image

    for photo, image in photos.items():
        for k, (size, crop_pct) in enumerate(EVAL_CASES):
            tf = timm_data.transforms_factory.transforms_imagenet_eval(
                size, crop_pct=crop_pct, interpolation="bicubic", normalize=False
            )
            arrays[f"eval/{photo}/{k}"] = tf(Image.fromarray(image)).permute(1, 2, 0).numpy().copy()
    return [dict(size=size, crop_pct=crop_pct, interpolation="bicubic") for size, crop_pct in EVAL_CASES]


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "timm_augment"), help="output folder")
    args = parser.parse_args(argv)
    import PIL
    import skimage
    import timm
    import timm.data as timm_data
    import torch
    from timm.data import auto_augment as aa

    torch.manual_seed(SEED)
    photos = load_photos()
    arrays = {f"input/{name}": image for name, image in photos.items()}
    aa_params = dict(translate_const=int(48 * 0.45), img_mean=tuple(min(255, round(255 * x)) for x in MEAN))
    manifest = dict(
        versions=dict(
            timm=timm.__version__,
            torch=torch.__version__,
            pillow=PIL.__version__,
            skimage=skimage.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
        ),
        seed=SEED,
        photos={name: dict(crop=list(crop), size=list(size)) for name, (crop, size) in PHOTOS.items()},
        mean=list(MEAN),
        std=list(STD),
        level_hparams=dict(LEVEL_HPARAMS, img_mean=list(LEVEL_HPARAMS["img_mean"])),
        level_table=level_table(aa),
        configs=parsed_configs(aa, aa_params),
        config_hparams=dict(aa_params, img_mean=list(aa_params["img_mean"])),
        op_cases=op_cases(aa, photos, arrays),
        chain_config=CHAIN_CONFIG,
        chains=chains(aa, timm_data, photos, arrays),
        rrc_size=RRC_SIZE,
        eval_cases=eval_transforms(timm_data, photos, arrays),
    )
    manifest["erasing"], manifest["erase_stats"] = erasing(torch, photos, arrays)
    manifest["rrc_cases"], manifest["rrc_stats"] = resized_crops(timm_data, photos, arrays)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "timm_augment.npz")
    np.savez_compressed(path, **arrays)
    manifest["sha256"] = sha256(path)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB, {len(arrays)} arrays)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
