"""Video extraction: VSC2022 layout, resume, bad videos skipped and named, DALI (CPU backend) = PyAV samples."""
import json

import numpy as np
import pytest

pytest.importorskip("av")

from copynce_fast.models.loading import load_model  # noqa: E402
from copynce_fast.video.decode import read_video  # noqa: E402
from copynce_fast.video.decode_dali import dali_video_available  # noqa: E402
from copynce_fast.video.extract import extract_video_features, list_videos  # noqa: E402
from copynce_fast.video.features import (  # noqa: E402
    VideoFeatureWriter,
    load_video_features,
    save_video_features,
)
from copynce_fast.video.synthetic import camera_clip, write_video  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_model("descriptor", random_init=True, arch="vit_tiny", img_size=32, dim=32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for k, seconds in enumerate((3, 2, 4)):
        image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        write_video(root / f"v{k}.mp4", camera_clip(image, 8 * seconds, (32, 48), seed=k), fps=8)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (root / "notes.txt").write_text("not a video extension: ignored")
    return root


def test_layout_resume_and_bad_videos(model, folder, tmp_path):
    videos = list_videos(folder)
    assert [v.id for v in videos] == ["broken", "v0", "v1", "v2"]
    out = tmp_path / "feats.npz"
    first = extract_video_features(model, videos, out, fps=2, num_workers=0, max_videos=2, progress=False)
    assert (first.extracted, len(first.skipped), first.complete) == (1, 1, False)  # broken + v0
    assert first.skipped[0][0].endswith("broken.mp4") and "cannot open" in first.skipped[0][1]
    assert not out.exists() and (tmp_path / "feats.npz.parts" / "index.json").exists()
    second = extract_video_features(model, videos, out, fps=2, num_workers=2, progress=False)
    assert (second.already_done, second.extracted, len(second.skipped), second.complete) == (1, 2, 1, True)
    assert out.is_file() and not (tmp_path / "feats.npz.parts").exists()

    with np.load(out, allow_pickle=False) as z:  # the three arrays the VSC2022 tools read
        assert {"video_ids", "timestamps", "features"} <= set(z.files)
        meta = json.loads(str(z["meta"]))
    assert meta["fps"] == 2.0 and meta["dim"] == 32
    f = load_video_features(out)
    assert [(vid, s.stop - s.start) for vid, s in f.videos()] == [("v0", 6), ("v1", 4), ("v2", 8)]
    np.testing.assert_allclose(f.video("v2").timestamps, np.stack([np.arange(8) / 2, np.arange(1, 9) / 2], 1))
    np.testing.assert_allclose(np.linalg.norm(f.features, axis=1), 1.0, atol=1e-5)

    # the same frames through the model directly give the same descriptors
    frames = read_video(folder / "v1.mp4", 2, size=32).frames
    from copynce_fast.data.batch import normalise_images
    import torch
    with torch.inference_mode():
        direct = model.model(normalise_images(torch.from_numpy(frames).permute(0, 3, 1, 2), "cpu",
                                              torch.float32))["feat"].numpy()
    np.testing.assert_allclose(f.video("v1").features, direct, atol=1e-5)

    with pytest.raises(ValueError, match="fps"):  # resuming with another sampling rate is refused
        extract_video_features(model, videos, out, fps=1, num_workers=0, progress=False)


def test_shard_directory_and_official_files(model, folder, tmp_path):
    out = tmp_path / "shards"
    res = extract_video_features(model, list_videos(folder), out, fps=1, num_workers=0, shard_size=3,
                                 progress=False)
    index = json.loads((out / "index.json").read_text())
    # whole videos per shard, a shard closes at the first video past 3 rows: [v0: 3], [v1: 2 + v2: 4]
    assert res.complete and [sh["videos"] for sh in index["shards"]] == [["v0"], ["v1", "v2"]]
    assert len(load_video_features(out)) == 3 + 2 + 4
    with pytest.raises(ValueError, match="already written"):
        VideoFeatureWriter(out, model=index["meta"]["model"], dim=32, img_size=32).append(
            "v0", np.zeros((1, 2)), np.zeros((1, 32)))
    official = tmp_path / "official.npz"  # the VSC2022 storage: three arrays, one timestamp per row allowed
    np.savez(official, video_ids=np.array(["Q1", "Q1", "Q2"]), timestamps=np.array([0.0, 1.0, 0.0]),
             features=np.eye(3, dtype=np.float32))
    f = load_video_features(official)
    assert f.videos() == [("Q1", slice(0, 2)), ("Q2", slice(2, 3))] and f.timestamps.shape == (3, 2)
    with pytest.raises(ValueError, match="contiguous"):
        save_video_features(tmp_path / "x.npz", ["a", "b", "a"], np.zeros((3, 2)), np.zeros((3, 4)))


@pytest.mark.skipif(not dali_video_available(), reason="NVIDIA DALI not installed")
def test_dali_cpu_backend_samples_the_same_frames(model, tmp_path):
    rng = np.random.default_rng(1)
    for k in range(2):  # MJPEG: a codec DALI's CPU backend decodes
        write_video(tmp_path / "in" / f"m{k}.avi", camera_clip(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8),
                                                                 24, (32, 48), seed=k), fps=8, codec="mjpeg")
    (tmp_path / "in" / "bad.avi").write_bytes(b"junk" * 50)
    videos = list_videos(tmp_path / "in")
    a = extract_video_features(model, videos, tmp_path / "a.npz", fps=2, num_workers=0, loader="torch",
                               progress=False)
    b = extract_video_features(model, videos, tmp_path / "b.npz", fps=2, num_workers=0, loader="dali",
                               progress=False)
    assert (a.extracted, len(a.skipped)) == (b.extracted, len(b.skipped)) == (2, 1)
    fa, fb = load_video_features(tmp_path / "a.npz"), load_video_features(tmp_path / "b.npz")
    np.testing.assert_array_equal(fa.timestamps, fb.timestamps)
    assert (fa.features * fb.features).sum(1).min() > 0.98  # same frames; resizers differ slightly


@pytest.mark.gpu
@pytest.mark.skipif(not dali_video_available(), reason="NVIDIA DALI not installed")
def test_dali_gpu_decodes_h264_like_pyav(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cuda_model = load_model("descriptor", random_init=True, arch="vit_tiny", img_size=32, dim=32, device="cuda")
    rng = np.random.default_rng(2)
    write_video(tmp_path / "in" / "h.mp4", camera_clip(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), 40,
                                                       (32, 48), seed=3), fps=8)
    videos = list_videos(tmp_path / "in")
    a = extract_video_features(cuda_model, videos, tmp_path / "a.npz", fps=2, num_workers=0, loader="torch",
                               progress=False, amp="none")
    b = extract_video_features(cuda_model, videos, tmp_path / "b.npz", fps=2, num_workers=0, loader="dali",
                               progress=False, amp="none")
    assert a.extracted == b.extracted == 1
    fa, fb = load_video_features(tmp_path / "a.npz"), load_video_features(tmp_path / "b.npz")
    np.testing.assert_array_equal(fa.timestamps, fb.timestamps)
    assert (fa.features * fb.features).sum(1).min() > 0.98
