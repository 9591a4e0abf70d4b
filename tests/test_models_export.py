"""torch.compile (fullgraph, no graph breaks) and TorchScript / ONNX export of the tiny models."""
import pytest
import torch

from copynce_fast.models import descriptor_vit_tiny, export_onnx, export_torchscript, matcher_vit_tiny


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    diff = (actual - expected).abs()
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"max abs diff {diff.max().item():.3g}"


def images(b=2, h=224, w=224, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def trained_looking_descriptor(**kw):
    torch.manual_seed(0)
    desc = descriptor_vit_tiny(**kw)
    with torch.no_grad():  # non-trivial BN statistics: export must use running stats (eval mode)
        desc.bn.running_mean.normal_()
        desc.bn.running_var.uniform_(0.5, 2.0)
    return desc.eval()


# ---------------------------------------------------------------- torch.compile


def test_compile_descriptor_aot_eager():
    desc = trained_looking_descriptor()
    x = images(2)
    compiled = torch.compile(desc, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        ref, out = desc(x), compiled(x)
    assert_close(out["feat"], ref["feat"])
    assert_close(out["tokens"], ref["tokens"], atol=1e-4)


def test_compile_matcher_aot_eager_fwd_bwd():
    torch.manual_seed(0)
    matcher = matcher_vit_tiny()
    q, r = images(2, seed=1), images(2, seed=2)
    compiled = torch.compile(matcher, fullgraph=True, backend="aot_eager")
    out = compiled(q, r)
    (out["logit"].sum() + out["query_tokens"].square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in matcher.named_parameters()}
    matcher.zero_grad(set_to_none=True)
    ref = matcher(q, r)
    (ref["logit"].sum() + ref["query_tokens"].square().mean()).backward()
    assert_close(out["logit"], ref["logit"])
    for n, p in matcher.named_parameters():
        assert_close(grads[n], p.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="inductor test needs CUDA")
def test_compile_inductor_cuda_bf16():
    torch.manual_seed(0)
    desc = descriptor_vit_tiny().cuda().eval()
    matcher = matcher_vit_tiny().cuda().eval()
    x, y = images(4).cuda(), images(4, seed=1).cuda()
    c_desc = torch.compile(desc, fullgraph=True)
    c_matcher = torch.compile(matcher, fullgraph=True)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert_close(c_desc(x)["feat"], desc(x)["feat"], atol=2e-2, rtol=0)
        assert_close(c_matcher(x, y)["logit"].float(), matcher(x, y)["logit"].float(), atol=5e-2, rtol=5e-2)


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("img_size", [224, (224, 320)])
def test_torchscript_roundtrip(tmp_path, img_size):
    desc = trained_looking_descriptor()
    path = export_torchscript(desc, tmp_path / "desc.pt", img_size=img_size)
    loaded = torch.jit.load(str(path))
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = images(3, h, w, seed=5)  # a batch size other than the traced one
    with torch.no_grad():
        assert_close(loaded(x), desc(x)["feat"])
    assert not desc.training  # the export works on a copy


def test_onnx_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    desc = trained_looking_descriptor(attn_impl="sdpa")
    path = export_onnx(desc, tmp_path / "desc.onnx", img_size=224, opset=17)
    assert desc.backbone.attn_impl == "sdpa"  # the math switch happened on a copy
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images(3, seed=7)
    (feat,) = session.run(["feat"], {"images": x.numpy()})
    with torch.no_grad():
        assert_close(torch.from_numpy(feat), desc(x)["feat"], atol=1e-4, rtol=1e-4)


def test_export_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="img_size"):
        export_torchscript(trained_looking_descriptor(), tmp_path / "x.pt", img_size=230)
    with pytest.raises(ValueError, match="descriptor"):
        export_onnx(matcher_vit_tiny(), tmp_path / "x.onnx")
