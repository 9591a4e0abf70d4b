"""Vision Transformer (ViT-S/16, ViT-B/16 and a tiny test size) in the DINO / CopyNCE layout.

Parameter names follow the timm/DINO state dict (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``), so a DINO checkpoint maps onto it
one to one (see ``layouts.py``). Architecture (REFERENCE §5.1): conv 16×16/16 patch embed with bias, CLS
token, learned pos-embed ``[1, 1+L, C]``, pre-norm blocks ``x += attn(ln1 x); x += mlp(ln2 x)``, MLP C→4C→C with
exact GELU, qkv bias, no dropout / drop-path / LayerScale (all off in the reference).

Unlike the reference (strict input size), any side divisible by 16 works: the pos-embed is resized bicubically
on the patch grid when the input grid differs from the stored one (the CLS embedding is kept as is).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from copynce_fast.models.attention import Attention, AttnImpl

PATCH_SIZE = 16


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def interpolate_pos_embed(pos_embed: Tensor, new_grid_hw: tuple[int, int],
                          old_grid_hw: tuple[int, int] | None = None) -> Tensor:
    """Resize a ``[1, 1+L, C]`` pos-embed (CLS first) to another patch grid.

    The patch part is reshaped to its ``(h, w)`` grid and resized with bicubic interpolation
    (``align_corners=False``, plain ``size=``, as the reference's offline 14×14 → 21×21 script); the CLS
    embedding is kept unchanged. Returns the input itself when the grid is unchanged.

    Args:
        pos_embed: ``[1, 1+h*w, C]`` float.
        new_grid_hw: target grid ``(h', w')``.
        old_grid_hw: stored grid; inferred as square when None.

    Returns:
        ``[1, 1+h'*w', C]`` in the dtype of ``pos_embed`` (interpolated in fp32).

    Raises:
        ValueError: ``pos_embed`` is not ``[1, 1+L, C]`` or ``L`` does not match ``old_grid_hw``.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must be [1, 1+L, C], got {tuple(pos_embed.shape)}")
    n_patch = pos_embed.shape[1] - 1
    if old_grid_hw is None:
        side = math.isqrt(n_patch)
        if side * side != n_patch:
            raise ValueError(f"pos_embed has {n_patch} patch tokens, not a square grid: pass old_grid_hw")
        old_grid_hw = (side, side)
    old_h, old_w = old_grid_hw
    if old_h * old_w != n_patch:
        raise ValueError(f"old_grid_hw {old_grid_hw} does not match pos_embed with {n_patch} patch tokens")
    new_h, new_w = int(new_grid_hw[0]), int(new_grid_hw[1])
    if (new_h, new_w) == (old_h, old_w):
        return pos_embed
    C = pos_embed.shape[2]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    grid = patch_pos.reshape(1, old_h, old_w, C).permute(0, 3, 1, 2).float()  # bicubic needs fp32 on CPU
    grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", align_corners=False)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, C).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping 16×16 patches → C channels: ``[B, 3, H, W] -> [B, (H/16)(W/16), C]`` (row-major grid)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = PATCH_SIZE, device=None, dtype=None):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=True,
                              device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """``fc1`` C→hidden, exact (erf) GELU, ``fc2`` hidden→C."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, device=device, dtype=dtype)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x += attn(norm1(x)); x += mlp(norm2(x))``. Shapes ``[B, N, C] -> [B, N, C]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 ln_eps: float = 1e-6, attn_impl: AttnImpl = "sdpa", device=None, dtype=None):
        super().__init__()
        fk = dict(device=device, dtype=dtype)
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps, **fk)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_impl=attn_impl, **fk)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps, **fk)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **fk)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_vit_weights(module: nn.Module) -> None:
    """timm/DINO init: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0). Conv keeps torch's default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """ViT with a CLS token and a learned pos-embed; input sides must be multiples of 16.

    Args:
        img_size: stored pos-embed resolution, int or ``(H, W)``; other inputs are handled by interpolation.
        in_chans: input channels.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: architecture.
        ln_eps: LayerNorm epsilon. DINO was trained with 1e-6; the CopyNCE reference uses 1e-4 everywhere.
        attn_impl: ``"sdpa" | "xformers" | "math"``, chosen once (see ``attention.py``).
        final_norm: build the final LayerNorm ``norm``. The matcher's encoder has none (the DINO norm moves to
            the fusion); without it ``cls`` / ``patch_tokens`` equal the last-block tokens.
        freeze_patch_embed: ``requires_grad_(False)`` on the patch embedding (the reference descriptor does it).
        device, dtype: factory kwargs.

    ``forward(x [B, 3, H, W])`` returns a dict:
        ``cls`` ``[B, C]`` and ``patch_tokens`` ``[B, L, C]`` after the final norm;
        ``last_block_cls`` ``[B, C]`` and ``last_block_patch_tokens`` ``[B, L, C]``: the last block's output
        before the final norm (the CopyNCE descriptor uses these);
        ``block_outputs``: list of ``depth`` tensors ``[B, 1+L, C]``, only with ``return_block_outputs=True``.
    L = (H/16)·(W/16), row-major over the patch grid.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 ln_eps: float = 1e-6, attn_impl: AttnImpl = "sdpa", final_norm: bool = True,
                 freeze_patch_embed: bool = False, device=None, dtype=None):
        super().__init__()
        img_h, img_w = _pair(img_size)
        if img_h % PATCH_SIZE or img_w % PATCH_SIZE:
            raise ValueError(f"img_size must be divisible by {PATCH_SIZE}, got {(img_h, img_w)}")
        fk = dict(device=device, dtype=dtype)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.grid_size = (img_h // PATCH_SIZE, img_w // PATCH_SIZE)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_embed = PatchEmbed(in_chans, embed_dim, **fk)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **fk))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, embed_dim, **fk))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, ln_eps, attn_impl, **fk) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=ln_eps, **fk) if final_norm else None

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)
        if freeze_patch_embed:
            self.patch_embed.requires_grad_(False)

    @property
    def patch_size(self) -> int:
        """Side of the square patches in pixels (16): a token covers ``patch_size``² input pixels."""
        return PATCH_SIZE

    @property
    def attn_impl(self) -> str:
        """The attention backend that actually runs (after any xformers → sdpa fallback)."""
        return self.blocks[0].attn.attn_impl if len(self.blocks) else "sdpa"

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (timm / reference convention)."""
        return {"pos_embed", "cls_token"}

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """Patch-embed, prepend CLS, add the (interpolated if needed) pos-embed: ``[B,3,H,W] -> [B,1+L,C]``."""
        if x.dim() != 4:
            raise ValueError(f"images must be [B, C, H, W], got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % PATCH_SIZE or W % PATCH_SIZE:
            raise ValueError(f"image sides must be divisible by {PATCH_SIZE}, got {(H, W)}")
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        tokens = torch.cat([cls, tokens], dim=1)
        # shape-only branch: static under torch.compile, so no graph break
        pos = interpolate_pos_embed(self.pos_embed, (H // PATCH_SIZE, W // PATCH_SIZE), self.grid_size)
        return tokens + pos

    def forward_tokens(self, x: Tensor, return_block_outputs: bool = False) -> tuple[Tensor, list[Tensor]]:
        """All tokens after the last block, before the final norm: ``[B, 1+L, C]``, plus block outputs if asked."""
        x = self.prepare_tokens(x)
        outputs: list[Tensor] = []
        for blk in self.blocks:
            x = blk(x)
            if return_block_outputs:
                outputs.append(x)
        return x, outputs

    def forward(self, x: Tensor, return_block_outputs: bool = False) -> dict[str, Tensor | list[Tensor]]:
        tokens, block_outputs = self.forward_tokens(x, return_block_outputs)
        normed = self.norm(tokens) if self.norm is not None else tokens
        out: dict[str, Tensor | list[Tensor]] = {
            "cls": normed[:, 0],
            "patch_tokens": normed[:, 1:],
            "last_block_cls": tokens[:, 0],
            "last_block_patch_tokens": tokens[:, 1:],
        }
        if return_block_outputs:
            out["block_outputs"] = block_outputs
        return out


def _vit(img_size, embed_dim, depth, num_heads, **kw) -> VisionTransformer:
    return VisionTransformer(img_size=img_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kw)


def vit_tiny(img_size: int | tuple[int, int] = 224, **kw) -> VisionTransformer:
    """Test-size ViT/16: C=96, 3 heads (head_dim 32), depth 4. For CPU tests only."""
    kw.setdefault("depth", 4)
    return _vit(img_size, 96, num_heads=3, **kw)


def vit_small(img_size: int | tuple[int, int] = 224, **kw) -> VisionTransformer:
    """ViT-S/16: C=384, 6 heads, depth 12 (DINO ``dino_deitsmall16``)."""
    kw.setdefault("depth", 12)
    return _vit(img_size, 384, num_heads=6, **kw)


def vit_base(img_size: int | tuple[int, int] = 224, **kw) -> VisionTransformer:
    """ViT-B/16: C=768, 12 heads, depth 12 (DINO ``dino_vitbase16``)."""
    kw.setdefault("depth", 12)
    return _vit(img_size, 768, num_heads=12, **kw)
