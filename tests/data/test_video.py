"""Video data: sample_videos' camera clips, video_folder (frame folders and PyAV files), joint image-video steps."""

import fractions
import json
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mixtok.data import (
    UndecodableImageError,
    create_eval_iterator,
    create_train_iterator,
    data_options,
    dataset_info,
    mixing,
    videos,
)
from mixtok.data.sources import SAMPLE_PHOTOS, _sample_photo

SIZE, FRAMES = 16, 5


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def _sample_config(**overrides):
    return dict(name="sample_videos", num_frames=FRAMES, image_size=SIZE, num_examples=24, num_eval_examples=6,
                **overrides)  # fmt: skip


def _pixels(batch_image, options):
    """Undoes the normalisation: float32 [..., 3] -> the uint8 values it came from (rounded)."""
    return np.rint((batch_image * np.asarray(options.std) + np.asarray(options.mean)) * 255).astype(np.int64)


# --- sample_videos ---------------------------------------------------------------------------------


def test_sample_clips_and_batches_have_the_documented_shapes_and_types():
    source = videos.SampleVideosSource("train", 10, 32, 17)
    clip = source[3]["image"]
    assert clip.shape == (17, 32, 32, 3) and clip.dtype == np.uint8
    config = _sample_config()
    batch = next(create_train_iterator(config, global_batch_size=4, seed=0, shard_index=0, shard_count=1))
    assert batch["image"].shape == (4, FRAMES, SIZE, SIZE, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    eval_batches = list(create_eval_iterator(config, global_batch_size=4, shard_index=0, shard_count=1))
    assert [b["image"].shape for b in eval_batches] == [(4, FRAMES, SIZE, SIZE, 3)] * 2
    np.testing.assert_array_equal(np.concatenate([b["mask"] for b in eval_batches]), [1] * 6 + [0] * 2)
    info = dataset_info(config)
    assert (info.num_frames, info.num_train, info.num_eval, info.num_classes) == (FRAMES, 24, 6, 14)


def test_sample_clips_are_a_function_of_their_index_and_eval_films_only_held_out_photos():
    a, b = videos.SampleVideosSource("train", 30, 24, 6), videos.SampleVideosSource("train", 30, 24, 6)
    for i in (0, 13, 29):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    assert not np.array_equal(a[0]["image"], a[14]["image"])  # same photo, another camera
    assert not set(SAMPLE_PHOTOS["train"]) & set(SAMPLE_PHOTOS["test"])
    test = videos.SampleVideosSource("test", 6, 24, 6)
    for i in range(6):
        camera = test.clip_camera(i)
        # What the camera films is (a resized part of) held-out photo i % 3, recomputed here from the original.
        original = Image.fromarray(_sample_photo(SAMPLE_PHOTOS["test"][i % 3]))
        height, width = camera.photo.shape[:2]
        resized = original.resize((width, height), Image.BILINEAR, box=camera.photo_box)
        np.testing.assert_array_equal(camera.photo, np.asarray(resized))
        assert camera.photo_box[2] <= original.width and camera.photo_box[3] <= original.height
        assert test[i]["label"] == i % 3


@pytest.mark.parametrize("index", [1, 15, 29])  # a pan, a zoom, a rotation (photos cycle every 14)
def test_each_frame_is_the_cameras_window_resampled_from_the_photo(index):
    """An independent rendering (scipy's bilinear map_coordinates at the documented camera formula)."""
    source = videos.SampleVideosSource("train", 30, 24, 6, frame_stride=2)
    camera = source.clip_camera(index)
    assert camera.motion == videos.MOTIONS[index // 14]
    clip = source[index]["image"]
    u = np.arange(24) + 0.5 - 12  # output pixel centres relative to the frame centre
    ux, uy = np.meshgrid(u, u)
    for t, ((cx, cy), scale, angle) in enumerate(zip(camera.centres, camera.scales, camera.angles)):
        px = cx + scale * (math.cos(angle) * ux - math.sin(angle) * uy)
        py = cy + scale * (math.sin(angle) * ux + math.cos(angle) * uy)
        photo = camera.photo.astype(float)
        want = np.stack([ndimage.map_coordinates(photo[..., c], [py - 0.5, px - 0.5], order=1) for c in range(3)], -1)
        assert np.abs(clip[t].astype(float) - want).max() <= 2.0


def test_the_motion_is_real_and_a_pan_shifts_each_frame_by_its_velocity():
    source = videos.SampleVideosSource("train", 42, 32, 8)
    for index in range(0, 42, 3):
        clip = source[index]["image"].astype(np.float64)
        steps = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
        assert steps.min() > 0.05, (index, source.clip_camera(index).motion, steps)
    for index in (0, 3, 7):  # pans of astronaut, china, page
        camera = source.clip_camera(index)
        assert camera.motion == "pan"
        clip = source[index]["image"].astype(np.float64)
        for t in range(7):
            vx, vy = camera.centres[t + 1] - camera.centres[t]  # output pixels (the scale is 1 in a pan)
            assert 1.0 <= math.hypot(vx, vy) <= 2.0
            # frame t+1 at (y, x) shows what frame t shows at (y + vy, x + vx).
            shifted = np.stack([ndimage.shift(clip[t, ..., c], (-vy, -vx), order=1) for c in range(3)], axis=-1)
            inner = (slice(3, -3), slice(3, -3))
            moved = np.abs(clip[t + 1][inner] - shifted[inner]).mean()
            still = np.abs(clip[t + 1][inner] - clip[t][inner]).mean()
            assert moved < 0.35 * still, (index, t, moved, still)


# --- video_folder ----------------------------------------------------------------------------------


def _frame(value: int, height: int = 12, width: int = 12) -> np.ndarray:
    """A frame that says which it is: every pixel `value` except a darker left band (texture for the crop)."""
    frame = np.full((height, width, 3), value, np.uint8)
    frame[:, : width // 4] = value // 2
    return frame


def _write_frame_folder(folder: str, values: list[int]) -> None:
    os.makedirs(folder)
    for k, value in enumerate(values):  # unpadded numbers: frame_10 must come after frame_9
        Image.fromarray(_frame(value)).save(os.path.join(folder, f"frame_{k + 1}.png"))


def _frame_tree(root, clips: int = 7, length: int = 12, split: str = "train") -> None:
    """Clip c's frame k has value 10 * c + k + 1 (at most 80 + 12 < 255)."""
    for c in range(clips):
        _write_frame_folder(os.path.join(root, split, f"clip_{c}"), [10 * c + k + 1 for k in range(length)])


def _folder_config(root, **overrides):
    return dict(name="video_folder", root=str(root), num_frames=4, frame_stride=3, image_size=12, crop_pct=1.0,
                eval_split="train", read_threads=0, **overrides)  # fmt: skip


def test_clip_indices_against_a_direct_computation():
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    for available in (20, 40, 10, 3):
        span = (4 - 1) * 3 + 1
        latest = max(available - span, 0)
        first = int(again.integers(0, latest + 1))
        want = np.minimum(first + 3 * np.arange(4), available - 1)
        np.testing.assert_array_equal(videos.clip_indices(available, 4, 3, "random", rng), want)
        centre = latest // 2
        np.testing.assert_array_equal(
            videos.clip_indices(available, 4, 3, "center"), np.minimum(centre + 3 * np.arange(4), available - 1)
        )
    np.testing.assert_array_equal(videos.clip_indices(3, 4, 3, "center"), [0, 2, 2, 2])  # short: last frame repeats


def test_frame_folder_clips_are_the_centre_clip_in_eval_and_strided_clips_in_training(tmp_path):
    _frame_tree(tmp_path)
    config = _folder_config(tmp_path, hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    options = data_options(config)
    batches = list(create_eval_iterator(config, global_batch_size=4, shard_index=0, shard_count=1))
    clips = np.concatenate([b["image"] for b in batches])[:7]
    values = _pixels(clips, options)[..., 6, 6, 0]  # [clip, frame]
    # 12 frames, span 10: the centre start is 1, frames 1, 4, 7, 10 (0-based), values 10 c + k + 1.
    np.testing.assert_array_equal(values, 10 * np.arange(7)[:, None] + np.array([2, 5, 8, 11]))
    train = _take(create_train_iterator(config, global_batch_size=4, seed=0, shard_index=0, shard_count=1), 6)
    starts = set()
    for batch in train:
        values = _pixels(batch["image"], options)[..., 6, 6, 0]
        for row in values:
            first = row[0] % 10 - 1
            np.testing.assert_array_equal(row, row[0] + 3 * np.arange(4))  # stride 3 within one clip
            assert 0 <= first <= 2
            starts.add(int(first))
    assert starts == {0, 1, 2}  # random starts cover every start whose clip fits


def test_clips_are_sharded_disjoint_and_complete_over_processes(tmp_path):
    _frame_tree(tmp_path)
    config = _folder_config(tmp_path)
    options = data_options(config)
    seen = []
    for index in range(3):
        for batch in create_eval_iterator(config, global_batch_size=6, shard_index=index, shard_count=3):
            real = batch["mask"] > 0
            seen.extend((_pixels(batch["image"][real], options)[:, 0, 6, 6, 0] // 10).tolist())
    assert sorted(seen) == list(range(7))
    config = _sample_config()
    alone = _take(create_train_iterator(config, global_batch_size=4, seed=1, shard_index=0, shard_count=1), 8)
    shards = [_take(create_train_iterator(config, global_batch_size=4, seed=1, shard_index=i, shard_count=2), 8)
              for i in range(2)]  # fmt: skip
    joined = [{k: np.concatenate([s[t][k] for s in shards]) for k in ("image", "label")} for t in range(8)]
    _assert_same_batches(joined, alone)


def test_restored_iterators_give_the_same_next_batches(tmp_path):
    _frame_tree(tmp_path)
    mixed = _sample_config(image_ratio=0.4, image_source=dict(name="sample_photos", num_examples=20))
    for config in (_folder_config(tmp_path), _sample_config(), mixed):
        iterator = create_train_iterator(config, global_batch_size=2, seed=4, shard_index=0, shard_count=1)
        _take(iterator, 5)
        state = json.loads(json.dumps(iterator.get_state()))  # as grain's orbax handler writes and reads it
        expected = _take(iterator, 4)
        resumed = create_train_iterator(config, global_batch_size=2, seed=4, shard_index=0, shard_count=1)
        resumed.set_state(state)
        _assert_same_batches(_take(resumed, 4), expected)


def test_an_unreadable_frame_is_one_error_naming_it_or_skipped_and_counted(tmp_path):
    _frame_tree(tmp_path, clips=4)
    bad = os.path.join(tmp_path, "train", "clip_2", "frame_8.png")
    with open(bad, "wb") as f:
        f.write(b"not a png")
    config = _folder_config(tmp_path, clip_start="center")
    with pytest.raises(UndecodableImageError, match="frame_8.png.*clip_2.*skip_undecodable=True"):
        _take(create_train_iterator(config, global_batch_size=4, seed=0, shard_index=0, shard_count=1), 1)
    config = _folder_config(tmp_path, clip_start="center", skip_undecodable=True)
    iterator = create_train_iterator(config, global_batch_size=3, seed=0, shard_index=0, shard_count=1)
    batches = _take(iterator, 3)  # 9 clips, from epochs of 4 clips of which one is unreadable
    options = data_options(config)
    assert all(b["image"].shape == (3, 4, 12, 12, 3) for b in batches)
    assert 2 not in {int(v) for b in batches for v in _pixels(b["image"], options)[:, 0, 6, 6, 0] // 10}
    read = iterator.get_state()["next_index"]  # stream positions read: the 9 clips and the skipped ones
    assert read in (11, 12) and iterator.num_skipped_undecodable == read - 9


def _has_h264() -> bool:
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


# PyAV is in the `test` extra; without it (or an FFmpeg without libx264) only the two video-file tests skip.
requires_av = pytest.mark.skipif(not _has_h264(), reason="PyAV with libx264 (the 'video' extra) is not installed")


def _write_mp4(path: str, frames: np.ndarray) -> None:
    """H.264 lossless (qp 0, 4:4:4 chroma) so that the round trip is exact up to the RGB <-> YUV conversion."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        stream.options = {"qp": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@requires_av
def test_an_mp4_written_with_pyav_round_trips_through_the_eval_iterator(tmp_path):
    rng = np.random.default_rng(0)
    originals = []
    for c in range(2):
        frames = np.stack([_frame(10 * c + 20 * k + 5) for k in range(12)])
        frames = np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)
        os.makedirs(tmp_path / "train" / "walking", exist_ok=True)
        _write_mp4(str(tmp_path / "train" / "walking" / f"v{c}.mp4"), frames)
        originals.append(frames)
    config = _folder_config(tmp_path)
    options = data_options(config)
    (batch,) = create_eval_iterator(config, global_batch_size=2, shard_index=0, shard_count=1)
    decoded = _pixels(batch["image"], options)
    want = np.stack([o[[1, 4, 7, 10]] for o in originals])  # the centre clip, as for frame folders
    assert decoded.shape == want.shape
    assert np.abs(decoded - want.astype(np.int64)).max() <= 2


@requires_av
def test_an_unreadable_video_is_one_error_naming_it_or_skipped_and_counted(tmp_path):
    os.makedirs(tmp_path / "train")
    for c in range(3):
        _write_mp4(str(tmp_path / "train" / f"v{c}.mp4"), np.stack([_frame(40 * c + k) for k in range(10)]))
    bad = tmp_path / "train" / "v1.mp4"
    bad.write_bytes(b"truncated" * 20)
    with pytest.raises(UndecodableImageError, match="v1.mp4.*skip_undecodable=True"):
        list(create_eval_iterator(_folder_config(tmp_path), global_batch_size=3, shard_index=0, shard_count=1))
    batches = create_eval_iterator(_folder_config(tmp_path, skip_undecodable=True), global_batch_size=3,
                                   shard_index=0, shard_count=1)  # fmt: skip
    (batch,) = list(batches)
    np.testing.assert_array_equal(batch["mask"], [1, 0, 1])
    assert batches.num_skipped_undecodable == 1


# --- joint image-video steps and options -----------------------------------------------------------


def test_the_image_ratio_is_honoured_exactly_and_evenly_over_many_steps():
    for ratio in (0.0, 0.1, 0.29, 0.5, 0.75, 1.0):
        kinds = np.array([mixing.image_step(t, ratio) for t in range(1000)])
        exact = fractions.Fraction(str(ratio))
        for n in (7, 100, 1000):
            assert kinds[:n].sum() == math.floor(n * exact)  # exactly, at every prefix
    assert [mixing.image_step(t, 0.5) for t in range(4)] == [False, True, False, True]  # the official alternation
    config = _sample_config(image_ratio=0.25, image_source=dict(name="sample_photos"), image_batch_size=6)
    iterator = create_train_iterator(config, global_batch_size=2, seed=0, shard_index=0, shard_count=1)
    shapes = [next(iterator)["image"].shape for _ in range(12)]
    image_shape, video_shape = (6, 1, SIZE, SIZE, 3), (2, FRAMES, SIZE, SIZE, 3)
    assert shapes == [image_shape if mixing.image_step(t, 0.25) else video_shape for t in range(12)]
    assert shapes.count(image_shape) == 3
    (image_eval, *_) = create_eval_iterator(config, global_batch_size=2, shard_index=0, shard_count=1, part="image")
    assert image_eval["image"].shape == (2, 1, SIZE, SIZE, 3)


def test_image_steps_are_the_image_sources_batches_as_one_frame_clips():
    image_config = dict(name="sample_photos", image_size=SIZE, num_examples=20)
    config = _sample_config(image_ratio=0.5, image_source=image_config)
    mixed = _take(create_train_iterator(config, global_batch_size=2, seed=3, shard_index=0, shard_count=1), 6)
    images = _take(create_train_iterator(image_config, global_batch_size=2, seed=3, shard_index=0, shard_count=1), 3)
    _assert_same_batches([{**b, "image": b["image"][:, 0]} for b in mixed[1::2]], images)


def test_video_options_are_checked_with_one_clear_line():
    with pytest.raises(ValueError, match="data.num_frames applies to the video sources"):
        data_options(dict(name="digits", num_frames=8))
    with pytest.raises(ValueError, match="image_ratio=0.5 needs data.image_source"):
        data_options(dict(name="sample_videos", image_ratio=0.5))
    with pytest.raises(ValueError, match="image_ratio.*in \\[0, 1\\], got 2"):
        data_options(dict(name="sample_videos", image_ratio=2))
    photos64 = dict(name="sample_photos", image_size=64)
    with pytest.raises(ValueError, match="image_source.image_size=64 differs from the video's data.image_size=32"):
        data_options(dict(name="sample_videos", image_ratio=0.5, image_source=photos64))
    with pytest.raises(ValueError, match="clip_start must be one of random, center, got 'middle'"):
        data_options(dict(name="video_folder", root="/x", clip_start="middle"))
    with pytest.raises(ValueError, match="auto_augment is an image augmentation"):
        data_options(dict(name="sample_videos", auto_augment="rand-m9-mstd0.5"))
    assert data_options(dict(name="sample_videos")).num_frames == 17


def test_video_files_without_pyav_name_the_extra_that_installs_it(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "train")
    (tmp_path / "train" / "v0.mp4").write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "mixtok\[video\]"'):
        videos.VideoFolderSource(str(tmp_path), "train")
