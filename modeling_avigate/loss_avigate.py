# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""AVIGATE's contrastive loss: adaptive-margin symmetric InfoNCE over the contrastive batch of every process.

Shipped with the model as remote code next to modeling_avigate.py, so it imports nothing from the package.
"""

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


@torch.no_grad()
def adaptive_margin(
    text_embeds: torch.Tensor,
    visual_video_embeds: torch.Tensor,
    margin_scale: float,
    margin_max: float,
    rows: slice = slice(None),
) -> torch.Tensor:
    """`M_ij = min(λ_m (1 − (c^t_ij + c^v_ij) / 2), δ)`, `M_ii = 0`: pairs that already look alike get a small margin.
    `rows` selects the rows `i` computed (all by default); the columns are always every pair."""
    text_cosine = text_embeds[rows] @ text_embeds.T
    video_cosine = visual_video_embeds[rows] @ visual_video_embeds.T
    margin = (margin_scale * (1 - (text_cosine + video_cosine) / 2)).clamp(max=margin_max)
    own = torch.arange(margin.shape[0], device=margin.device)
    margin[own, own + (rows.start or 0)] = 0.0
    return margin


def symmetric_contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the text→video and video→text cross-entropies of square `logits` whose diagonal holds the positives."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2


def avigate_contrastive_loss(
    similarity: torch.Tensor,
    text_embeds: torch.Tensor,
    visual_video_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    margin_scale: float,
    margin_max: float,
) -> torch.Tensor:
    """Adaptive-margin symmetric InfoNCE over a batch of matching pairs: logits `S + σ·M`, M without gradient."""
    margin = adaptive_margin(text_embeds, visual_video_embeds, margin_scale, margin_max)
    return symmetric_contrastive_loss(similarity + logit_scale * margin)


class GatherWithGrad(torch.autograd.Function):
    """Concatenate a tensor from every process along dim 0, this process's own in its slot; backward gives each
    process the gradient of its slot summed over all processes (every process's loss depends on every slot)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rows = slice(dist.get_rank() * tensor.shape[0], (dist.get_rank() + 1) * tensor.shape[0])
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        parts[dist.get_rank()] = tensor
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rows]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class AvigateContrastiveLoss(nn.Module):
    r"""
    The AVIGATE loss over the contrastive batch of every process (the pattern of open_clip's `ClipLoss`): in a
    multi-process run each process gathers the others' embeddings, so every caption meets every video of the global
    batch. The gather carries gradients back to the process that owns each embedding, so with the processes' gradients
    averaged (DDP) an update equals that of one process holding the whole batch. In a multi-process run every process
    must call it, as with any collective. Scores and loss are computed in fp32, outside autocast.

    Args:
        similarity: the model's score, `similarity(text_embeds, video_embeds, frame_embeds, video_mask,
            logit_scale)` → `[Nt, Nv]`.
        margin_scale: λ_m of [`adaptive_margin`].
        margin_max: δ of [`adaptive_margin`].
        local_loss: score only this process's texts and videos against the gathered batch (`2 n N` scores instead of
            `N²` for `n` of `N` pairs per process). Each process's loss is then its rows' share, their mean over
            processes is the global loss, and the averaged gradients are the same.
    """

    def __init__(
        self,
        similarity: Callable[..., torch.Tensor],
        margin_scale: float,
        margin_max: float,
        local_loss: bool = False,
    ):
        super().__init__()
        self.similarity = similarity
        self.margin_scale = margin_scale
        self.margin_max = margin_max
        self.local_loss = local_loss

    def forward(
        self,
        text_embeds: torch.Tensor,
        video_embeds: torch.Tensor,
        frame_embeds: torch.Tensor,
        video_mask: torch.Tensor,
        visual_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of matching pairs (text i describes video i) and this process's `[n, n]` scores, which are the
        model's `logits_per_text` (computed once)."""
        with torch.autocast(text_embeds.device.type, enabled=False):
            local = [text_embeds.float(), video_embeds.float(), frame_embeds.float(), video_mask,
                     visual_embeds.float()]
            gathered = [GatherWithGrad.apply(tensor) for tensor in local] if is_distributed() else local
            rank = dist.get_rank() if is_distributed() else 0
            own = slice(rank * text_embeds.shape[0], (rank + 1) * text_embeds.shape[0])
            if self.local_loss:
                return self.local_rows_loss(local, gathered, logit_scale, own)
            texts, videos, frames, mask, visual = gathered
            similarity = self.similarity(texts, videos, frames, mask, logit_scale)
            loss = avigate_contrastive_loss(similarity, texts, visual, logit_scale, self.margin_scale,
                                            self.margin_max)
            return loss, similarity[own, own]

    def local_rows_loss(
        self, local: list[torch.Tensor], gathered: list[torch.Tensor], logit_scale: torch.Tensor, own: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`local_loss`: the cross-entropies of this process's rows `own` of the global logits `S + σ·M`, texts
        against every video and videos against every text (M is symmetric)."""
        texts, videos, frames, mask, visual = gathered
        text_rows = self.similarity(local[0], videos, frames, mask, logit_scale)
        video_rows = self.similarity(texts, *local[1:4], logit_scale).T
        margin = logit_scale * adaptive_margin(texts, visual, self.margin_scale, self.margin_max, own)
        labels = torch.arange(own.start, own.stop, device=margin.device)
        loss = (nn.functional.cross_entropy(text_rows + margin, labels)
                + nn.functional.cross_entropy(video_rows + margin, labels)) / 2
        return loss, text_rows[:, own]


__all__ = ["AvigateContrastiveLoss", "adaptive_margin", "avigate_contrastive_loss", "symmetric_contrastive_loss"]
