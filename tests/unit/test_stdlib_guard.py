"""``platform/`` is a source root, not a package: ``import platform`` must stay the stdlib's."""

from __future__ import annotations

import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_platform_source_root_is_not_a_package() -> None:
    assert (REPO / "platform" / "flywheel").is_dir()
    assert not (REPO / "platform" / "__init__.py").exists(), (
        "platform/__init__.py would shadow the standard library's platform module"
    )


def test_import_platform_gives_the_standard_library() -> None:
    assert callable(platform.python_version)
    module = Path(platform.__file__).resolve()
    assert module.parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert not module.is_relative_to(REPO)


def test_import_platform_from_the_repository_root_gives_the_standard_library() -> None:
    """``python -c`` puts the working directory first on sys.path, as a script in the repo would."""
    code = "import platform; print(platform.__file__); print(platform.python_version())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    module_file, version = result.stdout.splitlines()
    assert Path(module_file).resolve().parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert version == platform.python_version()
