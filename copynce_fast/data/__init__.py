"""The augmentation zoo as plans, and the executors that render them.

- ``presets``: AugmentConfig and the reference's descriptor / matcher presets.
- ``plan``: AugmentPlans as data (geometry as pixtrace stages, photometric ops, overlays, occluders);
  ``plan_sampler``: draws them from seeded generators; ``siblings``: pairs of two disjoint parts of one original;
  ``pair_of_key``: the PairPlan a PairKey names (``plan_pair``, over both samplers).
- ``geometry``, ``photometric``, ``occluders``, ``resize``, ``glyphs``: what an executor renders with (composed
  warps, canvas tests, layer weights; colour ops; occluder layers; the antialiased resize; text from cached
  glyphs); ``occluder_mask``: the occluder mask / traced view of a plan.
- ``executor_torch``: the torch executor (``warp_cpp``: its C++ view warp).
- ``batch_samplers``: which PairKeys make each batch; ``batch``: the batch dict, collation, ImageNet normalisation.
- ``torch_loader``: the torch pair dataset / loader; ``dali_loader`` (imported lazily, ``dali_feed`` its host
  side): the DALI loader, CPU and GPU, yielding the same batches.
- ``sources``: image sources with robust decoding (``decode``, ``jpeg_header``) and the one grammar for where images are (``open_source``);
  ``synthetic``: procedural and coordinate images; ``supervised``: known copy pairs for fine-tuning.
"""
from copynce_fast.data.batch import IMAGENET_MEAN, IMAGENET_STD, collate_pairs, normalise_images, to_device
from copynce_fast.data.batch_samplers import EpochBatchSampler, NeighbourBatchSampler
from copynce_fast.data.plan import AugmentPlan, Occluder, Overlay, PhotoOp, reference_plan
from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan_sampler import PairKey, PairPlan, sample_pair, sample_query_plan
from copynce_fast.data.presets import AugmentConfig, descriptor_preset, matcher_preset, plain_preset
from copynce_fast.data.decode import BadImage, DecodeLimits, decode_bytes
from copynce_fast.data.sources import (DISC21_SPLITS, FileSource, ImageSource, SkipCounter, bundled_source,
                                       disc21_source, file_list_source, folder_source, open_source, synthetic_source)
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.data.torch_loader import CopyPairDataset, PairLoader

__all__ = ["AugmentConfig", "descriptor_preset", "matcher_preset", "plain_preset", "AugmentPlan", "PhotoOp",
           "Occluder", "Overlay", "reference_plan", "PairPlan", "sample_pair", "sample_query_plan", "PairKey",
           "plan_pair", "EpochBatchSampler", "NeighbourBatchSampler", "CopyPairDataset", "PairLoader",
           "collate_pairs", "to_device", "normalise_images", "IMAGENET_MEAN", "IMAGENET_STD",
           "BadImage", "DecodeLimits", "decode_bytes", "FileSource", "open_source", "DISC21_SPLITS",
           "ImageSource", "SkipCounter", "folder_source", "file_list_source", "disc21_source", "bundled_source",
           "synthetic_source", "synthetic_images"]
