"""Cost of `AvigateModel.get_audio_hidden_states` (the frozen AST part that feature caches store).

It runs AST through its own forward and captures only the last layer's state before the final LayerNorm
(`output_hidden_states=[-1]`), so accelerate's offloading hooks and dtype casting apply. The baseline runs AST's
embeddings and layers by hand (the previous implementation, which bypassed both). Both are timed interleaved in one
process, on the full-size AST (`ASTConfig()` defaults, random weights), without gradients.

Usage:

```bash
OMP_NUM_THREADS=1 python benchmarks/bench_audio_states.py --batch_size 2 --repeats 7
```

Prints the median and min time per call of each path, their ratio, whether the states agree, and the load average
(the machines are shared, so absolute times move with the load; the ratio is the figure to compare).
"""

import argparse
import os
import platform
import statistics
import time

import torch
from transformers import ASTConfig

from modeling_avigate import AvigateConfig, AvigateModel


def layers_by_hand(model: AvigateModel, input_values: torch.Tensor) -> torch.Tensor:
    """The baseline: AST's embeddings and layers called one by one."""
    hidden_states = model.audio_model.embeddings(input_values)
    for layer in model.audio_model.layers:
        hidden_states = layer(hidden_states, None)
    return hidden_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = AvigateConfig(audio_config=ASTConfig().to_dict())
    model = AvigateModel(config).eval()
    input_values = torch.randn(args.batch_size, config.audio_config.max_length, config.audio_config.num_mel_bins)
    paths = {"get_audio_hidden_states": model.get_audio_hidden_states,
             "layers by hand (baseline)": lambda values: layers_by_hand(model, values)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    with torch.no_grad():
        outputs = {name: path(input_values) for name, path in paths.items()}  # warm-up (hook installation)
        for _ in range(args.repeats):
            for name, path in paths.items():
                start = time.perf_counter()
                path(input_values)
                times[name].append(time.perf_counter() - start)

    same = torch.equal(*outputs.values())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()}")
    print(f"full-size AST, batch {args.batch_size}, {args.repeats} timed calls each, interleaved")
    print("| path | median s/call | min s/call |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} |")
    ratio = statistics.median(times["get_audio_hidden_states"]) / statistics.median(times["layers by hand (baseline)"])
    print(f"ratio (get_audio_hidden_states / baseline, medians): {ratio:.3f}; identical states: {same}")


if __name__ == "__main__":
    main()
