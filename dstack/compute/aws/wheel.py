"""This very dstack as a wheel, stored in the bucket so instances install the CLI's own code.

The wheel is built from the files of the imported ``dstack`` package (so an editable checkout
ships its working tree, and an installed dstack ships itself), with the installed
distribution's requirements. It is deterministic — sorted entries, fixed timestamps — so its
digest names it: ``dist/<digest>/dstack-<version>-py3-none-any.whl``, uploaded once; an
object found at that key is verified against the wheel, never trusted by its name.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dstack import __version__, state
from dstack.errors import AlreadyExistsError
from dstack.storage.base import Storage

_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Wheel:
    filename: str
    data: bytes
    digest: str

    @property
    def sha256(self) -> str:
        """The full SHA-256 of the wheel, hex: what an instance checks the download against."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def key(self) -> str:
        """Its key in the store (relative to the store's prefix)."""
        return state.wheel_key(self.digest, self.filename)


def build_wheel(package_dir: Path | None = None, version: str = __version__) -> Wheel:
    """The wheel of the ``dstack`` package found at ``package_dir`` (default: this one), with
    the ``stacks`` package beside it when there is one."""
    root = package_dir or Path(__file__).resolve().parents[2]
    dist_info = f"dstack-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for package in (root, root.parent / "stacks"):
        if not package.is_dir():
            continue
        for path in sorted(package.rglob("*")):
            relative = path.relative_to(root.parent)
            if path.is_dir() or _skipped(relative):
                continue
            entries.append((relative.as_posix(), path.read_bytes()))
    entries.append((f"{dist_info}/METADATA", _metadata(version).encode()))
    entries.append((f"{dist_info}/WHEEL", _WHEEL.encode()))
    entries.append((f"{dist_info}/entry_points.txt", _ENTRY_POINTS.encode()))
    record = "".join(f"{name},{_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = buffer.getvalue()
    return Wheel(
        filename=f"dstack-{version}-py3-none-any.whl",
        data=data,
        digest=hashlib.sha256(data).hexdigest()[:20],
    )


def ensure_wheel(storage: Storage, wheel: Wheel | None = None) -> Wheel:
    """Store the wheel under its digest; an object already at that key is read and compared
    byte for byte, never trusted by its name: another bucket user may have put anything there.
    A different object is replaced by the real wheel (the key names its content, so there is
    only one right content)."""
    wheel = wheel or build_wheel()
    stored = storage.get_or_none(wheel.key)
    if stored is None:
        try:
            storage.put(wheel.key, wheel.data, if_absent=True)
            return wheel
        except AlreadyExistsError:  # someone put one meanwhile: verified below
            stored = storage.get_or_none(wheel.key) or b""
    if hashlib.sha256(stored).hexdigest() != wheel.sha256:
        storage.put(wheel.key, wheel.data)
    return wheel


def boto3_requirement() -> str:
    """The boto3 requirement of dstack's ``aws`` extra (what the instance installs first)."""
    for requirement in _requirements():
        name = requirement.split(";", 1)[0].strip()
        if name.lower().startswith("boto3"):
            return name.replace(" ", "")
    return "boto3"


def python_version() -> str:
    """X.Y of this Python: the runner's Python on an instance, for which the pins resolve."""
    import sys

    return f"{sys.version_info.major}.{sys.version_info.minor}"


def pinned_requirements() -> list[str]:
    """``name==version`` of every package the runner installs (dstack's dependencies and boto3,
    with theirs), at the versions this CLI runs with: the instance's pip constraints, so every
    instance installs what the submitter tested. Packages not installed here (another
    platform's, or another Python's) are left unconstrained."""
    import re
    from importlib import metadata

    wanted = [r for r in _requirements() if "extra" not in r.split(";", 1)[-1]] + ["boto3"]
    pins: dict[str, str] = {}
    while wanted:
        requirement = wanted.pop()
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if not match:
            continue
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        wanted.extend(r for r in dist.requires or [] if "extra ==" not in r)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _skipped(relative: Path) -> bool:
    return bool(_SKIPPED_DIRS.intersection(relative.parts)) or relative.name.endswith(
        _SKIPPED_SUFFIXES
    )


def _metadata(version: str) -> str:
    lines = ["Metadata-Version: 2.1", "Name: dstack", f"Version: {version}"]
    lines.extend(f"Requires-Dist: {requirement}" for requirement in _requirements())
    return "\n".join(lines) + "\n"


def _requirements() -> list[str]:
    from importlib import metadata

    try:
        return list(metadata.requires("dstack") or [])
    except metadata.PackageNotFoundError:
        return []


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


_WHEEL = "Wheel-Version: 1.0\nGenerator: dstack\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
_ENTRY_POINTS = "[console_scripts]\ndstack = dstack.cli.main:main\n"
