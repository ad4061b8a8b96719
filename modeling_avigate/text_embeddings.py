# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Text embeddings for retrieval, shared by evaluation, the search index and the demo."""

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .modeling_avigate import AvigateModel


@torch.no_grad()
def embed_texts(model: AvigateModel, processor, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings `[Nt, D]` (float32, on the CPU); a progress bar only for several batches."""
    model.eval()
    embeds = []
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="embedding texts", leave=False, disable=len(batches) <= 1):
        tokens = processor(text=list(texts[start : start + batch_size]), return_tensors="pt")
        input_ids, attention_mask = tokens["input_ids"].to(model.device), tokens["attention_mask"].to(model.device)
        outputs = model.get_text_features(input_ids, attention_mask)
        embeds.append(outputs.pooler_output.float().cpu())
    return torch.cat(embeds)
