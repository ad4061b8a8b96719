"""Retrieval evaluation: every text and every video is embedded once, then scored with `similarity`."""

import torch

from .embedding import EmbeddingOptions, embed_gallery, embed_texts
from .fast_inference import DEFAULT_ENCODER_PRECISION, EncoderPrecision
from .feature_cache import FeatureCache
from .modeling_avigate import AvigateModel
from .retrieval_metrics import text_video_retrieval_metrics


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
    device: torch.device | str | None = None,
    dual_softmax_temperature: float | None = None,
    return_details: bool = False,
    strict: bool = False,
    progress: bool = True,
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION,
) -> dict:
    """Text→video and video→text R@1/5/10, MdR, MnR over a benchmark's `videos` view (one row per video with its
    `captions`). One caption per video gives the one-to-one protocol; several give the multi-caption protocol.

    With `return_details=True` the result also holds the score matrix, the caption→video index and every video's
    gates, for analyses split by clip kind. `dual_softmax_temperature` turns on the (labelled) dual-softmax
    re-normalisation; it is off by default. `encoder_precision` (`"fp32"`, `"int8"` or `"int8-audio"` on CPU, `"bf16"`
    on GPU) sets the precision of the frozen vision and audio encoders while the videos are embedded.

    Videos whose file cannot be used are skipped with their captions and listed in `skipped_videos` (path and
    reason); `strict=True` raises the first one's `MediaError` instead. The model runs on its own device (`device`,
    when given, moves it there first).
    """
    if device is not None:
        model.to(device)
    options = EmbeddingOptions(batch_size=batch_size, num_workers=num_workers, strict=strict, progress=progress,
                               encoder_precision=encoder_precision, frame_cache=frame_cache, audio_cache=audio_cache)
    gallery = embed_gallery(model, processor, videos, options)
    position = {video_id: index for index, video_id in enumerate(gallery.video_ids)}
    captions, caption_video = [], []
    for video_id, video_captions in zip(videos["video_id"], videos["captions"]):
        if video_id in position:
            captions.extend(video_captions)
            caption_video.extend([position[video_id]] * len(video_captions))
    text_embeds = embed_texts(model, processor, captions)
    model_device = next(model.parameters()).device
    similarity = model.similarity(
        text_embeds.to(model_device), gallery.frame_embeds.to(model_device), gallery.video_mask.to(model_device)
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
    result["skipped_videos"] = [{"path": item.path, "reason": item.reason} for item in gallery.skipped]
    if return_details:
        result.update(similarity=similarity, caption_video=caption_video, frame_embeds=gallery.frame_embeds,
                      video_mask=gallery.video_mask, attn_gates=gallery.attn_gates, ffn_gates=gallery.ffn_gates,
                      has_audio=gallery.has_audio, video_id=gallery.video_ids)
    return result
