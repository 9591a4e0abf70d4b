"""Models: ViT (sdpa / xformers / math attention), CopyNCE descriptor and matcher, loading (one entry point for
every checkpoint format; foreign key layouts in ``layouts``), export."""
from copynce_fast.models.attention import Attention, AttnImpl, attention_math, resolve_attn_impl, set_attn_impl
from copynce_fast.models.layouts import (
    LoadResult,
    load_copynce_checkpoint,
    load_dino_checkpoint,
    read_checkpoint,
)
from copynce_fast.models.descriptor import (
    CopyDescriptor,
    descriptor_vit_base,
    descriptor_vit_small,
    descriptor_vit_tiny,
    gem,
)
from copynce_fast.models.export import export_onnx, export_torchscript
from copynce_fast.models.loading import (
    LoadedModel,
    build_model,
    checkpoint_format,
    load_model,
    load_pretrained,
    load_weights,
)
from copynce_fast.models.matcher import CopyMatcher, matcher_vit_base, matcher_vit_small, matcher_vit_tiny
from copynce_fast.models.vit import VisionTransformer, interpolate_pos_embed, vit_base, vit_small, vit_tiny

__all__ = [
    "Attention", "AttnImpl", "attention_math", "resolve_attn_impl", "set_attn_impl",
    "VisionTransformer", "interpolate_pos_embed", "vit_tiny", "vit_small", "vit_base",
    "CopyDescriptor", "gem", "descriptor_vit_tiny", "descriptor_vit_small", "descriptor_vit_base",
    "CopyMatcher", "matcher_vit_tiny", "matcher_vit_small", "matcher_vit_base",
    "LoadResult", "read_checkpoint", "load_dino_checkpoint", "load_copynce_checkpoint",
    "LoadedModel", "build_model", "checkpoint_format", "load_model", "load_pretrained", "load_weights",
    "export_torchscript", "export_onnx",
]
