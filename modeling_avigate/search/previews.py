# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""What a search page shows about each indexed video besides its score: a poster frame, the times of the frames the
model saw (so a result can start playing at the frame that matched best) and the learned audio gates.

A [`VideoIndex`](modeling_avigate.search.VideoIndex) keeps one [`VideoPreviews`] in step with its videos and stores
it as `previews.safetensors` in the index folder:

- `poster_bytes` uint8 `[total]`: every poster, a small JPEG (longer side [`POSTER_SIZE`] pixels), end to end;
- `poster_offsets` int64 `[N + 1]`: poster `i` is `poster_bytes[offsets[i]:offsets[i + 1]]` (empty: none);
- `frame_times` float32 `[N, T]`: presentation time in seconds of each frame the model embedded (NaN = padding);
- `attn_gates` float32 `[N, L]`: the fusion layers' audio cross-attention gates (NaN = not recorded: an index
  built from raw embeddings).

Posters and frame times come from the same single decoding pass that gives the model its frames
(`modeling_avigate.embedding.embed_files`): each segment's middle embedded frame, upright, scaled by FFmpeg.

Example:

```python
>>> import numpy as np, torch
>>> previews = VideoPreviews([b"", b"\\xff\\xd8"], torch.tensor([[0.0, 1.0], [0.0, float("nan")]]),
...                          torch.full((2, 3), float("nan")))
>>> len(previews.select(torch.tensor([1]))), previews.poster(1)
(1, b'\\xff\\xd8')
```
"""

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ..embedding import POSTER_SIZE


POSTER_QUALITY = 80


@dataclass
class VideoPreviews:
    """Posters, embedded-frame times and audio gates of `N` videos, in index order (see the module docstring)."""

    posters: list[bytes]
    frame_times: torch.Tensor
    attn_gates: torch.Tensor

    def __post_init__(self):
        if not (len(self.posters) == self.frame_times.shape[0] == self.attn_gates.shape[0]):
            raise ValueError(f"{len(self.posters)} posters, {self.frame_times.shape[0]} frame-time rows and "
                             f"{self.attn_gates.shape[0]} gate rows")

    def __len__(self) -> int:
        return len(self.posters)

    @classmethod
    def empty(cls, num_videos: int, num_frames: int, num_gates: int = 0) -> "VideoPreviews":
        """`num_videos` videos without posters, frame times or gates (an index built from raw embeddings)."""
        return cls([b""] * num_videos, torch.full((num_videos, num_frames), float("nan")),
                   torch.full((num_videos, num_gates), float("nan")))

    def poster(self, position: int) -> bytes:
        """The JPEG poster of the video at `position` (`b""` when it has none)."""
        return self.posters[position]

    def select(self, positions: torch.Tensor) -> "VideoPreviews":
        """The previews of the videos at `positions`, in that order."""
        positions = positions.tolist()
        return VideoPreviews([self.posters[i] for i in positions], self.frame_times[positions],
                             self.attn_gates[positions])

    @classmethod
    def concat(cls, parts: Sequence["VideoPreviews"]) -> "VideoPreviews":
        """One `VideoPreviews` of all `parts` end to end; gate columns are padded with NaN to the widest part (an
        index from raw embeddings records none)."""
        num_gates = max(part.attn_gates.shape[1] for part in parts)
        gates = [torch.nn.functional.pad(part.attn_gates, (0, num_gates - part.attn_gates.shape[1]), value=float("nan"))
                 for part in parts]
        return cls([poster for part in parts for poster in part.posters],
                   torch.cat([part.frame_times for part in parts]), torch.cat(gates))

    def save(self, path: str | os.PathLike) -> None:
        """Write `previews.safetensors` (see the module docstring)."""
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(poster) for poster in self.posters])
        data = np.frombuffer(b"".join(self.posters), dtype=np.uint8)
        save_file({
            "poster_bytes": torch.from_numpy(data.copy()),
            "poster_offsets": torch.from_numpy(offsets),
            "frame_times": self.frame_times.float().contiguous(),
            "attn_gates": self.attn_gates.float().contiguous(),
        }, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VideoPreviews":
        """Read a file written by [`save`](VideoPreviews.save)."""
        tensors = load_file(os.fspath(path))
        data, offsets = tensors["poster_bytes"].numpy().tobytes(), tensors["poster_offsets"].tolist()
        posters = [data[start:stop] for start, stop in zip(offsets[:-1], offsets[1:])]
        return cls(posters, tensors["frame_times"], tensors["attn_gates"])


def encode_poster(frame: np.ndarray, size: int = POSTER_SIZE, quality: int = POSTER_QUALITY) -> bytes:
    """A JPEG of an RGB uint8 frame `[H, W, 3]` whose longer side is at most `size` pixels."""
    image = Image.fromarray(frame)
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
