"""CopyNCE pair matcher, "enc-8 + fusion-4" (REFERENCE §5.3).

    query, reference [B,3,H,W] ─► shared encoder (8 blocks, one call on the 2B stacked images)
        ─► [fusion CLS, q_cls, q_patches(L), r_cls, r_patches(L)]  [B, 2L+3, C]
        ─► 4 fusion blocks ─► fusion norm
        ├─► cls_head: own LayerNorm, token 0 ─► Linear(C→1) ─► logit [B]
        └─► fusion_head: own LayerNorm on [q_patches, r_patches] ─► CopyNCE tokens [B, L, C] × 2

There are no segment embeddings (positions are added in the encoder only), so the fusion is symmetric in q↔r up
to token order, to which attention is insensitive: swapping query and reference leaves the logit unchanged and
swaps the token sets (tested). Both encoder passes run as one batched call (REFERENCE §11.7): same maths, one
kernel launch sequence, better GPU utilisation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from copynce_fast.models.attention import AttnImpl
from copynce_fast.models.vit import Block, VisionTransformer, init_vit_weights, vit_base, vit_small, vit_tiny


class Fusion(nn.Module):
    """Fusion transformer: a learned CLS (trunc-normal 0.02) prepended to the concatenated tokens, blocks, norm.

    Shapes: ``[B, N, C] -> [B, 1+N, C]`` (token 0 is the fusion CLS).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, ln_eps: float = 1e-4,
                 attn_impl: AttnImpl = "sdpa", device=None, dtype=None):
        super().__init__()
        fk = dict(device=device, dtype=dtype)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim, **fk))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, True, ln_eps, attn_impl, **fk)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=ln_eps, **fk)
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class ClsHead(nn.Module):
    """Fresh LayerNorm then Linear(C→1) on the fusion CLS: ``[B, C] -> [B]`` logit (sigmoid = copy probability)."""

    def __init__(self, dim: int, ln_eps: float = 1e-4, device=None, dtype=None):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=ln_eps, device=device, dtype=dtype)
        self.fc = nn.Linear(dim, 1, device=device, dtype=dtype)
        init_vit_weights(self.fc)

    def forward(self, cls: Tensor) -> Tensor:
        # the reference normalises all fused tokens and then takes token 0; LayerNorm is per token, so
        # normalising token 0 alone is the same number at 1/(2L+3) of the cost
        x = self.norm(cls).float()
        # C→1 dot product in fp32 even under autocast (mul + sum are not autocast ops): a bf16 logit keeps ~3
        # significant digits, which creates ties when millions of pair scores are ranked for µAP
        return (x * self.fc.weight[0].float()).sum(-1) + self.fc.bias.float()


class FusionHead(nn.Module):
    """Fresh LayerNorm over the fused patch tokens of both images (the CopyNCE tokens), ``[B, N, C] -> [B, N, C]``."""

    def __init__(self, dim: int, ln_eps: float = 1e-4, device=None, dtype=None):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=ln_eps, device=device, dtype=dtype)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.norm(tokens)


