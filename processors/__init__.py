"""Preprocessing of AVIGATE: `AvigateProcessor` (captions + video files → model inputs), its audio feature
extractor and the PyAV decoding helpers. Datasets and batching live in `modeling_avigate.pipeline`."""

from transformers import AutoFeatureExtractor, AutoProcessor

from ..configuration_avigate import AvigateConfig
from .feature_extraction_avigate import AvigateFeatureExtractor
from .processing_avigate import AvigateProcessor
from .video_io import (
    DecodeSettings,
    FrameResizer,
    MediaError,
    VideoSegment,
    decode_segments,
    read_frame_at,
    read_video,
    sample_frame_indices,
    sampled_frame_times,
)


# In-package classes for `Auto*.from_pretrained` on folders whose config says model_type "avigate"; saved folders
# also carry the source files (remote code) for users without this package.
AutoFeatureExtractor.register(AvigateConfig, AvigateFeatureExtractor)
AutoProcessor.register(AvigateConfig, AvigateProcessor)
AvigateFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
AvigateProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AvigateFeatureExtractor",
    "AvigateProcessor",
    "DecodeSettings",
    "FrameResizer",
    "MediaError",
    "VideoSegment",
    "decode_segments",
    "read_frame_at",
    "read_video",
    "sample_frame_indices",
    "sampled_frame_times",
]
