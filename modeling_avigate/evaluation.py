"""Retrieval evaluation (DESIGN §6): every text and every video is embedded once, then scored with `similarity`."""

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .fast_inference import DEFAULT_ENCODER_PRECISION, EncoderPrecision, prepare_for_inference
from .feature_cache import FeatureCache
from .modeling_avigate import AvigateModel
from .retrieval_metrics import text_video_retrieval_metrics
from .training_data import VideoFeatureDataset, video_batches


@torch.no_grad()
def embed_videos(
    model: AvigateModel,
    dataset: VideoFeatureDataset,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> dict:
    """Fused frame embeddings, masks and gates of every decodable video of `dataset`, in order, on the CPU."""
    model.eval()
    parts: dict[str, list] = {"video_id": [], "frame_embeds": [], "video_mask": [], "attn_gates": [], "ffn_gates": [],
                              "has_audio": []}
    for batch in video_batches(dataset, batch_size, num_workers, "embedding videos"):
        inputs = {name: batch[name].to(device) for name in
                  ("pixel_values", "video_mask", "input_values", "has_audio", "audio_hidden_states") if name in batch}
        outputs = model.get_video_features(**inputs)
        parts["video_id"].extend(batch["video_id"])
        parts["frame_embeds"].append(outputs.last_hidden_state.float().cpu())
        parts["video_mask"].append(outputs.video_mask.cpu())
        parts["attn_gates"].append(outputs.attn_gates.float().cpu())
        parts["ffn_gates"].append(outputs.ffn_gates.float().cpu())
        parts["has_audio"].append(batch["has_audio"].bool().cpu())
    return {name: values if name == "video_id" else torch.cat(values) for name, values in parts.items()}


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


@torch.no_grad()
def evaluate_retrieval(
    model: AvigateModel,
    processor,
    videos,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    frame_cache: FeatureCache | None = None,
    audio_cache: FeatureCache | None = None,
    device: torch.device | str = "cpu",
    dual_softmax_temperature: float | None = None,
    return_details: bool = False,
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION,
) -> dict:
    """Text→video and video→text R@1/5/10, MdR, MnR over a benchmark's `videos` view (one row per video with its
    `captions`). One caption per video gives the one-to-one protocol; several give the multi-caption protocol.

    With `return_details=True` the result also holds the score matrix, the caption→video index and every video's
    gates, for analyses split by clip kind. `dual_softmax_temperature` turns on the (labelled) dual-softmax
    re-normalisation; it is off by default. `encoder_precision` (`"fp32"`, `"int8"` on CPU, `"bf16"` on GPU) sets the
    precision of the frozen vision and audio encoders while the videos are embedded.
    """
    dataset = VideoFeatureDataset(videos["video_id"], videos["video"], processor, frame_cache, audio_cache)
    embedded = embed_videos(prepare_for_inference(model, encoder_precision), dataset, batch_size, num_workers, device)
    position = {video_id: index for index, video_id in enumerate(embedded["video_id"])}
    captions, caption_video = [], []
    for video_id, video_captions in zip(videos["video_id"], videos["captions"]):
        if video_id in position:
            captions.extend(video_captions)
            caption_video.extend([position[video_id]] * len(video_captions))
    text_embeds = embed_texts(model, processor, captions)
    model_device = next(model.parameters()).device
    similarity = model.similarity(
        text_embeds.to(model_device), embedded["frame_embeds"].to(model_device), embedded["video_mask"].to(model_device)
    ).float().cpu()
    caption_video = torch.tensor(caption_video)
    flat = text_video_retrieval_metrics(similarity.numpy(), caption_video.numpy(),
                                        dual_softmax_temperature=dual_softmax_temperature)
    # Keys are `t2v/R@1`, or `t2v+dsl/R@1` when the dual softmax is on (labelled by `test_time_renormalization`).
    result = {direction: {key.split("/", 1)[1]: value for key, value in flat.items()
                          if key.split("/", 1)[0] in (prefix, prefix + "+dsl")}
              for direction, prefix in (("text_to_video", "t2v"), ("video_to_text", "v2t"))}
    result["test_time_renormalization"] = None if dual_softmax_temperature is None else "dual_softmax"
    result["num_videos"], result["num_captions"] = len(position), len(captions)
    result["num_skipped_videos"] = len(videos["video_id"]) - len(position)
    if return_details:
        result.update(similarity=similarity, caption_video=caption_video, **embedded)
    return result
