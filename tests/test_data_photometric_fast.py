"""The torch executor's fast filters against plain convolutions: edge enhance exactly, Gaussian blur to fp32
rounding (both ran as grouped conv2d before; the fast forms are what the loader's throughput needs); the JPEG op
against PIL's own interleaved encode + decode round trip."""
import io
import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from copynce_fast.data.photometric import _edge_enhance, _gaussian_blur, _jpeg, edge_kernel


def image(h=37, w=53, seed=0):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("more", [False, True])
def test_edge_enhance_equals_the_convolution(more):
    img = image()
    k = torch.from_numpy(edge_kernel(more)).view(1, 1, 3, 3).expand(3, 1, 3, 3).contiguous()
    conv = F.conv2d(F.pad(img[None].float(), (1, 1, 1, 1), mode="replicate"), k, groups=3)[0]
    assert torch.equal(_edge_enhance(img, more), conv)  # small integers and halves: exact in any order


@pytest.mark.parametrize("sigma,hw", [(0.3, (37, 53)), (2.0, (37, 53)), (4.0, (40, 9))])  # 9 < radius: replicate
def test_gaussian_blur_matches_the_convolution(sigma, hw):
    x = image(*hw, seed=1).float()
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    h, w = hw
    y = F.pad(x[None], (r, r, 0, 0), mode="reflect" if min(r, w - 1) == r else "replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(3, 1, 1, -1).contiguous(), groups=3)
    y = F.pad(y, (0, 0, r, r), mode="reflect" if min(r, h - 1) == r else "replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(3, 1, -1, 1).contiguous(), groups=3)[0]
    got = _gaussian_blur(x, sigma)
    assert got.shape == x.shape
    torch.testing.assert_close(got, y, rtol=0, atol=1e-3)
    assert not torch.equal(got, x)  # it did blur


@pytest.mark.parametrize("hw", [(37, 53), (1, 1), (16, 224)])
@pytest.mark.parametrize("quality", [5, 50, 95])
def test_jpeg_op_equals_pils_round_trip(hw, quality):
    # The op encodes with PIL and decodes with the package's decoder (libjpeg-turbo through simplejpeg when
    # installed): the pixels must be PIL's decode of PIL's encode of the interleaved image, however small.
    img = image(*hw, seed=quality)
    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
    want = torch.from_numpy(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))).permute(2, 0, 1)
    got = _jpeg(img, quality)
    assert got.shape == img.shape and got.is_contiguous()
    assert torch.equal(got, want)
    assert hw == (1, 1) or not torch.equal(got, img)  # lossy: the comparison is not of the input with itself
