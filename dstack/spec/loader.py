"""Reading `.dstack/workflows.yaml` and `.dstack/workflows/*.yaml` into validated workflows.

This module owns the files (which ones, in what order, how they merge), the YAML dialect
(floats keep their text so `python: 3.10` is not 3.1; duplicate keys are errors) and the one-line
:class:`SpecError` every mistake becomes: ``FILE: workflow 'NAME': FIELD: what was expected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

import yaml
from pydantic import BaseModel, ValidationError

from dstack.errors import SpecError
from dstack.spec.base import field_aliases
from dstack.spec.legacy import strip_legacy_keys
from dstack.spec.models import DEFAULT_PROVIDER, YamlFloat, suggest
from dstack.spec.workflows import WORKFLOW_MODELS, Workflow, WorkflowsFile
from dstack.yamlload import BoundedSafeLoader

MAIN_FILE = ".dstack/workflows.yaml"
EXTRA_FOLDER = ".dstack/workflows"


@dataclass
class Catalog:
    """Every workflow of the repo that validates, and the problems of those that do not."""

    workflows: dict[str, Workflow] = field(default_factory=dict)
    #: (the workflow's name, or None for a whole file, one-line error)
    problems: list[tuple[str | None, str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def problem_of(self, name: str) -> str | None:
        return next((text for owner, text in self.problems if owner == name), None)

    def where(self) -> str:
        """The files the workflows were looked for in, in words."""
        if len(self.sources) <= 3:
            return ", ".join(self.sources)
        return f"{len(self.sources)} files under .dstack/"


def read_catalog(repo_root: Path) -> Catalog:
    """Every workflow of the repo, each validated on its own: a mistake in one workflow (or
    one file) is recorded as its problem and does not hide the others."""
    catalog = Catalog()
    for path in workflow_files(repo_root):
        source = path.relative_to(repo_root).as_posix()
        catalog.sources.append(source)
        try:
            entries = _read_entries(path, source)
        except SpecError as exc:
            catalog.problems.append((None, str(exc)))
            continue
        for index, raw in enumerate(entries):
            name = raw.get("name") if isinstance(raw, dict) else None
            owner = name if isinstance(name, str) else None
            try:
                workflow = parse_workflow(raw, source=source, index=index)
            except SpecError as exc:
                catalog.problems.append((owner, str(exc)))
                continue
            if workflow.name in catalog.workflows:
                other = catalog.workflows[workflow.name].source
                also = f" (also in {other})" if other != source else ""
                catalog.problems.append(
                    (workflow.name, f"{source}: workflow {workflow.name!r} is defined twice"
                     f"{also}; rename one")
                )  # fmt: skip
                continue
            catalog.workflows[workflow.name] = workflow
    catalog.problems.extend(_dep_problems(catalog))
    return catalog


def load_workflows(repo_root: Path) -> dict[str, Workflow]:
    """Every workflow of the repo by name, validated; raises SpecError on the first mistake."""
    catalog = read_catalog(repo_root)
    if catalog.problems:
        raise SpecError(catalog.problems[0][1])
    return catalog.workflows


def get_workflow(repo_root: Path, name: str) -> Workflow:
    """The workflow called ``name``, validated strictly with the workflows it depends on; the
    other workflows' problems become a warning on it (``notes``). SpecError with a close match
    and the list if there is none. A built-in workflow (``tensorboard``) is found even with no
    workflow file, unless the file declares one of that name."""
    from dstack.spec.app_models import builtin_workflow

    builtin = builtin_workflow(name)
    try:
        catalog = read_catalog(repo_root)
    except SpecError:
        if builtin is None:
            raise
        return cast(Workflow, builtin)
    needed = _with_deps(catalog, name)
    for owner, text in catalog.problems:
        if owner in needed:
            raise SpecError(text)
    if name not in catalog.workflows:
        whole_file = next((text for owner, text in catalog.problems if owner is None), None)
        if builtin is not None:
            return cast(Workflow, builtin)
        if whole_file:  # it may be in the file that does not read
            raise SpecError(whole_file)
        names = sorted(catalog.workflows)
        raise SpecError(
            f"no workflow {name!r} in {catalog.where()}{suggest(name, names)} "
            f"(available: {listed(names) or 'none'})"
        )
    workflow = catalog.workflows[name]
    others = [text for owner, text in catalog.problems if owner not in needed]
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        workflow.notes.append(f"{others[0]}{more}; `dstack workflows` checks them all")
    return workflow


def _with_deps(catalog: Catalog, name: str) -> set[str | None]:
    """``name`` and the workflows of this repo it depends on, transitively."""
    needed: set[str | None] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed.add(current)
        workflow = catalog.workflows.get(current)
        if workflow is not None:
            todo += [d.name for d in workflow.deps if d.kind == "workflow" and d.repo is None]
    return needed


def json_schema() -> dict[str, Any]:
    """JSON Schema of a workflows file, for editors (`dstack schema`), generated from the
    models that validate it; the keys 2022 ignored (``spec.legacy``) are shown deprecated."""
    from dstack.spec.legacy import schema_properties

    schema = WorkflowsFile.model_json_schema()
    for provider, model in WORKFLOW_MODELS.items():
        definition = schema["$defs"][model.__name__]
        definition["properties"].update(schema_properties(provider))
    schema["title"] = "dstack workflows (.dstack/workflows.yaml)"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def workflow_files(repo_root: Path) -> list[Path]:
    """The main file first, then `.dstack/workflows/*.yaml|*.yml` by name."""
    main = repo_root / MAIN_FILE
    folder = repo_root / EXTRA_FOLDER
    extra = [p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    files = ([main] if main.is_file() else []) + sorted(extra)
    if not files:
        raise SpecError(f"no {MAIN_FILE} in {repo_root}: create one (see README)")
    return files


def parse_workflow(raw: Any, *, source: str, index: int = 0) -> Workflow:
    """One entry of `workflows:` → the model of its provider (``bash`` when none is given)."""
    name = raw.get("name") if isinstance(raw, dict) else None
    label = f"workflow {name!r}" if isinstance(name, str) and name else f"workflow #{index + 1}"
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: {label}: expected a mapping (name, provider, …), got {raw!r}")
    if "name" not in raw:
        raise SpecError(f"{source}: {label}: missing required key 'name'")
    provider = raw.get("provider", DEFAULT_PROVIDER)
    if not isinstance(provider, str) or provider not in WORKFLOW_MODELS:
        available = ", ".join(sorted(WORKFLOW_MODELS))
        raise SpecError(
            f"{source}: {label}: provider: unknown provider {provider!r}"
            f"{suggest(str(provider), WORKFLOW_MODELS)} (available: {available})"
        )
    model = WORKFLOW_MODELS[provider]
    raw, notes = strip_legacy_keys(provider, raw)
    try:
        workflow = model.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{source}: {label}: {describe_error(exc, model, raw)}") from exc
    workflow.notes.extend(f"{source}: {label}: {note}" for note in notes)
    return cast(Workflow, workflow.located(source))


def describe_error(error: ValidationError, model: type[BaseModel], data: Any) -> str:
    """The first error of ``error`` as ``field: what was expected``, in words."""
    first = first_error(error)
    loc, kind, message = first["loc"], first["type"], first["msg"]
    path = dotted(loc)
    if kind == "extra_forbidden":
        return _unknown_key(model, loc, data)
    if kind == "missing":
        owner = _model_at(model, loc[:-1])
        info = owner.model_fields.get(str(loc[-1])) if owner else None
        about = f": {info.description}" if info and info.description else ""
        prefix = f"{dotted(loc[:-1])}: " if loc[:-1] else ""
        return f"{prefix}missing required key {loc[-1]!r}{about}"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return f"{path}: {message}" if path else message
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{path}: {message[0].lower()}{message[1:]}, got {shown}"


def first_error(error: ValidationError) -> Any:
    """The error to show: an unknown key first (a typo also makes a required key "missing")."""
    errors = error.errors()
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def dotted(loc: tuple[int | str, ...]) -> str:
    """``("artifacts", 0, "path")`` → ``artifacts[0].path``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _unknown_key(model: type[BaseModel], loc: tuple[int | str, ...], data: Any) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    prefix = f"{dotted(parent)}: " if parent else ""
    owner = _model_at(model, parent)
    if owner is None:
        return f"{prefix}unknown key {key!r}"
    keys = model_keys(owner)
    if not parent and key in keys and isinstance(data, dict):  # `setup` and `before_run`
        same = [k for k, field in keys.items() if field == keys[key] and k in data]
        return f"{' and '.join(map(repr, same))} are the same key; keep one"
    if not parent:
        others = [p for p, m in WORKFLOW_MODELS.items() if key in model_keys(m)]
        if others:
            this = get_args(model.model_fields["provider"].annotation)[0]
            has = f"the {others[0]} provider has"
            return f"unknown key {key!r}: the {this} provider has no {key!r} ({has})"
    expected = suggest(key, keys) or f" (expected one of: {', '.join(keys)})"
    return f"{prefix}unknown key {key!r}{expected}"


