"""Input throughput of the full ImageNet training transform: mixtok's grain pipeline against timm's loader.

    python benchmarks/input_pipeline.py                       # 256 images, 1 and os.cpu_count() workers
    python benchmarks/input_pipeline.py --images 1024 --workers 1,8 --timm-python /path/to/venv/bin/python

Builds an ImageNet-like image folder of JPEGs (quality 90, sides 500..640 x 375..480, both orientations)
from the photographs bundled with scikit-image (crops of random place, size and aspect, resized), then
times, on the same files and the same number of worker processes:

- mixtok: `create_train_iterator` over the folder (`imagefolder`) and over the same files converted to
  ArrayRecord (`array_record`), with data options train_interpolation='random',
  auto_augment='rand-m9-mstd0.5-inc1', reprob=0.25, remode='pixel' at 224 px: decode, random resized crop
  with random interpolation, flip, RandAugment, normalise, random erasing; grain worker processes
  (`worker_count`), one read thread each;
- timm: `timm.data.create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1',
  re_prob=0.25, re_mode='pixel', interpolation='random')` (what timm's train.py builds for that recipe) on
  images read with PIL, in a torch DataLoader with num_workers = the same count (no torchvision dataset).
  timm's Posterize ops get Pillow < 13's behaviour at 0 bits (black), as Pillow 13 raises there
  (`_patch_timm_posterize`); otherwise timm is run as installed.

Each side runs in its own interpreter (`--timm-python`, default this one when it imports timm and torch,
else timm is left out), reads `--warmup` batches untimed (worker start-up, first decode), then times the
next `--batches`; each measurement is repeated `--rounds` times (the sides taking turns, so a load that
comes and goes on a shared machine slows them alike) and the round of best wall-clock throughput is
reported. Images per CPU-second divides the images by the CPU time (user + system, from /proc) that the
measuring process and all its worker processes spent in the timed window: the cost per image, i.e. the
throughput of one fully used core, which a machine shared with other jobs distorts far less than wall-clock
throughput (the kernel's tick makes it coarse over windows under a CPU-second). The ratio columns are
mixtok's over timm's at the same worker count, measured in the same run. The batches hold float32
[B, 224, 224, 3] (mixtok) / [B, 3, 224, 224] (timm) images; neither side is copied to a device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
RE_PROB = 0.25
SIZE = 224
# Photographs inside scikit-image's wheel (nothing is downloaded); grey ones become RGB.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "coins", "camera", "moon", "brick", "grass", "gravel")


def _photo(name):
    import numpy as np
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def build_image_folder(root: str, count: int, classes: int = 8, seed: int = 0) -> list[tuple[str, int]]:
    """Writes root/train/class_k/img_i.JPEG (quality 90, ImageNet-like sizes); returns (path, label) pairs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [_photo(name) for name in PHOTOS]
    files = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = int(rng.integers(500, 641)), int(rng.integers(375, 481))
        if rng.random() < 0.25:  # some portrait images, as in ImageNet
            width, height = height, width
        ph, pw = photo.shape[:2]
        # The largest crop of the output's aspect that fits, scaled by 0.5..1, at a random place.
        scale = rng.uniform(0.5, 1.0)
        crop_w = int(min(pw, ph * width / height) * scale)
        crop_h = int(crop_w * height / width)
        top, left = int(rng.integers(0, ph - crop_h + 1)), int(rng.integers(0, pw - crop_w + 1))
        crop = Image.fromarray(photo[top : top + crop_h, left : left + crop_w]).resize((width, height), Image.BICUBIC)
        label = i % classes
        folder = os.path.join(root, "train", f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"img_{i}.JPEG")
        crop.save(path, format="JPEG", quality=90)
        files.append((path, label))
    return files


def _descendants(pid: int) -> list[int]:
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(c) for c in f.read().split()]
    except OSError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def _cpu_seconds() -> float | None:
    """User + system CPU time of this process and its live descendants (the loader's workers); None off Linux."""
    if not os.path.exists("/proc/self/stat"):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in [os.getpid(), *_descendants(os.getpid())]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)
    return total


