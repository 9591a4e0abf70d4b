"""Inference with a trained model: images in (listing, decoding, preprocessing), descriptors out (resumable
extraction, torch or DALI decoding), and the scoring of one image pair (``compare``)."""
from copynce_fast.inference.compare import Comparison, compare
from copynce_fast.inference.extract import ExtractResult, extract_features
from copynce_fast.inference.images import ImageItem, decode_image, list_images, load_image, normalize, preprocess

__all__ = ["Comparison", "compare", "ExtractResult", "extract_features", "ImageItem", "decode_image", "list_images",
           "load_image", "normalize", "preprocess"]
