"""Do the fast encoder precisions keep retrieval results? `evaluate_retrieval` on a benchmark split at each
`encoder_precision`, compared with fp32 in the same run.

Printed per precision: text→video and video→text R@1 (and its change from fp32, in points), the overlap of every
caption's text→video top-10 with the fp32 top-10 ("recall@10 vs fp32": the share of fp32's top 10 that the fast path
also returns in its top 10, averaged over captions), and the cosine of every real frame embedding to fp32 (mean/min).

    python benchmarks/bench_accuracy.py --model outputs/demo/avigate-synthetic --data-dir outputs/demo/data
    python benchmarks/bench_accuracy.py --random-full-size --model outputs/demo/avigate-synthetic \\
        --data-dir outputs/demo/data --max-videos 16      # random-init full-size model, the model folder's tokenizer
    python benchmarks/bench_accuracy.py ... --precisions int8 int8:audio int8:vision   # one encoder at a time

`PRECISION:audio` / `PRECISION:vision` runs only that encoder at the fast precision (the other stays fp32), to see
which one moves the rankings. How close the rankings are to begin with is printed too: the gap between each caption's
10th and 11th fp32 scores, against the score of its first.
"""

import argparse
import os


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from modeling_avigate import AvigateConfig, AvigateModel  # noqa: E402
from modeling_avigate.data import load_benchmark  # noqa: E402
from modeling_avigate.evaluation import evaluate_retrieval  # noqa: E402
from modeling_avigate.fast_inference import prepare_for_inference  # noqa: E402
from modeling_avigate.processors import AvigateProcessor  # noqa: E402


def random_full_size(processor: AvigateProcessor) -> tuple[AvigateModel, AvigateProcessor]:
    """`AvigateConfig()` at random init (seed 0) with the text ids of `processor`'s tokenizer, and a copy of the
    processor that makes CLIP's 224-pixel frames."""
    from modeling_avigate.processors import AvigateVideoProcessor

    tokenizer = processor.tokenizer
    text_ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AvigateModel(AvigateConfig(text_config=text_ids)).eval()
    full = AvigateProcessor(processor.feature_extractor,
                            AvigateVideoProcessor(num_frames=processor.video_processor.num_frames), tokenizer)
    return model, full


def top10_overlap(similarity: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over captions of |top10(similarity) ∩ top10(reference)| / 10."""
    k = min(10, similarity.shape[1])
    fast, slow = similarity.topk(k, dim=1).indices, reference.topk(k, dim=1).indices
    hits = (fast[:, :, None] == slow[:, None, :]).any(dim=2).float().sum(dim=1)
    return (hits / k).mean().item()


def with_fast_encoders(model: AvigateModel, variant: str) -> tuple[AvigateModel, str]:
    """`(model, encoder_precision)` for `evaluate_retrieval`: `PRECISION` as it is, or for `PRECISION:audio` /
    `PRECISION:vision` a copy whose other encoder is the fp32 one."""
    precision, _, only = variant.partition(":")
    if not only:
        return model, precision
    if only not in ("audio", "vision"):
        raise SystemExit(f"--precisions: {variant!r}: the part after ':' must be audio or vision")
    fast = prepare_for_inference(model, precision)
    keep_fp32 = "vision_model" if only == "audio" else "audio_model"
    setattr(fast, keep_fp32, getattr(model, keep_fp32))
    return fast, "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (its processor is used too)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--benchmark", default="synthetic")
    parser.add_argument("--split", default="test")
    parser.add_argument("--precisions", nargs="+", default=["int8", "bf16"])
    parser.add_argument("--random-full-size", action="store_true",
                        help="evaluate a random-init full-size model instead of --model's weights")
    parser.add_argument("--max-videos", type=int, help="only the first N videos of the split")
    args = parser.parse_args()

    processor = AvigateProcessor.from_pretrained(args.model)
    if args.random_full_size:
        model, processor = random_full_size(processor)
    else:
        model = AvigateModel.from_pretrained(args.model).eval()
    videos = load_benchmark(args.benchmark, args.data_dir, args.split, view="videos")
    if args.max_videos:
        videos = videos.select(range(min(args.max_videos, len(videos))))

    results = {}
    for variant in ["fp32", *args.precisions]:
        variant_model, precision = with_fast_encoders(model, variant)
        results[variant] = evaluate_retrieval(variant_model, processor, videos, batch_size=8, return_details=True,
                                              encoder_precision=precision)
    reference = results["fp32"]
    ranked = reference["similarity"].sort(dim=1, descending=True).values
    k = min(10, ranked.shape[1] - 1)
    gaps = ranked[:, k - 1] - ranked[:, k]
    real = reference["video_mask"].bool()
    size = "random-init full-size model" if args.random_full_size else args.model
    print(f"{size}; {args.benchmark}/{args.split}: {reference['num_videos']} videos, {reference['num_captions']} "
          f"captions; load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print(f"fp32 gap between each caption's rank-{k} and rank-{k + 1} scores: median {gaps.median().item():.5f}, "
          f"min {gaps.min().item():.6f} (rank-1 scores: median {ranked[:, 0].median().item():.3f})\n")
    print("| precision | t2v R@1 | Δ t2v R@1 (points) | v2t R@1 | Δ v2t R@1 (points) | t2v recall@10 vs fp32 | "
          "frame cosine to fp32 (mean / min) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for precision, result in results.items():
        t2v, v2t = result["text_to_video"]["R@1"], result["video_to_text"]["R@1"]
        cosine = torch.nn.functional.cosine_similarity(result["frame_embeds"][real], reference["frame_embeds"][real],
                                                       dim=-1)
        print(f"| {precision} | {t2v:.2f} | {t2v - reference['text_to_video']['R@1']:+.2f} | {v2t:.2f} | "
              f"{v2t - reference['video_to_text']['R@1']:+.2f} | "
              f"{top10_overlap(result['similarity'], reference['similarity']):.4f} | "
              f"{cosine.mean().item():.5f} / {cosine.min().item():.5f} |")


if __name__ == "__main__":
    main()