def _measure(batches, batch_size: int, warmup: int, count: int) -> dict[str, float | None]:
    """images/s and images per CPU-second over `count` batches of `batches` after `warmup` untimed ones."""
    for _ in range(warmup):
        next(batches)
    cpu, start = _cpu_seconds(), time.perf_counter()
    for _ in range(count):
        next(batches)
    wall = time.perf_counter() - start
    cpu = None if cpu is None else _cpu_seconds() - cpu
    return {"images_per_s": count * batch_size / wall, "images_per_cpu_s": count * batch_size / cpu if cpu else None}


def run_mixtok(root: str, source: str, workers: int, args) -> dict[str, float | None]:
    from mixtok.data import create_train_iterator

    config = dict(
        name=source,
        root=root,
        train_split="train",
        eval_split="train",
        image_size=SIZE,
        train_interpolation="random",
        auto_augment=AUTO_AUGMENT,
        reprob=RE_PROB,
        remode="pixel",
        read_threads=1,
    )
    iterator = create_train_iterator(
        config, global_batch_size=args.batch_size, seed=0, shard_index=0, shard_count=1, worker_count=workers
    )
    try:
        return _measure(iterator, args.batch_size, args.warmup, args.batches)
    finally:
        close = getattr(iterator, "close", None)
        if close:
            close()


def _patch_timm_posterize() -> None:
    """Keeps timm's Posterize ops running under Pillow 13, which refuses 0 bits.

    timm 1.0.31's PosterizeIncreasing keeps 4 - int(4 M / 10) bits, 0 at magnitude 10, which rand-m9-mstd0.5
    reaches; Pillow 13's ImageOps.posterize raises for bits outside 1..8, where older Pillows returned black.
    The replacement returns black there as they did (as mixtok.data.augment does) and is timm's op otherwise.
    """
    from PIL import ImageOps
    from timm.data import auto_augment

    def posterize(img, bits_to_keep, **_):
        if bits_to_keep >= 8:
            return img
        if bits_to_keep <= 0:
            return img.point(lambda _: 0)
        return ImageOps.posterize(img, bits_to_keep)

    for name, op in list(auto_augment.NAME_TO_OP.items()):
        if op is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = posterize


