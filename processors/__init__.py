"""Preprocessing of AVIGATE: `AvigateProcessor` (captions + video files → model inputs) composed of its video
processor, audio feature extractor and tokenizer, and the PyAV decoding helpers. Datasets and batching live in
`modeling_avigate.pipeline`."""

from transformers import AutoFeatureExtractor, AutoProcessor
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from ..configuration_avigate import AvigateConfig
from .feature_extraction_avigate import AvigateFeatureExtractor
from .processing_avigate import AvigateProcessor
from .video_processing_avigate import AvigateVideoProcessor
from .decoding_types import DecodeSettings, MediaError, VideoSegment
from .frame_geometry import FrameResizer
from .frame_selection import sample_frame_indices, segment_count
from .video_io import decode_segments, probe_duration, read_video


# In-package classes for `Auto*.from_pretrained` on folders whose config says model_type "avigate"; saved folders
# also carry the source files (remote code) for users without this package.
AutoFeatureExtractor.register(AvigateConfig, AvigateFeatureExtractor)
AutoVideoProcessor.register(AvigateConfig, AvigateVideoProcessor)
AutoProcessor.register(AvigateConfig, AvigateProcessor)
AvigateFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
AvigateVideoProcessor.register_for_auto_class("AutoVideoProcessor")
AvigateProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AvigateFeatureExtractor",
    "AvigateProcessor",
    "AvigateVideoProcessor",
    "DecodeSettings",
    "FrameResizer",
    "MediaError",
    "VideoSegment",
    "decode_segments",
    "probe_duration",
    "read_video",
    "sample_frame_indices",
    "segment_count",
]
