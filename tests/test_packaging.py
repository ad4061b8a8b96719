"""The wheel built from the repository installs on its own and imports without the source tree."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from builders import REPO


# Everything a build needs from the working tree; local state (venv, caches, earlier builds) stays behind.
IGNORED = shutil.ignore_patterns(
    ".git", ".whl", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "outputs"
)

IMPORT_CHECK = """
import sys
from pathlib import Path

import modeling_avigate, modeling_avigate.processors, modeling_avigate.hub, modeling_avigate.cli
from modeling_avigate import AvigateConfig, AvigateModel

site = Path(sys.argv[1]).resolve()
for module in (modeling_avigate, modeling_avigate.processors, modeling_avigate.hub, modeling_avigate.commands):
    assert site in Path(module.__file__).resolve().parents, module.__file__
assert AvigateModel.config_class is AvigateConfig
assert "convert" in modeling_avigate.cli.build_parser().format_help()  # every command module shipped
"""


@pytest.mark.slow
def test_wheel_installs_and_imports_without_the_source_tree(tmp_path):
    # Build from a copy so the build never writes build/ or *.egg-info into the shared working tree. No build
    # isolation: it would download setuptools, and the tests run offline.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = wheels.glob("modeling_avigate-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "modeling_avigate/__init__.py",
        "modeling_avigate/configuration_avigate.py",
        "modeling_avigate/modeling_avigate.py",
        "modeling_avigate/processors/__init__.py",
        "modeling_avigate/hub/__init__.py",
        "modeling_avigate/commands/__init__.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    top_level = {name.split("/")[0] for name in names}
    assert top_level <= {"modeling_avigate"} | {name for name in top_level if name.endswith(".dist-info")}, top_level
    assert not any(name.startswith("tests/") for name in names)

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    assert not (site / "processors").exists() and not (site / "hub").exists(), "generic top-level packages installed"

    # `-s` hides user site-packages; the target folder goes first on the path so it shadows the editable install of
    # the repository, and the working directory is neutral so the source tree is not importable by accident.
    check = tmp_path / "check.py"
    check.write_text(IMPORT_CHECK)
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-s", str(check), str(site)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