def run_timm(files_json: str, workers: int, args) -> dict[str, float | None]:
    import timm
    import torch
    from PIL import Image

    _patch_timm_posterize()

    class Files(torch.utils.data.Dataset):
        """The files repeated `repeats` times: one epoch outlasts the measurement, as on ImageNet, so the
        DataLoader's restart at an epoch's end (its prefetch queue drains) is not timed; mixtok's stream is
        repeated before batching and never restarts."""

        def __init__(self, files, transform, repeats):
            self.files, self.transform, self.repeats = files, transform, repeats

        def __len__(self):
            return len(self.files) * self.repeats

        def __getitem__(self, index):
            path, label = self.files[index % len(self.files)]
            with open(path, "rb") as f:
                image = Image.open(f).convert("RGB")
            return self.transform(image), label

    transform = timm.data.create_transform(
        SIZE, is_training=True, auto_augment=AUTO_AUGMENT, re_prob=RE_PROB, re_mode="pixel", interpolation="random"
    )
    with open(files_json) as f:
        files = json.load(f)
    needed = (args.warmup + args.batches + 2 * workers + 1) * args.batch_size  # + the DataLoader's prefetch
    loader = torch.utils.data.DataLoader(
        Files(files, transform, repeats=-(-needed // len(files))),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=True,
        generator=torch.Generator().manual_seed(0),
    )

    def endless():
        while True:
            yield from loader

    return _measure(endless(), args.batch_size, args.warmup, args.batches)


def _timm_versions(python: str) -> str | None:
    code = "import timm, torch, PIL; print(f'timm {timm.__version__}, torch {torch.__version__}, ', end='')"
    code += "; print(f'Pillow {PIL.__version__}')"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _side(args) -> None:
    """Child mode: one measurement, printed as JSON."""
    if args.side == "timm":
        result = run_timm(args.files, args.worker_count, args)
    else:
        result = run_mixtok(args.root, args.side, args.worker_count, args)
    print(json.dumps(result))


def _child(python: str, side: str, workers: int, args, root: str, files_json: str) -> dict | None:
    command = [python, os.path.abspath(__file__), "--side", side, "--worker-count", str(workers)]
    command += ["--root", root, "--files", files_json, "--batch-size", str(args.batch_size)]
    command += ["--warmup", str(args.warmup), "--batches", str(args.batches)]
    env = dict(os.environ)
    if side != "timm":
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        print(f"{side} with {workers} workers failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs in the folder")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=6, help="timed batches")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of every measurement; the best is reported")
    parser.add_argument("--timm-python", default=None, help="interpreter with timm and torch (default: this one)")
    parser.add_argument("--sides", default="imagefolder,array_record,timm")
    parser.add_argument("--keep", default=None, help="build the folder here and keep it (default: a temp dir)")
    # Child mode (internal).
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _side(args)
        return 0

    workers = [int(w) for w in args.workers.split(",") if w]
    sides = [s for s in args.sides.split(",") if s]
    timm_python = args.timm_python or sys.executable
    timm_versions = _timm_versions(timm_python) if "timm" in sides else None
    if "timm" in sides and timm_versions is None:
        print(f"timm or torch not importable by {timm_python}: timm left out (pass --timm-python)", file=sys.stderr)
        sides.remove("timm")
    work = args.keep or tempfile.mkdtemp(prefix="mixtok_input_bench_")
    try:
        folder = os.path.join(work, "folder")
        files = build_image_folder(folder, args.images)
        files_json = os.path.join(work, "files.json")
        with open(files_json, "w") as f:
            json.dump(files, f)
        records = os.path.join(work, "records")
        if "array_record" in sides:
            from mixtok.data.imagefolder_to_array_record import convert

            convert(folder, records, ["train"])
        roots = {"imagefolder": folder, "array_record": records, "timm": folder}
        rounds: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for count in workers:
                for side in sides:
                    python = timm_python if side == "timm" else sys.executable
                    result = _child(python, side, count, args, roots[side], files_json)
                    rounds.setdefault((side, count), []).extend([result] if result else [])
        results = {key: max(rs, key=lambda r: r["images_per_s"]) if rs else None for key, rs in rounds.items()}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    import grain
    import numpy
    import PIL

    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, grain {grain.__version__ if hasattr(grain, '__version__') else '?'}, "
        f"numpy {numpy.__version__}, Pillow {PIL.__version__}" + (f"; {timm_versions}" if timm_versions else "")
    )
    print(
        f"{args.images} JPEGs, batch {args.batch_size}, {args.warmup} warm-up + {args.batches} timed batches, "
        f"best of {args.rounds} rounds"
    )
    print()
    print("| loader | workers | time per batch (ms) | images/s | vs timm | images per CPU-second | vs timm |")
    print("|---|---|---|---|---|---|---|")
    for count in workers:
        for side in sides:
            result = results[side, count]
            if result is None:
                print(f"| {side} | {count} | failed | | | | |")
                continue
            rate, per_cpu = result["images_per_s"], result["images_per_cpu_s"]
            peer = results.get(("timm", count))
            ratio = f"{rate / peer['images_per_s']:.2f}x" if peer else "-"
            cpu_ratio = f"{per_cpu / peer['images_per_cpu_s']:.2f}x" if peer and per_cpu else "-"
            name = "timm DataLoader" if side == "timm" else f"mixtok grain ({side})"
            batch_ms = 1000 * args.batch_size / rate
            per_cpu_text = f"{per_cpu:.1f}" if per_cpu else "-"
            print(f"| {name} | {count} | {batch_ms:.0f} | {rate:.1f} | {ratio} | {per_cpu_text} | {cpu_ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
