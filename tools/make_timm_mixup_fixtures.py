"""Writes the golden timm Mixup / CutMix fixtures: timm's mixed images and soft targets on fixed draws.

tests/train/test_mixup.py feeds the same lambdas and boxes to `mixtok.train.mixup.Mixup.apply` and checks
its images and targets against timm's, and checks mixtok's box formula against timm's `rand_bbox`, so CI
checks parity with timm without installing torch. Needs torch and timm (the `timm` extra), not mixtok or
JAX; run it from the repository root:

    python tools/make_timm_mixup_fixtures.py --out tests/fixtures/timm_mixup

timm (huggingface/pytorch-image-models: timm/data/mixup.py) draws with numpy's global RNG. To fix the draws
without copying timm's code, each case replaces `Mixup._params_per_batch` / `_params_per_elem` (the lambdas
and the mixup-or-cutmix choice) with fixed values and `numpy.random.randint` (the box centre, or the
minmax box's sides and corner) with a queue of fixed values, checked to lie in the range timm asks for;
then timm's own `Mixup.__call__`, `cutmix_bbox_and_lam`, `rand_bbox`, `rand_bbox_minmax` and
`mixup_target` run unchanged, and a wrapper records the boxes and lambdas they produce. Writes

    mixup.npz     images [B, H, W, C] and labels [B] (the input, NHWC; timm ran on its NCHW transpose);
                  <case>/images, <case>/targets (timm's output, NHWC), and <case>/lam [N],
                  <case>/use_cutmix [N], <case>/box [N, 4] (y_low, y_high, x_low, x_high): timm's draws
                  in mixtok's `MixChoices` form (N = 1 in batch mode, B otherwise; (0,0,0,0) where no box);
                  bbox/* timm's rand_bbox on given (H, W, lam, centre), and its corrected lam;
                  minmax/* timm's rand_bbox_minmax on given draws, and the ranges it drew them from
    manifest.json the timm / torch / numpy versions, each case's Mixup arguments and fixed draws, SHA-256
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys

import numpy as np

SEED = 20261207
BATCH, HEIGHT, WIDTH, CHANNELS = 6, 16, 16, 3
NUM_CLASSES = 10
SMOOTHING = 0.1

# Each case: timm Mixup arguments; fixed (lam, use_cutmix) per draw (1 draw in batch mode, B in elem,
# B // 2 in pair); the fixed randint values timm's box functions take, in call order.
CASES = {
    "batch_mixup": dict(args=dict(mixup_alpha=1.0, mode="batch"), lam=[0.3], use_cutmix=[False], randint=[]),
    # centre (14, 2): the 8 x 8 box is clipped to 5 x 6 rows/columns, so correct_lam changes lam.
    "batch_cutmix_correct_lam": dict(
        args=dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", correct_lam=True),
        lam=[0.7],
        use_cutmix=[True],
        randint=[14, 2],
    ),
    "batch_cutmix_uncorrected": dict(
        args=dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", correct_lam=False),
        lam=[0.7],
        use_cutmix=[True],
        randint=[14, 2],
    ),
    "batch_cutmix_inside": dict(
        args=dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch"), lam=[0.55], use_cutmix=[True], randint=[7, 9]
    ),
    # cut_h 5, cut_w 9 from [4, 12); corner (10, 3).
    "batch_cutmix_minmax": dict(
        args=dict(mixup_alpha=0.0, cutmix_minmax=(0.25, 0.75), mode="batch"),
        lam=[0.4],
        use_cutmix=[True],
        randint=[5, 9, 10, 3],
    ),
    "batch_not_applied": dict(
        args=dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch", prob=0.5), lam=[1.0], use_cutmix=[False], randint=[]
    ),
    # lam 1 with use_cutmix True (image 4) is a draw that did not apply: timm leaves the image alone.
    "elem_mixed": dict(
        args=dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", prob=0.8),
        lam=[0.3, 1.0, 0.65, 0.45, 1.0, 0.8],
        use_cutmix=[False, False, True, True, True, False],
        randint=[3, 12, 15, 0],
    ),
    "elem_cutmix_uncorrected": dict(
        args=dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", correct_lam=False),
        lam=[0.2, 0.9, 0.5, 0.6, 0.35, 0.75],
        use_cutmix=[True] * 6,
        randint=[0, 0, 8, 8, 15, 15, 4, 11, 11, 4, 6, 1],
    ),
    "elem_cutmix_minmax": dict(
        args=dict(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.8), mode="elem"),
        lam=[0.5, 0.5, 1.0, 0.5, 0.5, 0.5],
        use_cutmix=[True] * 6,
        randint=[4, 11, 0, 4, 10, 10, 6, 0, 8, 8, 8, 8, 11, 5, 4, 11, 7, 7, 0, 0],
    ),
    "pair_mixed": dict(
        args=dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair"),
        lam=[0.25, 0.6, 1.0],
        use_cutmix=[False, True, False],
        randint=[1, 13],
    ),
}

# timm's rand_bbox on (H, W, lam, centre y, centre x): clipped and unclipped, square and not.
BBOX_CASES = [
    (16, 16, 0.3, 8, 8),
    (16, 16, 0.55, 0, 0),
    (16, 16, 0.9, 15, 15),
    (16, 16, 0.05, 3, 12),
    (16, 16, 0.999, 5, 5),
    (16, 16, 0.0, 8, 8),
    (12, 20, 0.3, 11, 0),
    (12, 20, 0.6, 6, 10),
    (12, 20, 0.15, 2, 19),
    (7, 9, 0.42, 3, 4),
]
# timm's rand_bbox_minmax on (H, W, lo, hi, cut_h, cut_w, y_low, x_low).
MINMAX_CASES = [(16, 16, 0.25, 0.75, 5, 9, 10, 3), (12, 20, 0.2, 0.8, 2, 15, 10, 0), (7, 9, 0.3, 0.9, 2, 7, 5, 2)]


@contextlib.contextmanager
def fixed_randint(values, ranges=None):
    """numpy.random.randint returns `values` in order, each checked to lie in the [low, high) asked for."""
    queue = list(values)
    original = np.random.randint

    def randint(low, high=None, size=None, dtype=int):
        if high is None:
            low, high = 0, low
        if size is not None:
            raise AssertionError("the fixtures fix scalar draws only")
        value = queue.pop(0)
        if not int(low) <= value < int(high):
            raise AssertionError(f"fixed randint {value} is not in timm's range [{low}, {high})")
        if ranges is not None:
            ranges.append((int(low), int(high)))
        return value

    np.random.randint = randint
    try:
        yield
    finally:
        np.random.randint = original
    if queue:
        raise AssertionError(f"fixed randint values left over: {queue}")


def run_case(case, images_nhwc, labels):
    """timm's Mixup on the case's fixed draws -> (images NHWC, targets, lam [N], use_cutmix [N], box [N, 4])."""
    import timm.data.mixup as timm_mixup
    import torch

    mixer = timm_mixup.Mixup(num_classes=NUM_CLASSES, label_smoothing=SMOOTHING, **case["args"])
    lam_fixed = np.asarray(case["lam"], np.float32)
    cut_fixed = np.asarray(case["use_cutmix"], bool)
    mode = case["args"]["mode"]
    if mode == "batch":
        mixer._params_per_batch = lambda: (float(lam_fixed[0]), bool(cut_fixed[0]))
    else:
        mixer._params_per_elem = lambda n: (lam_fixed.copy(), cut_fixed.copy())
    boxes, returned = [], {}
    original_bbox = timm_mixup.cutmix_bbox_and_lam

    def recording_bbox(*args, **kwargs):
        box, lam = original_bbox(*args, **kwargs)
        boxes.append([int(v) for v in box])
        return box, lam

    for name in ("_mix_batch", "_mix_elem", "_mix_pair"):
        method = getattr(mixer, name)

        def recording(x, method=method, name=name):
            returned[name] = method(x)
            return returned[name]

        setattr(mixer, name, recording)
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).clone()
    timm_mixup.cutmix_bbox_and_lam = recording_bbox
    try:
        with fixed_randint(case["randint"]):
            mixed, targets = mixer(x, torch.from_numpy(labels))
    finally:
        timm_mixup.cutmix_bbox_and_lam = original_bbox
    lam_out = returned[f"_mix_{mode}"]
    lam_out = np.asarray([lam_out], np.float32) if mode == "batch" else lam_out.numpy().reshape(-1).astype(np.float32)
    # In mixtok's MixChoices form: a draw that did not apply (lam 1) is no cutmix and has no box.
    draws = cut_fixed & (lam_fixed != 1.0)
    if mode == "pair":
        draws = np.concatenate([draws, draws[::-1]])
    box = np.zeros((len(lam_out), 4), np.int32)
    first = np.flatnonzero(draws)[: len(boxes)]
    if boxes:
        box[first] = boxes
        if mode == "pair":
            box[::-1][first] = boxes
    return dict(
        images=mixed.numpy().transpose(0, 2, 3, 1).copy(),
        targets=targets.numpy().astype(np.float32),
        lam=lam_out,
        use_cutmix=draws,
        box=box,
    )


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "timm_mixup"), help="output folder")
    args = parser.parse_args(argv)
    try:
        import timm
        import timm.data.mixup as timm_mixup
        import torch
    except ImportError as e:
        print(f"error: this tool needs torch and timm (pip install -e '.[timm]'): {e}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    images = rng.normal(size=(BATCH, HEIGHT, WIDTH, CHANNELS)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=BATCH).astype(np.int64)
    arrays = {"images": images, "labels": labels}
    for name, case in CASES.items():
        for key, value in run_case(case, images, labels).items():
            arrays[f"{name}/{key}"] = value
    bbox_boxes, bbox_lams = [], []
    for height, width, lam, cy, cx in BBOX_CASES:
        lam = float(np.float32(lam))  # the float32 value mixtok computes with, exactly
        with fixed_randint([cy, cx]):
            bbox_boxes.append([int(v) for v in timm_mixup.rand_bbox((height, width), lam)])
        with fixed_randint([cy, cx]):
            _, corrected = timm_mixup.cutmix_bbox_and_lam((height, width), lam, correct_lam=True)
        bbox_lams.append(corrected)
    arrays["bbox/cases"] = np.asarray(BBOX_CASES, np.float64)
    arrays["bbox/box"] = np.asarray(bbox_boxes, np.int32)
    arrays["bbox/corrected_lam"] = np.asarray(bbox_lams, np.float64)
    minmax_boxes, minmax_ranges = [], []
    for height, width, low, high, cut_h, cut_w, y_low, x_low in MINMAX_CASES:
        ranges = []
        with fixed_randint([cut_h, cut_w, y_low, x_low], ranges):
            minmax_boxes.append([int(v) for v in timm_mixup.rand_bbox_minmax((height, width), (low, high))])
        minmax_ranges.append(ranges[:2])  # the side ranges; the corner's depends on the side drawn
    arrays["minmax/cases"] = np.asarray(MINMAX_CASES, np.float64)
    arrays["minmax/box"] = np.asarray(minmax_boxes, np.int32)
    arrays["minmax/side_ranges"] = np.asarray(minmax_ranges, np.int32)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "mixup.npz")
    np.savez_compressed(path, **arrays)
    manifest = dict(
        made_by="python tools/make_timm_mixup_fixtures.py --out " + args.out,
        timm=timm.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        seed=SEED,
        num_classes=NUM_CLASSES,
        label_smoothing=SMOOTHING,
        layout="images NHWC (timm ran on the NCHW transpose)",
        cases={name: dict(case, args={**case["args"]}) for name, case in CASES.items()},
        sha256={"mixup.npz": sha256(path)},
    )
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
