"""A second, independent implementation of the contract's JSON Schema for the tests: the pure-Python `jsonschema`
validator (Draft 2020-12) with Decimal integers and the contract's date-time check. The product validates with
jsonschema-rs only; these tests check that both read the schema alike."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from referencing import Registry, Resource

from clickstream import contract


@cache
def validator_class_and_format_checker() -> tuple[type, FormatChecker]:
    def is_integer(checker: Any, instance: object) -> bool:
        if isinstance(instance, Decimal):
            return instance.is_finite() and instance == instance.to_integral_value()
        return Draft202012Validator.TYPE_CHECKER.is_type(instance, "integer")

    format_checker = FormatChecker(formats=("uuid",))
    format_checker.checks("date-time")(contract._is_timestamp)
    validator_class = validators.extend(
        Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer))
    return validator_class, format_checker


@cache
def reference_validator(definition: str | None = None) -> Any:
    """The jsonschema validator of the event schema, or of one of its $defs."""
    validator_class, format_checker = validator_class_and_format_checker()
    schema = contract.event_schema()
    registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    target = schema if definition is None else {"$ref": f"{schema['$id']}#/$defs/{definition}"}
    return validator_class(target, registry=registry, format_checker=format_checker)
