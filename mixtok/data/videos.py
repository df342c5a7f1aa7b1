"""Video sources: `sample_videos` (camera moves across the bundled photographs) and `video_folder`.

Examples are clips uint8 [T, H, W, 3] under the key "image" (the batch key every task reads), T =
`data.num_frames`. `mixtok.data.video_transforms` turns them into float32 [T, S, S, 3].

`sample_videos` (`SampleVideosSource`) needs no download and no decoder: clip i films photo `i % n` of
`sources.SAMPLE_PHOTOS[split]` (the `test` photos are never trained on) with a virtual camera whose path is
drawn from `default_rng([5, split_id, i])`. The motion cycles with i // n over a pan (1 to 2 output pixels per
frame in a random direction), a zoom (in or out, 1 to 3 % per frame, at most 2x over the clip) and a small
rotation (0.5 to 2 degrees per frame, at most 30 degrees over the clip). Frame t shows the camera at time
t * frame_stride, so a larger stride is faster motion, as sampling every stride-th frame of a longer video.
The photo is first resized (PIL, antialiased; only the part the path covers) so that the first frame's window
is S x S pixels, its side in the photo drawn uniformly in [S, 2S] where the photo is large enough for the whole
path (smaller photos are zoomed out less, or upsampled); then each frame is an affine resampling of that photo
(PIL bilinear, not antialiased: a zoom-out of up to 2x aliases a little): the output pixel centre u (relative
to the frame centre) shows photo point c_t + k_t R(theta_t) u (`clip_camera`).

`video_folder` (`VideoFolderSource`): `root/<split>/` holds clips, either directly or in class folders
(`root/<split>/<class>/`, labels the sorted class names of the train split, as imagefolder's): a clip is a
video file (.mp4, .avi, .mov, .mkv, .webm, .m4v, .mpg, .mpeg, decoded with PyAV, the FFmpeg bindings: the
optional extra `pip install "mixtok[video]"`) or a frame folder, a folder of numbered images (.png, .jpg, ...,
ordered by the numbers in their names). A clip reads T frames `start + k * frame_stride` (`clip_indices`); a
video shorter than the span repeats its last frame. Decoding happens in the transform (grain's reader threads
or workers); an unreadable video or frame is `UndecodableVideoError` naming the file, or with
`data.skip_undecodable` the marker that the batchers skip and count (`mixtok.data.decode`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from mixtok.data import decode, imagefolder, sources

SAMPLE_VIDEOS_SPLITS = ("train", "test")
MOTIONS = ("pan", "zoom", "rotate")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class UndecodableVideoError(decode.UndecodableImageError):
    """A video (or a frame of a frame folder) that cannot be read, with skipping turned off."""


# --- sample_videos ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipCamera:
    """The camera of one sample clip, in the pixels of `photo` (the part of the resized photograph it films).

    Frame t's output pixel with centre u (relative to the frame centre, in output pixels) shows the point
    `centres[t] + scales[t] * R(angles[t]) u` of `photo`, continuous coordinates (pixel centres at i + 0.5).
    """

    motion: str
    photo: np.ndarray  # uint8 [H', W', 3]
    centres: np.ndarray  # float [T, 2] as (x, y)
    scales: np.ndarray  # float [T]: photo pixels per output pixel
    angles: np.ndarray  # float [T], radians
    photo_box: tuple[float, ...]  # (left, top, right, bottom) of `photo` in the original photograph


def _window_corners(scale: float, angle: float, size: int) -> np.ndarray:
    """The four corners (x, y) of a frame's window relative to its centre."""
    half = size / 2
    u = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return scale * u @ rotation.T


def sample_clip_camera(
    photo: np.ndarray, motion: str, rng: np.random.Generator, size: int, num_frames: int, stride: int
) -> ClipCamera:
    """Draws the camera path of a clip of `motion` across `photo` (module docstring)."""
    times = stride * np.arange(num_frames, dtype=np.float64)
    duration = max(times[-1], 1.0)
    offsets = np.zeros((num_frames, 2))
    scales = np.ones(num_frames)
    angles = np.zeros(num_frames)
    if motion == "pan":
        speed, direction = rng.uniform(1.0, 2.0), rng.uniform(0.0, 2 * math.pi)
        offsets = speed * times[:, None] * np.array([math.cos(direction), math.sin(direction)])
    elif motion == "zoom":
        rate = min(rng.uniform(0.01, 0.03), math.log(2.0) / duration) * rng.choice([-1.0, 1.0])
        scales = np.exp(rate * times)
    else:
        rate = min(rng.uniform(math.radians(0.5), math.radians(2.0)), math.radians(30.0) / duration)
        angles = rng.choice([-1.0, 1.0]) * rate * times
    corners = np.concatenate([o + _window_corners(s, a, size) for o, s, a in zip(offsets, scales, angles)])
    low, high = corners.min(0), corners.max(0)
    extent = high - low  # (x, y) output pixels the path covers at the first frame's scale
    height, width = photo.shape[:2]
    # The first frame's window side in the photo: uniform in [S, 2S], capped where the path must fit.
    largest = size * min(width / extent[0], height / extent[1])
    side = rng.uniform(min(size, largest), min(2 * size, largest))
    factor = size / side
    resized_size = (math.ceil(width * factor), math.ceil(height * factor))
    start = np.array([rng.uniform(-low[i], resized_size[i] - high[i]) for i in range(2)])
    # Only the part of the resized photo that the path covers (plus the bilinear support) is resized.
    first = np.maximum(np.floor(start + low).astype(int) - 2, 0)
    last = np.minimum(np.ceil(start + high).astype(int) + 2, resized_size)
    scale = np.array([width, height]) / np.array(resized_size)  # photo pixels per resized pixel, per axis
    box = (*(first * scale), *(last * scale))
    region = np.asarray(Image.fromarray(photo).resize(tuple(last - first), Image.BILINEAR, box=box))
    return ClipCamera(motion, region, start - first + offsets, scales, angles, tuple(float(b) for b in box))


