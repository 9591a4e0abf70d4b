"""PixTrace: exact pixel correspondences between edited copies, from the geometry of their augmentation plans.

- ``stages``: one geometric edit = one 3x3 homography between canvases (crop, resize, flips, rotation, shear,
  affine, perspective, padding, paste into a canvas).
- ``view``: a chain of stages from an original; ``trace_path`` relates two views through the original.
- ``batch``: trace paths packed as tensors; the torch reference that maps every pixel.
- ``dense``: reference-layout dense maps: compose / invert (C++ helpers, torch, Python fallback).
- ``overlap_cpu``: patch overlap counts of packed paths on CPU cores (the C++ kernel; loaders' workers use it).
"""
from copynce_fast.pixtrace import stages
from copynce_fast.pixtrace.batch import PackedPaths, correspondence_map, map_pixels, pack_pairs, pack_paths
from copynce_fast.pixtrace.dense import compose_dense, invert_dense, reference_correspondence
from copynce_fast.pixtrace.overlap_cpu import patch_overlap_cpu
from copynce_fast.pixtrace.view import SNAP, TracePath, View, trace_path

__all__ = ["stages", "View", "TracePath", "trace_path", "SNAP", "PackedPaths", "pack_paths", "pack_pairs",
           "map_pixels", "correspondence_map", "invert_dense", "compose_dense",
           "reference_correspondence", "patch_overlap_cpu"]
