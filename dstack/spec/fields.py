"""Value checks and field types of the workflow schema: how each property's input forms are
accepted, checked and normalised (sizes, env, paths, versions, names, expressions), and what the
JSON Schema shows for them. ``dstack.spec.models`` builds the workflow models from these."""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from dstack.units import parse_size_mib

EXPRESSIONS = ("run.args", "run.name")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


class YamlFloat(float):
    """A float read from YAML that remembers its text, so `python: 3.10` stays ``3.10``."""

    yaml_text: str = ""


# ---------------------------------------------------------------- value checks (BeforeValidators)


def scalar_text(value: Any) -> str:
    """A YAML scalar as the text the user wrote (``3.10`` not ``3.1``, ``true`` not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlFloat) and value.yaml_text:
        return value.yaml_text
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"expected a string, got {_kind(value)} {value!r}")


def check_expressions(text: str) -> str:
    """Reject `${{ … }}` expressions other than ``run.args`` and ``run.name``."""
    for expression in EXPRESSION.findall(text):
        if expression not in EXPRESSIONS:
            hint = suggest(expression, EXPRESSIONS)
            raise ValueError(
                f"unknown expression '${{{{ {expression} }}}}'{hint} "
                "(known: ${{ run.args }}, ${{ run.name }})"
            )
    return text


def suggest(word: str, candidates: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or an empty string."""
    match = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _kind(value: Any) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return next((k for t, k in kinds.items() if isinstance(value, t)), "a number")


def _string_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # one multi-line string is one script
        return [check_expressions(value.rstrip())] if value.strip() else []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings or one string, got {_kind(value)}")
    for index, item in enumerate(value):
        if isinstance(item, dict):
            raise ValueError(
                f"item {index + 1} is a mapping, not a string: quote it, YAML reads ': ' as a key"
            )
        if not isinstance(item, str):
            raise ValueError(f"item {index + 1} is {_kind(item)}, not a string: {item!r}")
        check_expressions(item)
    return list(value)


