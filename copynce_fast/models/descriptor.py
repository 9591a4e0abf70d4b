"""CopyNCE global descriptor: ViT → pooled token → Linear (no bias) → BatchNorm1d → L2 norm (REFERENCE §5.2).

The reference pools the CLS token of the **last block without the final LayerNorm** and trains the CopyNCE
patch loss on the same block's patch tokens; ``use_final_norm=False`` (default) reproduces that. GeM over patch
tokens is offered as an alternative pooling.

BatchNorm statistics: the reference runs query and reference batches through the head in separate calls, so
they get separate batch statistics. Call the descriptor once per side in training to keep that behaviour (the
trainer decides; one call over both sides is a recorded deviation, REFERENCE §11.7).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from copynce_fast.models.attention import AttnImpl
from copynce_fast.models.vit import VisionTransformer, vit_base, vit_small, vit_tiny


def gem(tokens: Tensor, p: float = 3.0, eps: float = 1e-6) -> Tensor:
    """Generalised-mean pooling over tokens: ``(mean_L clamp(x, eps)^p)^(1/p)``.

    Args:
        tokens: ``[B, L, C]`` float. Negative activations are clamped to ``eps`` (GeM assumes x >= 0).
        p: exponent (1 = average pooling, → ∞ = max pooling).

    Returns:
        ``[B, C]`` fp32 (pow in bf16 overflows / loses precision for p=3).
    """
    return tokens.float().clamp(min=eps).pow(p).mean(dim=1).pow(1.0 / p)


class CopyDescriptor(nn.Module):
    """Global copy-detection descriptor on top of a :class:`VisionTransformer`.

    Args:
        backbone: the ViT (12 blocks, DINO-initialised in the reference).
        dim: descriptor size (512 in the reference; 256 for the ``*_dim-256`` eval configs).
        pool: ``"cls"`` (reference) or ``"gem"`` (GeM over patch tokens).
        gem_p: GeM exponent.
        use_final_norm: pool the backbone's final-norm tokens instead of the last block's raw output.
            False (default) matches the reference; True requires a backbone built with ``final_norm=True``.

    ``forward(images [B, 3, H, W])`` returns ``{"feat": [B, dim] fp32, unit L2 norm, "norm": [B] fp32, the
    descriptor's length before that normalisation (the ASL input), "tokens": [B, L, C] last-block patch tokens
    before the final norm}`` (the CopyNCE input).
    """

    def __init__(self, backbone: VisionTransformer, dim: int = 512, pool: Literal["cls", "gem"] = "cls",
                 gem_p: float = 3.0, use_final_norm: bool = False):
        super().__init__()
        if pool not in ("cls", "gem"):
            raise ValueError(f"pool must be 'cls' or 'gem', got {pool!r}")
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if use_final_norm and backbone.norm is None:
            raise ValueError("use_final_norm=True needs a backbone built with final_norm=True")
        self.backbone = backbone
        self.pool = pool
        self.gem_p = float(gem_p)
        self.use_final_norm = use_final_norm
        param = next(backbone.parameters())
        fk = dict(device=param.device, dtype=param.dtype)
        self.fc = nn.Linear(backbone.embed_dim, dim, bias=False, **fk)
        self.bn = nn.BatchNorm1d(dim, **fk)
        nn.init.xavier_normal_(self.fc.weight)  # the reference LinearHead init

    @property
    def patch_size(self) -> int:
        """Pixels per patch side of the backbone (the CopyNCE token grid)."""
        return self.backbone.patch_size

    @property
    def dim(self) -> int:
        return self.fc.out_features

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def forward(self, images: Tensor, reference: Tensor | None = None):
        """Descriptor of ``images``; with ``reference`` too, a pair ``(out_query, out_reference)``.

        The pair form runs the backbone ONCE on both batches (one larger call uses the GPU better) and the head
        separately on each half, so BatchNorm keeps separate query / reference statistics exactly as two calls
        would (the reference's semantics). It goes through ``forward`` so DDP and torch.compile see it.
        """
        if reference is None or reference.shape[1:] != images.shape[1:]:
            if reference is None:
                return self._head(self.backbone(images))
            return self._head(self.backbone(images)), self._head(self.backbone(reference))
        n = images.shape[0]
        out = self.backbone(torch.cat([images, reference]))
        halves = [{k: v[:n] for k, v in out.items() if isinstance(v, Tensor)},
                  {k: v[n:] for k, v in out.items() if isinstance(v, Tensor)}]
        return self._head(halves[0]), self._head(halves[1])

    def _head(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.use_final_norm:
            cls, patches = out["cls"], out["patch_tokens"]
        else:
            cls, patches = out["last_block_cls"], out["last_block_patch_tokens"]
        pooled = cls if self.pool == "cls" else gem(patches, self.gem_p)
        x = self.fc(pooled)
        # BatchNorm and the L2 norm in fp32: under bf16 autocast the Linear output is bf16, and the running
        # statistics / unit-norm descriptors should not carry bf16 rounding
        x = self.bn(x.float())
        # "norm": the length before the L2 norm, ASL's measure of how much content the image holds (ops/asl.py)
        return {"feat": F.normalize(x, dim=1), "norm": x.norm(dim=1), "tokens": out["last_block_patch_tokens"]}


def _descriptor(builder, dim, img_size, attn_impl, pool, use_final_norm, ln_eps, freeze_patch_embed,
                **vit_kw) -> CopyDescriptor:
    backbone = builder(img_size, attn_impl=attn_impl, ln_eps=ln_eps, final_norm=use_final_norm,
                       freeze_patch_embed=freeze_patch_embed, **vit_kw)
    return CopyDescriptor(backbone, dim=dim, pool=pool, use_final_norm=use_final_norm)


def descriptor_vit_tiny(dim: int = 64, img_size: int | tuple[int, int] = 224, attn_impl: AttnImpl = "sdpa",
                        pool: Literal["cls", "gem"] = "cls", use_final_norm: bool = False, ln_eps: float = 1e-4,
                        freeze_patch_embed: bool = True, **vit_kw) -> CopyDescriptor:
    """Test-size descriptor on :func:`vit_tiny` (C=96, depth 4)."""
    return _descriptor(vit_tiny, dim, img_size, attn_impl, pool, use_final_norm, ln_eps, freeze_patch_embed,
                       **vit_kw)


def descriptor_vit_small(dim: int = 512, img_size: int | tuple[int, int] = 224, attn_impl: AttnImpl = "sdpa",
                         pool: Literal["cls", "gem"] = "cls", use_final_norm: bool = False, ln_eps: float = 1e-4,
                         freeze_patch_embed: bool = True, **vit_kw) -> CopyDescriptor:
    """The reference descriptor: ViT-S/16, 12 blocks, LN eps 1e-4, frozen patch embed, 512-d head.

    The backbone has no final norm by default (the reference never uses it); a DINO ``norm.*`` is then
    reported as ignored by the checkpoint loader.
    """
    return _descriptor(vit_small, dim, img_size, attn_impl, pool, use_final_norm, ln_eps, freeze_patch_embed,
                       **vit_kw)


def descriptor_vit_base(dim: int = 512, img_size: int | tuple[int, int] = 224, attn_impl: AttnImpl = "sdpa",
                        pool: Literal["cls", "gem"] = "cls", use_final_norm: bool = False, ln_eps: float = 1e-4,
                        freeze_patch_embed: bool = True, **vit_kw) -> CopyDescriptor:
    """ViT-B/16 variant of :func:`descriptor_vit_small`."""
    return _descriptor(vit_base, dim, img_size, attn_impl, pool, use_final_norm, ln_eps, freeze_patch_embed,
                       **vit_kw)
