"""Finding Python interpreters on this machine, and making job virtualenvs from them.

``python: X.Y`` in a workflow is answered from where people keep interpreters: ``PATH``,
pyenv (``$PYENV_ROOT/versions``), uv (``~/.local/share/uv/python``), conda environments, and
the usual system folders. A candidate counts only after it has been run and has said its own
version: a pyenv shim for a version that is not active is on PATH but fails, so it is skipped.
Probe results are cached by the interpreter's path, size and mtime.

A job virtualenv is a ``pyvenv.cfg`` and a ``bin/python`` symlink (that is all a venv is), so
making one costs a millisecond. ``pip`` and the workflow's ``requirements`` come from a cached
*base environment* per (interpreter, requirements), made once with ``python -m venv`` and layered
under the job's venv through a ``.pth`` file; whatever the job itself installs lands in its own
venv and is thrown away with it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dstack.errors import ComputeError

_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # X.Y.Z

    @property
    def short(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def matches(self, wanted: str) -> bool:
        return self.version == wanted or self.short == wanted


def find_interpreter(wanted: str | None, cache_dir: Path) -> Interpreter:
    """The interpreter for ``python: wanted`` (``None`` = the one running dstack).

    Raises ``ComputeError`` naming the versions that are installed when none matches.
    """
    if wanted is None:
        return current_interpreter()
    wanted = wanted.strip()
    if not _VERSION.match(wanted):
        raise ComputeError(f"python: {wanted!r} is not a version like 3.10 or 3.10.4")
    cache = _ProbeCache(cache_dir / "pythons.json")
    current = current_interpreter()
    if current.matches(wanted):
        return current
    seen: list[Interpreter] = []
    for candidate in _candidates(wanted):
        found = cache.probe(candidate)
        if found is None:
            continue
        if found.matches(wanted):
            cache.save()
            return found
        seen.append(found)
    for candidate in _candidates(None):
        found = cache.probe(candidate)
        if found is not None:
            if found.matches(wanted):
                cache.save()
                return found
            seen.append(found)
    cache.save()
    versions = sorted({i.short for i in [*seen, current]}, key=_version_key)
    raise ComputeError(
        f"python: {wanted} is not installed on this machine (found: {', '.join(versions)}); "
        f"install it (e.g. `pyenv install {wanted}`) or pick one of those"
    )


def current_interpreter() -> Interpreter:
    base = getattr(sys, "_base_executable", None) or sys.executable
    major, minor, micro = sys.version_info[:3]
    return Interpreter(path=base, version=f"{major}.{minor}.{micro}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _candidates(wanted: str | None) -> list[str]:
    """Paths worth probing, most likely first. With ``wanted``, only names that suggest it."""
    home = Path.home()
    names: list[str] = []
    short = ".".join(wanted.split(".")[:2]) if wanted else None
    if short:
        names += [p for p in (shutil.which(f"python{short}"),) if p]
    else:
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            names += sorted(glob.glob(os.path.join(directory, "python3*")))
            names += sorted(glob.glob(os.path.join(directory, "python")))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", home / ".pyenv"))
    uv_root = Path(os.environ.get("UV_PYTHON_INSTALL_DIR", home / ".local/share/uv/python"))
    roots = [
        (pyenv_root / "versions", "{v}*", "bin/python"),
        (uv_root, "cpython-{v}*", "bin/python3"),
        (home / "miniconda3/envs", "*", "bin/python"),
        (home / "anaconda3/envs", "*", "bin/python"),
        (home / "miniforge3/envs", "*", "bin/python"),
        (Path("/opt/conda/envs"), "*", "bin/python"),
    ]
    for root, pattern, exe in roots:
        glob_pattern = pattern.format(v=short or "")
        for folder in sorted(root.glob(glob_pattern), reverse=True):
            names.append(str(folder / exe))
    for conda_base in (home / "miniconda3", home / "anaconda3", home / "miniforge3"):
        names.append(str(conda_base / "bin/python"))
    if short:
        names += [f"/usr/bin/python{short}", f"/usr/local/bin/python{short}"]
    unique: list[str] = []
    for name in names:
        if name not in unique and os.path.isfile(name) and os.access(name, os.X_OK):
            unique.append(name)
    return unique


class _ProbeCache:
    """Remembers what each interpreter said, keyed by path, size and mtime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dirty = False
        try:
            self.entries: dict[str, dict[str, object]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def probe(self, exe: str) -> Interpreter | None:
        try:
            st = os.stat(exe)
        except OSError:
            return None
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        entry = self.entries.get(exe)
        if entry and entry.get("stamp") == stamp:
            version = entry.get("version")
            return Interpreter(exe, str(version)) if version else None
        version = _run_probe(exe)
        self.entries[exe] = {"stamp": stamp, "version": version}
        self.dirty = True
        return Interpreter(exe, version) if version else None

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs a re-probe


def _run_probe(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", _PROBE], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and _VERSION.match(version) else None


# ---- virtualenvs ---------------------------------------------------------------------------


def base_env_dir(interpreter: Interpreter, requirements: bytes | None, cache_dir: Path) -> Path:
    digest = hashlib.sha256(
        f"{interpreter.path}\0{interpreter.version}\0".encode() + (requirements or b"")
    ).hexdigest()[:16]
    return cache_dir / "envs" / f"py{interpreter.short}-{digest}"


def make_job_venv(interpreter: Interpreter, venv: Path, base_env: Path | None) -> None:
    """Create a venv for one job at ``venv``, layered over ``base_env`` (pip, requirements)."""
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    home = str(Path(interpreter.path).parent)
    (venv / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = {interpreter.version}\n"
    )
    target = os.path.realpath(interpreter.path)
    for name in ("python", "python3", f"python{interpreter.short}"):
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(target)
    site = venv / "lib" / f"python{interpreter.short}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    if base_env is None:
        return
    base_site = base_env / "lib" / f"python{interpreter.short}" / "site-packages"
    (site / "_dstack_base.pth").write_text(f"import site; site.addsitedir({str(base_site)!r})\n")
    for name in ("pip", "pip3", f"pip{interpreter.short}"):
        script = bin_dir / name
        script.write_text(
            f"#!{bin_dir / 'python'}\nimport sys\nfrom pip._internal.cli.main import main\n"
            "sys.exit(main())\n"
        )
        script.chmod(0o755)


def base_env_ready(base_env: Path) -> bool:
    return (base_env / ".dstack-ready").exists()


def mark_base_env_ready(base_env: Path) -> None:
    (base_env / ".dstack-ready").write_text("ok\n")
