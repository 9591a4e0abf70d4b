"""DALI video decoding for extraction: the same samples as the PyAV path, decoded (and resized) by DALI.

Optional (``nvidia-dali-*``). GPU (``device_id`` an int): ``decoders.video`` on the "mixed" backend (NVDEC:
H.264, HEVC, AV1, VP8/9, MPEG-4, MJPEG) and the S×S resize on the GPU, frames handed to torch on that GPU.
CPU (``device_id=None``): DALI's CPU backend only decodes VP8, VP9 and MJPEG -- it is here for tests.

Which frames: PyAV demuxes the file first (:func:`copynce_fast.video.decode.probe_times`, no decoding) and
:func:`~copynce_fast.video.decode.sample_plan` picks the frame indices, so both paths sample the same frames;
DALI then decodes exactly those (``frames=`` argument), ``chunk_frames`` at a time. Scene cuts need every
frame decoded on the host: they are a PyAV-only option. Pixels differ slightly from the PyAV path (DALI's
cubic resize of its own YUV->RGB conversion vs libswscale's bicubic).

A file DALI cannot decode invalidates the pipeline (DALI's behaviour): the video is reported bad and the
pipeline rebuilt.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from copynce_fast.video.decode import BadVideo, probe_times, sample_plan

__all__ = ["dali_video_available", "DaliVideoChunks"]


def dali_video_available() -> bool:
    """True when ``nvidia.dali`` is importable."""
    return importlib.util.find_spec("nvidia.dali") is not None


class DaliVideoChunks:
    """Iterate ``(kind, index, starts, frames, reason)`` over ``paths`` like the PyAV extraction dataset:
    ``("chunk", i, starts (n,) float64, uint8 [n, 3, S, S], None)`` for each chunk of video ``i``, then
    ``("end", i, None, None, None)``; ``("bad", i, None, None, reason)`` for a video that cannot be decoded.

    Args:
        paths: video files.
        fps: samples per second; size: output side S.
        device_id: CUDA device ("mixed" decoding), or None for DALI's CPU backend.
        chunk_frames: frames decoded per pipeline run.
        num_threads: DALI CPU threads.
    """

    def __init__(self, paths: Sequence[str | Path], fps: float, size: int, device_id: int | None,
                 chunk_frames: int = 64, num_threads: int = 2):
        if not dali_video_available():
            raise ValueError("--loader dali: NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
        self.paths = [Path(p) for p in paths]
        self.fps, self.size, self.device_id = fps, int(size), device_id
        self.chunk_frames = int(chunk_frames)
        self.num_threads = max(1, int(num_threads))
        self.rebuilds = 0

    def _pipeline(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.device_id is not None

        @pipeline_def(batch_size=1, num_threads=self.num_threads, device_id=self.device_id, prefetch_queue_depth=1,
                      exec_dynamic=True)
        def decode_resize():
            data = fn.external_source(name="video", dtype=types.UINT8, ndim=1)
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
            video = fn.decoders.video(data, device="mixed" if gpu else "cpu", frames=frames)
            video = fn.resize(video, size=(self.size, self.size), interp_type=types.INTERP_CUBIC, antialias=True)
            return fn.transpose(video, perm=[0, 3, 1, 2])  # F, C, H, W

        pipe = decode_resize()
        pipe.build()
        return pipe

    def _to_torch(self, out) -> torch.Tensor:
        t = out.as_tensor()  # [1, F, 3, S, S]
        if self.device_id is None:
            return torch.from_numpy(np.array(t))[0]
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dst = torch.empty(t.shape(), dtype=torch.uint8, device=f"cuda:{self.device_id}")
        feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream(self.device_id))
        return dst[0]

    def __iter__(self) -> Iterator[tuple]:
        pipe = self._pipeline()
        for i, path in enumerate(self.paths):
            try:
                times = probe_times(path)
                data = np.fromfile(path, dtype=np.uint8)
            except (BadVideo, OSError) as e:
                yield "bad", i, None, None, str(e)
                continue
            idx, ts = sample_plan(times.times, times.duration, self.fps)
            failed = None
            for a in range(0, len(idx), self.chunk_frames):
                try:
                    pipe.feed_input("video", [data])
                    pipe.feed_input("frames", [idx[a:a + self.chunk_frames].astype(np.int32)])
                    (out,) = pipe.run()
                    frames = self._to_torch(out)
                except RuntimeError as e:  # DALI could not decode it: this pipeline is now invalid
                    self.rebuilds += 1
                    pipe = self._pipeline()
                    failed = f"DALI cannot decode it: {str(e).strip().splitlines()[-1][:200]}"
                    break
                yield "chunk", i, ts[a:a + self.chunk_frames, 0], frames, None
            # "bad" after some chunks: the consumer drops what it got of this video
            yield ("bad", i, None, None, failed) if failed else ("end", i, None, None, None)
