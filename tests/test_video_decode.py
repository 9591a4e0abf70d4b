"""Video decoding and sampling: which frame each sample shows, timestamps, scene cuts, bad files."""
import numpy as np
import pytest

pytest.importorskip("av")

from copynce_fast.data.synthetic import synthetic_image
from copynce_fast.video.decode import (
    BadVideo,
    frame_intervals,
    iter_frames,
    probe_times,
    read_video,
    sample_plan,
)
from copynce_fast.video.synthetic import camera_clip, write_video


def numbered_frames(n, hw=(32, 48)):
    """Frame i is flat grey 8 + 8 i: its number survives lossy coding."""
    return np.stack([np.full(hw + (3,), 8 + 8 * i, np.uint8) for i in range(n)])


def frame_number(frame):
    return int(round((frame.astype(float).mean() - 8) / 8))


def test_sample_plan_shows_the_frame_at_each_interval_middle():
    times = np.arange(24) / 8.0  # 3 s at 8 fps
    idx, ts = sample_plan(times, 3.0, 1.0)
    assert idx.tolist() == [3, 11, 19]  # frames at 0.375, 1.375, 2.375 s: the last before 0.5, 1.5, 2.5 s
    np.testing.assert_array_equal(ts, [[0, 1], [1, 2], [2, 3]])
    idx, ts = sample_plan(times, 3.0, 2.0)
    assert idx.tolist() == [1, 5, 9, 13, 17, 21]  # a frame exactly on a middle (0.25 s) is not yet shown
    assert sample_plan(times[:19], 2.375, 1.0)[0].tolist() == [3, 11]  # round(2.375) = 2 samples
    assert len(sample_plan(times[:2], 0.25, 1.0)[0]) == 1  # at least one sample
    with pytest.raises(ValueError, match="fps"):
        sample_plan(times, 3.0, 0)


def test_frame_intervals_orders_and_chains():
    order, ts = frame_intervals(np.array([1.0, 0.0, 1.25, 2.0]), 1.0)
    assert order.tolist() == [1, 0, 2, 3]
    np.testing.assert_array_equal(ts, [[0, 1], [1, 1.25], [1.25, 2], [2, 3]])


@pytest.mark.parametrize("codec,ext", [("libx264", ".mp4"), ("mjpeg", ".avi")])
def test_decoded_samples_are_the_planned_frames(tmp_path, codec, ext):
    path = write_video(tmp_path / f"v{ext}", numbered_frames(30), fps=10, codec=codec)
    vt = probe_times(path)
    assert len(vt.times) == 30 and vt.duration == pytest.approx(3.0)
    video = read_video(path, fps=2.0)
    assert [frame_number(f) for f in video.frames] == [2, 7, 12, 17, 22, 27]  # last frame before 0.25, 0.75, ...
    np.testing.assert_allclose(video.timestamps[:, 0], np.arange(6) / 2)
    small = read_video(path, fps=0.5, size=16)
    assert small.frames.shape == (2, 16, 16, 3) and [frame_number(f) for f in small.frames] == [9, 29]


def test_scene_cuts_add_samples(tmp_path):
    # three slow shots of different procedural images: cuts at 1.25 s and 2.5 s
    shots = [camera_clip(synthetic_image(s, (256, 384)), 40, (32, 48), seed=s)[:10] for s in range(3)]
    path = write_video(tmp_path / "cuts.mp4", np.concatenate(shots), fps=8)
    plain = read_video(path, fps=1.0)
    np.testing.assert_allclose(plain.timestamps, [[0, 1], [1, 2], [2, 3], [3, 4]])  # round(3.75) = 4 samples
    cut = read_video(path, fps=1.0, scene_threshold=0.15)
    np.testing.assert_allclose(cut.timestamps, [[0, 1], [1, 1.25], [1.25, 2], [2, 2.5], [2.5, 3], [3, 4]])


def test_bad_videos_raise_bad_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(BadVideo, match="cannot open"):
        list(iter_frames(junk))
    with pytest.raises(BadVideo, match="no such file"):
        probe_times(tmp_path / "missing.mp4")
    good = write_video(tmp_path / "good.mp4", numbered_frames(30), fps=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])  # truncated: index at the end is lost
    with pytest.raises(BadVideo):
        list(iter_frames(cut))
    with pytest.raises(ValueError, match="size"):
        list(iter_frames(good, size=1))



def ffmpeg_fps_filter(path, fps, number):
    """``number(frame)`` of each frame libavfilter's fps filter outputs (the filter of the VSC2022 baseline's
    ffmpeg call), run through PyAV's filter graph."""
    import av

    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        src, sink = graph.add_buffer(template=stream), graph.add("buffersink")
        fps_filter = graph.add("fps", f"fps={fps}")
        src.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    out.append(number(graph.pull().to_ndarray(format="rgb24")))
                except (av.BlockingIOError, av.EOFError):
                    return

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return out


@pytest.mark.parametrize("source_fps,n,fps", [(10, 30, 2.0), (30, 75, 1.0), (25, 61, 1.0), (8, 20, 3.0),
                                              (24, 50, 0.7)])
def test_samples_are_the_frames_of_ffmpegs_fps_filter(tmp_path, source_fps, n, fps):
    frames = np.stack([np.full((32, 48, 3), 8 + 3 * i, np.uint8) for i in range(n)])  # frame i: grey 8 + 3 i

    def number(f):
        return round((f.astype(float).mean() - 8) / 3)

    path = write_video(tmp_path / "v.mp4", frames, fps=source_fps)
    assert [number(f) for f in read_video(path, fps).frames] == ffmpeg_fps_filter(path, fps, number)
