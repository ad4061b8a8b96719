# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Frame geometry of the decoder: resize so the shorter side is `shortest_edge` and centre-crop (CLIP's image
processor rule) with FFmpeg's scaler, turning frames upright; and the small upright poster frame."""

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image


# PIL resampling filters (what image processors store) → FFmpeg scaler filters.
PIL_TO_SWSCALE = {
    Image.Resampling.NEAREST: "POINT",
    Image.Resampling.BILINEAR: "BILINEAR",
    Image.Resampling.BICUBIC: "BICUBIC",
    Image.Resampling.LANCZOS: "LANCZOS",
    Image.Resampling.BOX: "AREA",
}


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """`(height, width)` with the shorter side equal to `shortest_edge`, rounded as CLIP's image processor does."""
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


class FrameResizer:
    """Resize frames so the shorter side is `shortest_edge`, centre-crop `crop_size = (height, width)`, return RGB
    uint8 `[height, width, 3]`; the geometry of CLIP's image processor, computed by FFmpeg's scaler. A rotation
    (from the file's display matrix) is applied before the crop, so the geometry is that of the upright frame.

    The frame is first converted to packed RGB at full size (the conversion any RGB decode does), then scaled in RGB:
    scaling YUV straight to the target size strays further from a PIL resize of the decoded image. Planar RGB
    (`gbrp`) is avoided: PyAV's conversion to it read uninitialised row padding on small frames (40×32), giving
    different pixels on every call. Both scaler contexts are cached, which is most of the cost on small frames.

    Example:

    ```python
    >>> import av, numpy as np
    >>> resizer = FrameResizer(shortest_edge=32, crop_size=(32, 32))
    >>> resizer(av.VideoFrame.from_ndarray(np.zeros((61, 97, 3), np.uint8), format="rgb24")).shape
    (32, 32, 3)
    ```
    """

    def __init__(self, shortest_edge: int, crop_size: tuple[int, int], interpolation: str = "BICUBIC"):
        self.shortest_edge = shortest_edge
        self.crop_size = crop_size
        self.interpolation = interpolation
        self._to_rgb = VideoReformatter()
        self._scale = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, rotation: int = 0) -> np.ndarray:
        """The frame resized, turned `rotation` degrees counter-clockwise (a multiple of 90) and cropped."""
        quarter_turns = (rotation // 90) % 4
        # Resize in the stored orientation to the size the displayed frame gets, then turn the small image.
        height, width = (frame.width, frame.height) if quarter_turns % 2 else (frame.height, frame.width)
        new_height, new_width = resize_output_size(height, width, self.shortest_edge)
        if quarter_turns % 2:
            new_height, new_width = new_width, new_height
        rgb = self._to_rgb.reformat(frame, format="rgb24")
        image = self._scale.reformat(
            rgb, width=new_width, height=new_height, format="rgb24", interpolation=self.interpolation
        ).to_ndarray()
        return center_crop(np.rot90(image, quarter_turns), self.crop_size)


def center_crop(image: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Centre crop `[H, W, C]` to `crop_size = (height, width)`, zero-padding around a smaller image (the rule of
    transformers' `center_crop`)."""
    crop_height, crop_width = crop_size
    height, width = image.shape[:2]
    if crop_height > height or crop_width > width:
        padded = np.zeros((max(crop_height, height), max(crop_width, width), image.shape[2]), dtype=image.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = image
        image, height, width = padded, padded.shape[0], padded.shape[1]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return image[top : top + crop_height, left : left + crop_width]


class PosterScaler:
    """Upright RGB uint8 frames with the longer side at most `size`, scaled by FFmpeg from the decoded frame."""

    def __init__(self, size: int):
        self.size = size
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, rotation: int = 0) -> np.ndarray:
        scale = min(1.0, self.size / max(frame.width, frame.height))
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        image = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                           interpolation="BICUBIC").to_ndarray()
        return np.ascontiguousarray(np.rot90(image, (rotation // 90) % 4))