def model_keys(model: type[BaseModel]) -> dict[str, str]:
    """Every key ``model`` accepts (field names and their aliases) → the field's name."""
    return {
        key: name for name, i in model.model_fields.items() for key in field_aliases(i) or [name]
    }


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (list indexes skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(model_keys(current).get(part, part))
        current = _find_model(info.annotation) if info else None
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found:
            return found
    return None


def _dep_problems(catalog: Catalog) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    known = {owner for owner, _ in catalog.problems} | set(catalog.workflows)
    for workflow in catalog.workflows.values():
        for index, dep in enumerate(workflow.deps):
            if dep.kind == "workflow" and dep.repo is None and dep.name not in known:
                problems.append((workflow.name,
                    f"{workflow.source}: workflow {workflow.name!r}: deps[{index}]: "
                    f"no workflow {dep.name!r}{suggest(dep.name, catalog.workflows)}"
                ))  # fmt: skip
    return problems


# ----------------------------------------------------------------------------------- YAML


_KEY_AS_TEXT = {f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float", "null")}


class _Loader(BoundedSafeLoader):
    """Safe YAML that keeps floats' text, rejects duplicate keys, and reads every mapping key
    as the text written (YAML 1.1 would read the key `on:` of `retry` as the boolean true)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.tag in _KEY_AS_TEXT:
                    key_node.tag = "tag:yaml.org,2002:str"
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlFloat:
    value = YamlFloat(loader.construct_yaml_float(node))
    value.yaml_text = str(node.value)
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


MAX_FILE_BYTES = 1 << 20  # one workflow file; thousands of workflows fit in far less
MAX_LISTED = 20  # names listed in a message ("available: …")


def listed(names: list[str]) -> str:
    """``names`` for a message: at most :data:`MAX_LISTED`, then how many more."""
    if len(names) <= MAX_LISTED:
        return ", ".join(names) or "none"
    return ", ".join(names[:MAX_LISTED]) + f", … ({len(names) - MAX_LISTED} more)"


def read_yaml(path: Path, source: str) -> Any:
    """The document in ``path``; SpecError with the line for broken YAML."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                f"{source}: {size / 2**20:.1f} MB is too large for a workflow file "
                f"(at most {MAX_FILE_BYTES // 2**20} MB): split it under .dstack/workflows/"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: cannot read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass, bounded: safe
    except yaml.YAMLError as exc:
        from dstack.spec.yaml_errors import describe_yaml_error

        raise SpecError(describe_yaml_error(exc, text, source)) from exc


def _read_entries(path: Path, source: str) -> list[Any]:
    data = read_yaml(path, source)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"{type(data).__name__} {data!r:.40}"
        raise SpecError(f"{source}: expected a mapping with a `workflows:` list, got {got}")
    for key in data:
        if key != "workflows":
            hint = suggest(str(key), ["workflows"])
            raise SpecError(
                f"{source}: unknown top-level key {key!r}{hint} (expected `workflows:`)"
            )
    if "workflows" not in data:
        raise SpecError(f"{source}: missing `workflows:` (a list of workflows)")
    entries = data["workflows"]
    if not isinstance(entries, list):
        from dstack.spec.yaml_errors import describe_not_a_list

        raise SpecError(describe_not_a_list(entries, path.read_text(encoding="utf-8"), source))
    return entries
