#!/usr/bin/env python
"""Evaluate a saved AVIGATE model on a benchmark split: every text and every video embedded once.

    python examples/evaluate.py --model outputs/avigate-msrvtt/best --benchmark msrvtt --data_dir data/msrvtt
    python examples/evaluate.py --model outputs/demo/avigate-synthetic --benchmark synthetic \\
        --data_dir outputs/demo/data --split test --output metrics.json
"""

import argparse
import json

import torch

from modeling_avigate import AvigateModel, AvigateProcessor
from modeling_avigate.data import load_benchmark
from modeling_avigate.evaluation import evaluate_retrieval


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder or Hub id with the model and its processor")
    parser.add_argument("--benchmark", required=True, choices=["msrvtt", "vatex", "charades", "synthetic"])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--dual_softmax_temperature", type=float, default=None,
                        help="turn on the (labelled) dual-softmax re-normalisation; off by default")
    parser.add_argument("--output", help="write the metrics JSON here")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AvigateModel.from_pretrained(args.model).to(device)
    processor = AvigateProcessor.from_pretrained(args.model)
    videos = load_benchmark(args.benchmark, args.data_dir, args.split, view="videos")
    metrics = evaluate_retrieval(model, processor, videos, batch_size=args.batch_size, num_workers=args.num_workers,
                                 device=device, dual_softmax_temperature=args.dual_softmax_temperature)
    result = {"dataset": args.benchmark, "split": args.split, **metrics}
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
