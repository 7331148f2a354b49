"""The base of the workflow models: strict (unknown keys are errors), with a field's other
accepted names (aliases) shown in the JSON Schema, and models that may be one scalar."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema


class Strict(BaseModel):
    """Unknown keys are errors; a field's other accepted names show in the schema too."""

    # built when first used (see ``dstack.models.Model``)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        rules: list[dict[str, Any]] = []
        for name, info in cls.model_fields.items():
            aliases = field_aliases(info)
            for alias in aliases[1:]:
                original = schema["properties"].get(name, {})
                schema["properties"][alias] = {**original, "description": f"Alias of `{name}`."}
            if len(aliases) > 1:  # one of the names, never two
                rules += [{"not": {"required": [a, b]}} for a in aliases for b in aliases if a < b]
                if name in schema.get("required", []):
                    schema["required"].remove(name)
                    rules.append({"anyOf": [{"required": [a]} for a in aliases]})
        if rules:
            schema["allOf"] = rules
        return schema


def field_aliases(info: Any) -> list[str]:
    """The keys a field accepts, its own name first."""
    if isinstance(info.validation_alias, AliasChoices):
        return [str(choice) for choice in info.validation_alias.choices]
    return []


class _AlsoScalar(Strict):
    """A model that may also be written as one scalar (``gpu: 1``, ``- checkpoint``)."""

    scalar_schema: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        return {"anyOf": [cls.scalar_schema, schema]}
