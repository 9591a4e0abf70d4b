"""The augmentation zoo as plans, and the executors that render them.

- ``presets``: AugmentConfig and the reference's descriptor / matcher presets.
- ``plan`` / ``sampler``: AugmentPlans (geometry as pixtrace stages, photometric ops, overlays, occluders),
  drawn from seeded generators.
- ``geometry``: composed warps, canvas tests and layer weights an executor renders with.
- ``executor_torch``: the CPU (torch) executor; ``dali`` (imported lazily): the DALI executor, CPU and GPU.
- ``sources``: image sources with robust decoding; ``synthetic``: procedural and coordinate images.
- ``loader``: PairKey, batch samplers, the torch pair dataset / loader and the batch dict.
"""
from copynce_fast.data.loader import (CopyPairDataset, EpochBatchSampler, NeighbourBatchSampler, PairKey, PairLoader,
                                      collate_pairs, to_device)
from copynce_fast.data.plan import AugmentPlan, Occluder, Overlay, PhotoOp, reference_plan
from copynce_fast.data.presets import AugmentConfig, descriptor_preset, matcher_preset, plain_preset
from copynce_fast.data.sampler import PairPlan, sample_pair, sample_query_plan
from copynce_fast.data.sources import (DecodeLimits, ImageSource, SkipCounter, bundled_source, disc21_source,
                                       file_list_source, folder_source, synthetic_source)
from copynce_fast.data.synthetic import synthetic_images

__all__ = ["AugmentConfig", "descriptor_preset", "matcher_preset", "plain_preset", "AugmentPlan", "PhotoOp",
           "Occluder", "Overlay", "reference_plan", "PairPlan", "sample_pair", "sample_query_plan", "PairKey",
           "EpochBatchSampler", "NeighbourBatchSampler", "CopyPairDataset", "PairLoader", "collate_pairs", "to_device",
           "DecodeLimits",
           "ImageSource", "SkipCounter", "folder_source", "file_list_source", "disc21_source", "bundled_source",
           "synthetic_source", "synthetic_images"]