def render_clip(camera: ClipCamera, size: int) -> np.ndarray:
    """The frames uint8 [T, size, size, 3] that `camera` films (PIL bilinear affine resampling)."""
    image = Image.fromarray(camera.photo)
    frames = []
    half = size / 2
    for (cx, cy), scale, angle in zip(camera.centres, camera.scales, camera.angles):
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        # PIL maps the output's continuous coordinates (x, y) to the input's (a x + b y + c, d x + e y + f).
        coefficients = (cos, -sin, cx - cos * half + sin * half, sin, cos, cy - sin * half - cos * half)
        frames.append(np.asarray(image.transform((size, size), Image.AFFINE, coefficients, Image.BILINEAR)))
    return np.stack(frames)


class SampleVideosSource(sources._IndexedSource):  # pylint: disable=protected-access
    """Clips uint8 [T, S, S, 3] filmed across the bundled photographs by a moving camera (module docstring)."""

    def __init__(self, split: str, num_examples: int, image_size: int, num_frames: int, frame_stride: int = 1):
        if split not in SAMPLE_VIDEOS_SPLITS:
            raise ValueError(f"Unknown split {split!r} for data source 'sample_videos'; valid splits: 'train', 'test'.")
        self._split_id = SAMPLE_VIDEOS_SPLITS.index(split)
        self._photos = [sources._sample_photo(name) for name in sources.SAMPLE_PHOTOS[split]]  # pylint: disable=protected-access
        self._num_examples, self._size = num_examples, image_size
        self._num_frames, self._stride = num_frames, frame_stride
        smallest = min(min(p.shape[:2]) for p in self._photos)
        if image_size > smallest:
            raise ValueError(
                f"data.image_size={image_size} is larger than the smallest sample photo ({smallest} px); "
                f"use image_size <= {smallest}."
            )

    def clip_camera(self, index: int) -> ClipCamera:
        """The camera of clip `index`: its motion, the resized photo and the per-frame path."""
        index = self._checked_index(index)
        motion = MOTIONS[(index // len(self._photos)) % len(MOTIONS)]
        rng = np.random.default_rng([5, self._split_id, index])
        photo = self._photos[index % len(self._photos)]
        return sample_clip_camera(photo, motion, rng, self._size, self._num_frames, self._stride)

    def __getitem__(self, index: int) -> dict[str, object]:
        camera = self.clip_camera(index)
        return {"image": render_clip(camera, self._size), "label": int(index) % len(self._photos)}

    def __repr__(self) -> str:
        return f"SampleVideosSource(num_examples={self._num_examples}, num_frames={self._num_frames})"


# --- video_folder ----------------------------------------------------------------------------------


def clip_indices(
    available: int, num_frames: int, stride: int, start: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Frame indices of a clip: `first + k * stride` for k < num_frames, clamped to the last frame.

    `first` is uniform over the starts whose clip fits (`start="random"`, drawn from `rng`) or the middle one
    (`"center"`, (available - span) // 2, span = (num_frames - 1) * stride + 1); 0 when the clip is longer.
    """
    span = (num_frames - 1) * stride + 1
    latest = max(available - span, 0)
    first = int(rng.integers(0, latest + 1)) if start == "random" else latest // 2
    return np.minimum(first + stride * np.arange(num_frames), available - 1)


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _frame_files(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file() and e.name.lower().endswith(imagefolder.IMAGE_EXTENSIONS)]
    return [os.path.join(folder, name) for name in sorted(names, key=_natural_key)]


def _clips_in(folder: str) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
    """(clips directly in `folder` as (path, frame paths), the other subfolders)."""
    clips, others = [], []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and entry.name.lower().endswith(VIDEO_EXTENSIONS):
                clips.append((entry.path, ()))
            elif entry.is_dir():
                frames = _frame_files(entry.path)
                if frames:
                    clips.append((entry.path, tuple(frames)))
                else:
                    others.append(entry.name)
    return clips, others


def require_av():
    """Imports PyAV, or raises naming the extra that installs it."""
    try:
        import av  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise ImportError(
            'Reading video files needs PyAV (the FFmpeg bindings): pip install "mixtok[video]" (or pip install av); '
            "frame folders (one folder of numbered images per clip) need nothing more."
        ) from None
    return av


class VideoFolderSource:
    """Clips of `root/split/` (video files or frame folders, optionally in class folders; module docstring).

    Examples are `{"video": path, "frames": frame paths (a frame folder) or (), "label": int}`: the transforms
    read the clip's frames (`read_clip`). `classes` (default: this split's class folders) fixes the labels.
    """

    def __init__(self, root: str, split: str, classes: list[str] | None = None):
        split_dir = imagefolder.check_split_dir(root, split)
        clips, class_names = _clips_in(split_dir)
        if clips and class_names:
            raise ValueError(
                f"Split folder {split_dir!r} holds both clips and folders without frames ({', '.join(class_names[:5])})"
                "; put every clip in a class folder, or none."
            )
        self.split_dir = split_dir
        labels = [0] * len(clips)
        self.classes = list(classes or class_names) if class_names else []
        unknown = sorted(set(class_names) - set(self.classes))
        if unknown:
            raise ValueError(f"Split folder {split_dir!r} has class folders that the class list lacks: {unknown[:10]}.")
        for label, name in enumerate(self.classes):
            class_dir = os.path.join(split_dir, name)
            if os.path.isdir(class_dir):
                found = _clips_in(class_dir)[0]
                clips.extend(found)
                labels.extend([label] * len(found))
        if not clips:
            raise ValueError(
                f"Split folder {split_dir!r} has no clips: expected video files ({', '.join(VIDEO_EXTENSIONS)}) or "
                "folders of numbered images, directly or in class folders."
            )
        if any(not frames for _, frames in clips):
            require_av()
        self._clips, self._labels = clips, labels

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, index: int) -> dict[str, object]:
        path, frames = self._clips[index]
        return {"video": path, "frames": frames, "label": self._labels[index]}

    def __repr__(self) -> str:
        classes = max(len(self.classes), 1)
        return f"VideoFolderSource({self.split_dir!r}, num_examples={len(self)}, num_classes={classes})"


def _decode_video(path: str, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    """Frames `choose(n)` of the video file at `path` (n its frame count) as uint8 [T, H, W, 3], via PyAV."""
    av = require_av()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise UndecodableVideoError(f"Cannot decode video {path}: it has no video stream.")
            stated = container.streams.video[0].frames
            if stated > 0:
                indices = choose(stated)
                wanted, last, frames = set(indices.tolist()), int(indices.max()), {}
                for k, frame in enumerate(container.decode(video=0)):
                    if k in wanted:
                        frames[k] = frame.to_ndarray(format="rgb24")
                    if k >= last:
                        break
                if len(frames) == len(wanted):
                    return np.stack([frames[int(i)] for i in indices])
        # No frame count in the header, or fewer frames than it states: decode all and count.
        with av.open(path) as container:
            every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except UndecodableVideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise UndecodableVideoError(f"Cannot decode video {path}: {type(e).__name__}: {e}.") from e
    if not every:
        raise UndecodableVideoError(f"Cannot decode video {path}: it has no decodable frames.")
    return np.stack([every[int(i)] for i in choose(len(every))])


def _read_frames(folder: str, frames: tuple[str, ...], indices: np.ndarray) -> np.ndarray:
    images = []
    for i in indices:
        path = frames[int(i)]
        try:
            with open(path, "rb") as f:
                images.append(decode.decode_image(f.read(), path))
        except (OSError, decode.UndecodableImageError) as e:
            raise UndecodableVideoError(f"Cannot read frame {path} of the frame folder {folder}: {e}") from e
    if len({image.shape for image in images}) > 1:
        raise UndecodableVideoError(f"Frame folder {folder} mixes frame sizes: {sorted({i.shape for i in images})}.")
    return np.stack(images)


def read_clip(
    element: dict, num_frames: int, stride: int, start: str, rng: np.random.Generator | None, skip_undecodable: bool
) -> dict:
    """A `VideoFolderSource` example's clip {'image': uint8 [T, H, W, 3], 'label'}, or the undecodable marker."""
    path, frames = element["video"], element["frames"]
    choose = lambda n: clip_indices(n, num_frames, stride, start, rng)  # noqa: E731
    try:
        clip = _read_frames(path, frames, choose(len(frames))) if frames else _decode_video(path, choose)
    except UndecodableVideoError as e:
        if not skip_undecodable:
            raise UndecodableVideoError(
                f"{e} Remove or replace it, or set data.skip_undecodable=True to skip unreadable videos "
                "(each one is then logged and counted)."
            ) from e
        return {decode.UNDECODABLE_KEY: path}
    return {"image": clip, "label": element["label"]}
