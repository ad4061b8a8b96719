"""Packaging for modeling_avigate.

`processors/` and `hub/` live at the top of the repository (the design card's layout) but are installed
*under* `modeling_avigate`, so no generic top-level `processors` or `hub` module lands in site-packages.
"""

from setuptools import setup

TRAIN = ["accelerate>=1.0", "datasets>=3.0", "pyyaml>=6", "tensorboard>=2.14", "matplotlib>=3.7"]
EVAL = ["evaluate>=0.4"]
RETRIEVAL = ["faiss-cpu>=1.8"]
# httptools and uvloop: uvicorn's C parser and event loop, a third less server CPU per page query than its pure-Python
# defaults (docs/serve.md).
SERVE = ["gradio>=6,<7", "httptools>=0.6", "uvloop>=0.19; sys_platform != 'win32'"]
# parameterized: transformers' common test mixins (fetched by tests/transformers_common.py) import it.
# The browser test drives the system Chromium (Debian package `chromium`) through Playwright; no browser download.
TEST = ["pytest>=8", "soundfile>=0.12", "build>=1.0", "parameterized>=0.9", "playwright>=1.40", "httpx>=0.27"]
# benchmarks/bench_processor.py's comparison decoder; it also needs FFmpeg's shared libraries (Debian: ffmpeg), and
# should be installed with --no-deps next to an existing torch.
BENCH = ["torchcodec==0.13.0"]

setup(
    name="modeling-avigate",
    version="0.1.0",
    description="AVIGATE (CVPR 2025): audio-visual video-text retrieval with gated fusion, for Hugging Face transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "modeling_avigate",
        "modeling_avigate.commands",
        "modeling_avigate.data",
        "modeling_avigate.search",
        "modeling_avigate.serve",
        "modeling_avigate.training",
        "modeling_avigate.processors",
        "modeling_avigate.hub",
    ],
    package_dir={
        "modeling_avigate": "modeling_avigate",
        "modeling_avigate.processors": "processors",
        "modeling_avigate.hub": "hub",
    },
    package_data={"modeling_avigate": ["metrics/*/*.py", "data/*.json", "data/*.txt"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "tokenizers>=0.20",
        "safetensors>=0.4",
        "huggingface_hub>=0.30",
        "numpy>=1.24",
        "tqdm>=4.60",
        "pillow>=10",
        "av>=12",
    ],
    extras_require={
        "train": TRAIN,
        "eval": EVAL,
        "retrieval": RETRIEVAL,
        "bench": BENCH,
        "serve": SERVE,
        "test": TEST + TRAIN + EVAL + RETRIEVAL + SERVE,
        "all": TRAIN + EVAL + RETRIEVAL + SERVE,
    },
    entry_points={"console_scripts": ["avigate=modeling_avigate.cli:main"]},
)
