"""Inference with a trained model: images in (listing, decoding, preprocessing), descriptors out (resumable
extraction, torch or DALI decoding, on N ranks under torchrun), the scoring of one image pair (``compare``), and
the Python API over all of it (``CopyDetector``)."""
from copynce_fast.inference.compare import Comparison, compare
from copynce_fast.inference.detector import CopyDetector
from copynce_fast.inference.extract import ExtractResult, extract_features
from copynce_fast.inference.extract_dist import extract_features_distributed
from copynce_fast.inference.images import ImageItem, decode_image, list_images, load_image, normalize, preprocess

__all__ = ["Comparison", "compare", "CopyDetector", "ExtractResult", "extract_features", "extract_features_distributed",
           "ImageItem", "decode_image", "list_images", "load_image", "normalize", "preprocess"]
