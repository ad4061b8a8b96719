"""transformers' own shared test mixins (`ModelTesterMixin`, `ConfigTester`, `ProcessorTesterMixin`) for the installed
transformers version, fetched once with pip and imported from an ignored cache folder.

The mixins ship in the `tests/` folder of transformers' source distribution on PyPI. That folder holds the
`test_*_common.py` files but not four helper modules they import, which live elsewhere in the transformers
repository; `HELPER_MODULES` stands in for them with what the three mixins need (see each entry).
"""

import importlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers


CACHE_DIR = Path(__file__).resolve().parent.parent / ".transformers-tests"
PACKAGE = "transformers_tests"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_processing_common.py")

HELPER_MODULES = {
    # Base class of ModelTesterMixin; its torch.export tests need models with a single exportable forward.
    f"{PACKAGE}/exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    # Only used to check that non-generative testers do NOT inherit it (AvigateModel cannot generate).
    f"{PACKAGE}/generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # ConfigTester reads these kwargs only for configs without sub-configs; AvigateConfig has three.
    f"{PACKAGE}/utils/test_configuration_utils.py": "config_common_kwargs = {}\n",
    # transformers' CI pre-downloads sample media; without them its helper returns the URL (the same fallback here).
    "utils/fetch_hub_objects_for_ci.py": (
        "def url_to_local_path(url, return_url_if_not_found=True):\n    return url\n"
    ),
}


def _download_sdist(version: str, destination: Path) -> Path:
    """The transformers `version` source distribution, downloaded by pip (the only network access)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"transformers=={version}", "--dest", str(destination)]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = list(destination.glob("transformers-*.tar.gz"))
    if result.returncode or not archives:
        raise RuntimeError(f"pip could not download the transformers {version} sdist: {result.stderr.strip()[-500:]}")
    return archives[0]


def _extract_common_tests(archive: Path, package_dir: Path) -> None:
    with tarfile.open(archive) as tar:
        for name in COMMON_FILES:
            member = tar.getmember(f"{archive.name.removesuffix('.tar.gz')}/tests/{name}")
            (package_dir / name).write_bytes(tar.extractfile(member).read())


def ensure_transformers_tests(cache_dir: Path = CACHE_DIR) -> Path:
    """Fetch the common test files of the installed transformers into `cache_dir` (once per version) and put it on
    `sys.path`, so `transformers_tests.test_modeling_common` imports. Returns the folder of that version."""
    version_dir = cache_dir / transformers.__version__
    if not (version_dir / PACKAGE / COMMON_FILES[-1]).exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Build in a sibling folder and rename it into place, so an interrupted fetch never leaves a partial copy.
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            staging = Path(scratch) / "tree"
            for module in ("", "exporters", "generation", "utils"):
                (staging / PACKAGE / module).mkdir(parents=True, exist_ok=True)
                (staging / PACKAGE / module / "__init__.py").touch()
            (staging / "utils").mkdir()
            for path, source in HELPER_MODULES.items():
                (staging / path).write_text(source)
            _extract_common_tests(_download_sdist(transformers.__version__, Path(scratch)), staging / PACKAGE)
            if version_dir.exists():
                raise RuntimeError(f"{version_dir} exists but lacks {COMMON_FILES[-1]}; remove it to fetch again")
            staging.rename(version_dir)
    if str(version_dir) not in sys.path:
        sys.path.insert(0, str(version_dir))
    importlib.invalidate_caches()
    return version_dir
