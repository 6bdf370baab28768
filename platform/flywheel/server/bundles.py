"""Code bundles: the gzipped tar of an experiment folder that ``submit`` uploads.

Every member is checked before anything is written: a path that is absolute or leaves the
folder (``..``), a link or a device file refuses the whole bundle with :class:`BundleError`.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from flywheel.errors import BundleError


def check_spec_file(spec_file: str) -> str:
    """The spec's file name inside the bundle: a plain relative path, or BundleError."""
    _check_member_name(spec_file)
    if not spec_file.endswith((".yaml", ".yml")):
        raise BundleError(f"spec file {spec_file!r} must be a .yaml or .yml file")
    return spec_file


def extract_bundle(archive: Path, folder: Path) -> Path:
    """Extract the tar.gz ``archive`` into the empty ``folder`` after checking every member."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"the code bundle is not a readable tar.gz archive: {e}") from e
    return folder


def _check_member(member: tarfile.TarInfo) -> None:
    _check_member_name(member.name)
    if not (member.isfile() or member.isdir()):
        raise BundleError(
            f"bundle member {member.name!r} is a link or a special file; only files and folders "
            "may be uploaded"
        )


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or ".." in path.parts:
        raise BundleError(f"bundle path {name!r} leaves the experiment folder; nothing was written")
