"""Public differentiable ops: a torch reference (``*_ref``) and a dispatching entry for each."""
from copynce_fast.ops._impl import resolve_impl
from copynce_fast.ops.asl import asymmetric_score, asymmetric_score_ref, norm_ratio_loss, norm_ratio_loss_ref
from copynce_fast.ops.copynce import copynce, copynce_ref, copynce_weights
from copynce_fast.ops.infonce import infonce, infonce_ref
from copynce_fast.ops.koleo import koleo, koleo_ref
from copynce_fast.ops.overlap import (patch_overlap, patch_overlap_from_dense, patch_overlap_from_dense_ref,
                                      patch_overlap_ref)

__all__ = ["resolve_impl", "copynce", "copynce_ref", "copynce_weights", "patch_overlap", "patch_overlap_ref",
           "patch_overlap_from_dense", "patch_overlap_from_dense_ref", "infonce", "infonce_ref", "koleo", "koleo_ref",
           "asymmetric_score", "asymmetric_score_ref", "norm_ratio_loss", "norm_ratio_loss_ref"]