class CopyMatcher(nn.Module):
    """Pair classifier with a shared encoder and a fusion transformer.

    Args:
        encoder: ViT holding the patch/pos/cls embeddings and the encoder blocks; built with
            ``final_norm=False`` (the DINO final norm becomes ``fusion.norm``).
        fusion_depth: number of fusion blocks (4 in the reference).
        ln_eps: LayerNorm epsilon of the fusion blocks and the heads (1e-4 in the reference).
        attn_impl: attention backend of the fusion blocks (the encoder has its own, set when it was built).

    ``forward(query, reference)`` with images ``[B, 3, H, W]`` (same size on both sides for the single
    batched encoder call; different sizes fall back to two calls) returns::

        {"logit": [B], "query_tokens": [B, Lq, C], "reference_tokens": [B, Lr, C], "fused_cls": [B, C]}

    ``logit`` is pre-sigmoid and fp32 even under autocast (train with BCE-with-logits; the reference applies a
    sigmoid in eval).
    """

    def __init__(self, encoder: VisionTransformer, fusion_depth: int = 4, ln_eps: float = 1e-4,
                 attn_impl: AttnImpl | None = None):
        super().__init__()
        if encoder.norm is not None:
            raise ValueError("encoder must be built with final_norm=False (its norm would never be used)")
        self.encoder = encoder
        param = encoder.pos_embed
        fk = dict(device=param.device, dtype=param.dtype)
        C = encoder.embed_dim
        self.fusion = Fusion(C, fusion_depth, encoder.num_heads, ln_eps=ln_eps,
                             attn_impl=attn_impl or encoder.attn_impl, **fk)
        self.cls_head = ClsHead(C, ln_eps, **fk)
        self.fusion_head = FusionHead(C, ln_eps, **fk)

    @property
    def patch_size(self) -> int:
        """Pixels per patch side of the encoder (the CopyNCE token grid)."""
        return self.encoder.patch_size

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {"fusion.cls_token"}

    def encode(self, query: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder tokens (CLS first, no norm) of both sides: ``[B, 1+Lq, C]``, ``[B, 1+Lr, C]``."""
        if query.shape[0] != reference.shape[0]:
            raise ValueError(f"query and reference batch sizes differ: {query.shape[0]} vs {reference.shape[0]}")
        if query.shape == reference.shape:
            tokens, _ = self.encoder.forward_tokens(torch.cat([query, reference], dim=0))
            q, r = tokens.chunk(2, dim=0)
            return q, r
        return self.encoder.forward_tokens(query)[0], self.encoder.forward_tokens(reference)[0]

    def forward(self, query: Tensor, reference: Tensor) -> dict[str, Tensor]:
        q, r = self.encode(query, reference)
        n_q = q.shape[1]
        fused = self.fusion(torch.cat([q, r], dim=1))  # [B, 1 + (1+Lq) + (1+Lr), C]
        fused_cls = fused[:, 0]
        # drop the fusion CLS and both image CLS tokens: fused q patches start at 2, r patches at 2 + n_q
        patches = torch.cat([fused[:, 2:1 + n_q], fused[:, 2 + n_q:]], dim=1)
        patches = self.fusion_head(patches)
        L_q = n_q - 1
        return {
            "logit": self.cls_head(fused_cls),
            "query_tokens": patches[:, :L_q],
            "reference_tokens": patches[:, L_q:],
            "fused_cls": fused_cls,
        }


def _matcher(builder, img_size, encoder_depth, fusion_depth, attn_impl, ln_eps, freeze_patch_embed,
             **vit_kw) -> CopyMatcher:
    encoder = builder(img_size, depth=encoder_depth, attn_impl=attn_impl, ln_eps=ln_eps, final_norm=False,
                      freeze_patch_embed=freeze_patch_embed, **vit_kw)
    return CopyMatcher(encoder, fusion_depth=fusion_depth, ln_eps=ln_eps)


def matcher_vit_tiny(img_size: int | tuple[int, int] = 224, encoder_depth: int = 2, fusion_depth: int = 2,
                     attn_impl: AttnImpl = "sdpa", ln_eps: float = 1e-4, freeze_patch_embed: bool = False,
                     **vit_kw) -> CopyMatcher:
    """Test-size matcher on :func:`vit_tiny` widths (C=96, 3 heads), 2 encoder + 2 fusion blocks."""
    return _matcher(vit_tiny, img_size, encoder_depth, fusion_depth, attn_impl, ln_eps, freeze_patch_embed,
                    **vit_kw)


def matcher_vit_small(img_size: int | tuple[int, int] = 224, encoder_depth: int = 8, fusion_depth: int = 4,
                      attn_impl: AttnImpl = "sdpa", ln_eps: float = 1e-4, freeze_patch_embed: bool = False,
                      **vit_kw) -> CopyMatcher:
    """The reference matcher: ViT-S/16, 8 encoder + 4 fusion blocks (DINO blocks 0-7 / 8-11), LN eps 1e-4."""
    return _matcher(vit_small, img_size, encoder_depth, fusion_depth, attn_impl, ln_eps, freeze_patch_embed,
                    **vit_kw)


def matcher_vit_base(img_size: int | tuple[int, int] = 224, encoder_depth: int = 8, fusion_depth: int = 4,
                     attn_impl: AttnImpl = "sdpa", ln_eps: float = 1e-4, freeze_patch_embed: bool = False,
                     **vit_kw) -> CopyMatcher:
    """ViT-B/16 variant of :func:`matcher_vit_small`."""
    return _matcher(vit_base, img_size, encoder_depth, fusion_depth, attn_impl, ln_eps, freeze_patch_embed,
                    **vit_kw)
