"""DALI decoding for extraction: JPEG/PNG decode + S×S resize on the GPU (``device_id=int``) or CPU (None).

Optional (``nvidia-dali-cuda120``); :mod:`copynce_fast.inference.extract` uses it with ``loader="dali"`` (or
``"auto"`` on CUDA when DALI is installed). It yields the same ``(indices, uint8 [n, 3, S, S], failures)``
batches as the torch loader, so the rest of the extraction is shared.

Pipeline: a thread pool reads each file and checks its header with the project decoder's rules
(:func:`copynce_fast.data.decode.probe_bytes`: not an image, truncated, too small, too large -> a counted
failure, never fed to DALI); the bytes go through ``external_source`` -> ``decoders.image`` ("mixed" on the
GPU, RGB, EXIF orientation applied) -> ``resize`` to S×S (cubic, antialiased, aspect not kept) -> CHW.
A file DALI still cannot decode invalidates the pipeline (DALI's behaviour): that batch is then decoded with
PIL (:func:`copynce_fast.inference.images.load_image`) and the pipeline rebuilt.

Pixels differ slightly from the PIL path (DALI's cubic resize vs PIL's bicubic: about 0.3 grey levels mean
absolute difference on noise images; tested), so do not mix the two loaders inside one feature file if
bit-exact reproducibility matters.
"""
from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from copynce_fast.data.decode import BadImage, DecodeLimits, probe_bytes
from copynce_fast.inference.images import ImageItem, load_image


def dali_available() -> bool:
    """True when ``nvidia.dali`` is importable."""
    return importlib.util.find_spec("nvidia.dali") is not None


def _read(path: Path, limits: DecodeLimits):
    try:
        data = Path(path).read_bytes()
        probe_bytes(data, limits)
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    except BadImage as e:
        return str(e)
    return np.frombuffer(data, dtype=np.uint8)


class DaliImageBatches:
    """Iterate ``(indices (n,) int64, images uint8 [n, 3, S, S] | None, failures [(index, reason)])`` over
    ``items`` in order, ``batch_size`` items at a time.

    Args:
        items: the images.
        size: output side S.
        batch_size: items per batch (the pipeline's maximum batch).
        device_id: CUDA device for "mixed" decoding, or None for a CPU pipeline.
        num_threads: DALI threads and file-reading threads.
    """

    def __init__(self, items: Sequence[ImageItem], size: int, batch_size: int, device_id: int | None,
                 num_threads: int = 4, limits: DecodeLimits = DecodeLimits()):
        if not dali_available():
            raise ValueError("loader 'dali': NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
        self.items = list(items)
        self.size = size
        self.batch_size = batch_size
        self.device_id = device_id
        self.num_threads = max(1, num_threads)
        self.limits = limits
        self.rebuilds = 0  # pipelines rebuilt after a DALI decode failure

    def _pipeline(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.device_id is not None

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
        def decode_resize():
            data = fn.external_source(name="bytes", dtype=types.UINT8, ndim=1)
            img = fn.decoders.image(data, device="mixed" if gpu else "cpu", output_type=types.RGB)
            img = fn.resize(img, resize_x=self.size, resize_y=self.size, interp_type=types.INTERP_CUBIC,
                            antialias=True)
            return fn.transpose(img, perm=[2, 0, 1])

        pipe = decode_resize()
        pipe.build()
        return pipe

    def _to_torch(self, out) -> torch.Tensor:
        if self.device_id is None:
            return torch.from_numpy(np.array(out.as_tensor()))
        from nvidia.dali.plugin.pytorch import feed_ndarray

        t = out.as_tensor()
        dst = torch.empty(t.shape(), dtype=torch.uint8, device=f"cuda:{self.device_id}")
        feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream(self.device_id))
        return dst

    def _fallback(self, ok: list[int], failures: list):
        """Decode a batch DALI rejected with PIL, one file at a time."""
        idx, imgs = [], []
        for i in ok:
            try:
                imgs.append(load_image(self.items[i].path, self.size))
                idx.append(i)
            except BadImage as e:
                failures.append((i, str(e)))
        images = torch.stack(imgs) if imgs else None
        if images is not None and self.device_id is not None:
            images = images.to(f"cuda:{self.device_id}")
        return torch.tensor(idx, dtype=torch.int64), images, sorted(failures)

    def __iter__(self):
        pipe = self._pipeline()
        starts = list(range(0, len(self.items), self.batch_size))
        with ThreadPoolExecutor(self.num_threads) as pool:
            def submit(s):
                return pool.map(_read, [it.path for it in self.items[s:s + self.batch_size]],
                                [self.limits] * len(self.items[s:s + self.batch_size]))

            pending = submit(starts[0]) if starts else None
            for n, start in enumerate(starts):
                reads = list(pending)
                pending = submit(starts[n + 1]) if n + 1 < len(starts) else None  # read ahead while decoding
                ok = [start + k for k, r in enumerate(reads) if not isinstance(r, str)]
                failures = [(start + k, r) for k, r in enumerate(reads) if isinstance(r, str)]
                if not ok:
                    yield torch.zeros(0, dtype=torch.int64), None, failures
                    continue
                try:
                    pipe.feed_input("bytes", [reads[i - start] for i in ok])
                    (out,) = pipe.run()
                    images = self._to_torch(out)
                except RuntimeError:  # a file DALI cannot decode: this pipeline is now invalid
                    self.rebuilds += 1
                    pipe = self._pipeline()
                    yield self._fallback(ok, failures)
                    continue
                yield torch.tensor(ok, dtype=torch.int64), images, failures