def _args(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return check_expressions(value)
    if not isinstance(value, list):
        raise ValueError(f"expected a string or a list of strings, got {_kind(value)}")
    return [check_expressions(scalar_text(item)) for item in value]


def parse_env(value: Any) -> dict[str, str]:
    """`env` as a list of ``K=V`` strings or a mapping → ``{K: V}``.

    A list item ``NAME`` without ``=`` takes the value ``NAME`` has where the workflow is
    submitted (as ``docker run -e NAME`` does), or the empty string (the 2022 meaning)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = [(str(key), scalar_text(val)) for key, val in value.items()]
    elif isinstance(value, list):
        pairs = []
        for entry in value:
            if not isinstance(entry, str) or not entry.strip():
                raise ValueError(f"{entry!r} is not K=V (for example PYTHONPATH=src)")
            key, equals, val = entry.partition("=")
            pairs.append((key, val if equals else os.environ.get(key.strip(), "")))
    else:
        raise ValueError(f"expected a list of K=V strings or a mapping, got {_kind(value)}")
    for key, val in pairs:
        if not _ENV_NAME.match(key):
            raise ValueError(
                f"{key!r} is not a valid variable name (letters, digits and _, no leading digit)"
            )
        check_expressions(val)
    return dict(pairs)


def _whole_number(minimum: int) -> Any:
    expected = "a positive whole number" if minimum == 1 else "a whole number (0 or more)"

    def check(value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{value!r} is not {expected}")
        return value

    return check


def parse_size(value: Any) -> str:
    """A size like ``16GB`` (a bare number is MiB), checked, as text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a size like 512MB, 16GB or 1TB")
    try:
        parse_size_mib(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a size like 512MB, 16GB or 1TB") from None
    return f"{value}MB" if isinstance(value, int) else value.strip()


def _python_version(value: Any) -> str:
    text = scalar_text(value) if not isinstance(value, bool) else repr(value)
    if not _VERSION.match(text.strip()):
        raise ValueError(f"{text!r} is not a Python version like 3.10 or 3.11.4")
    return text.strip()


def relative_path(value: Any, *, within: str | None = "the working directory") -> str:
    """A relative path, normalised, that stays inside ``within`` (if given)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a path")
    text = value.strip()
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise ValueError(f"{text!r} is absolute; give a path relative to {within or 'working_dir'}")
    normal = posixpath.normpath(text.replace("\\", "/"))
    if within and (normal == ".." or normal.startswith("../")):
        raise ValueError(f"{text!r} escapes {within}")
    return normal


def artifact_path(value: Any) -> str:
    """An artifact: relative to the working directory, or absolute (``/root/.cache/x``: the
    2022 runner saved such folders too; see ``ABSOLUTE_FOLDER``)."""
    if isinstance(value, str) and value.strip().startswith("/"):
        normal = posixpath.normpath(value.strip())
        if normal in ("/", "//"):
            raise ValueError(f"{value!r} is the whole filesystem; name a folder")
        return normal
    return relative_path(value)


def _file_path(value: Any) -> str:
    return relative_path(value, within=None)  # may climb out of working_dir; see _check_inside_repo


def _working_dir(value: Any) -> str:
    return "." if value is None else relative_path(value, within="the repository")


def _image(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^\s]+", value.strip()):
        raise ValueError(f"{value!r} is not an image name like ubuntu:22.04")
    return value.strip()


MAX_NAME = 64  # a workflow name is part of store keys, whose parts must stay short

#: where absolute artifact paths live among a job's artifacts: ``/root/.cache/x`` is saved as
#: ``_absolute/root/.cache/x`` and placed back there, unless the machine lets it be written at
#: its own path (a fresh cloud instance)
ABSOLUTE_FOLDER = "_absolute"


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"{value!r} is not a name (letters, digits, '.', '_', '-')")
    if len(value) > MAX_NAME:
        raise ValueError(f"{value[:20]!r}… is {len(value)} characters; at most {MAX_NAME}")
    return value


# ----------------------------------------------------------------------------- field types

# What the JSON Schema shows for fields whose input forms differ from their normalised type.
_STR: dict[str, Any] = {"type": "string"}
_LIST_OR_STRING = {"anyOf": [_STR, {"type": "array", "items": _STR}]}
_SIZE = r"^\s*\d+(\.\d+)?\s*([kKmMgGtTpP]i?[bB]?)?\s*$"
_ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_ITEM = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(=[\s\S]*)?$"}
_ENV_VALUE = {"type": ["string", "number", "boolean", "null"]}
_ENV = {
    "anyOf": [
        {"type": "null"},
        {"type": "array", "items": _ENV_ITEM},
        {
            "type": "object",
            "propertyNames": {"pattern": _ENV_NAME_PATTERN},
            "additionalProperties": _ENV_VALUE,
        },
    ]
}
_DEP_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
#: `:TAG`, `WORKFLOW`, `OWNER/REPO/TAG` (another repo's)
DEP_TEXT = {"type": "string", "pattern": rf"^\s*(:?{_DEP_NAME}|[^/\s]+/[^/\s]+/:?{_DEP_NAME})\s*$"}
_DEP_MAPPINGS = [
    {
        "type": "object",
        "properties": {k: DEP_TEXT, "mount": {"type": "boolean"}},
        "required": [k],
        "additionalProperties": False,
    }
    for k in ("tag", "workflow")
]

StringList = Annotated[list[str], BeforeValidator(_string_list), WithJsonSchema(_LIST_OR_STRING)]
Args = Annotated[str | list[str], BeforeValidator(_args), WithJsonSchema(_LIST_OR_STRING)]
Env = Annotated[dict[str, str], BeforeValidator(parse_env), WithJsonSchema(_ENV)]
_SIZE_SCHEMA = {"anyOf": [{"type": "string", "pattern": _SIZE}, {"type": "integer", "minimum": 1}]}
Size = Annotated[str, BeforeValidator(parse_size), WithJsonSchema(_SIZE_SCHEMA)]
_COUNT_TEXT = {"type": "string", "pattern": r"^\s*\d+\s*$"}
Count = Annotated[
    int,
    BeforeValidator(_whole_number(0)),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, _COUNT_TEXT]}),
]
PositiveCount = Annotated[
    int,
    BeforeValidator(_whole_number(1)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {**_COUNT_TEXT, "pattern": r"^\s*0*[1-9]\d*\s*$"},
            ]
        }
    ),
]
MAX_PORTS = 50
"""The most ports one job may ask for: a cloud security group takes 60 rules by default, and
every port is a socket held open while the job starts."""


def _port_count(value: Any) -> Any:
    value = _whole_number(1)(value)
    if value > MAX_PORTS:
        raise ValueError(f"{value} ports is more than a job may open (at most {MAX_PORTS})")
    return value


PortCount = Annotated[
    int,
    BeforeValidator(_port_count),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_PORTS},
                {"type": "string", "pattern": r"^\s*0*([1-9]|[1-4]\d|50)\s*$"},
            ]
        }
    ),
]
PythonVersion = Annotated[
    str,
    BeforeValidator(_python_version),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^\d+\.\d+(\.\d+)?$"}),
]
RelativePath = Annotated[str, BeforeValidator(relative_path)]
FilePath = Annotated[str, BeforeValidator(_file_path)]
WorkingDir = Annotated[str, BeforeValidator(_working_dir)]
Name = Annotated[
    str, BeforeValidator(_name), WithJsonSchema({"type": "string", "pattern": NAME.pattern})
]
#: relative paths may not start by climbing out (`../x`); the validator also normalises
ARTIFACT_PATH_SCHEMA = {"type": "string", "pattern": r"^\s*(?!\.\.(/|\s*$))\S"}
ArtifactPath = Annotated[str, BeforeValidator(artifact_path), WithJsonSchema(ARTIFACT_PATH_SCHEMA)]
Image = Annotated[str, BeforeValidator(_image)]
