"""Strict request bodies: pydantic models that refuse anything unexpected.

Strict mode means ``true`` is not an integer and ``"60"`` is not one either;
unknown fields are refused. Error texts name the field but never echo input.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, TypeVar

# pydantic looks for plugins among every installed package's entry points when it builds a validator:
# a cold start's cost (about 4 ms) for plugins this service never uses.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared import errors, strictjson

M = TypeVar("M", bound=BaseModel)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_INT = 2**53  # larger integers are refused before any bound is checked


class Body(BaseModel):
    # defer_build: a function builds the validator of the one body it parses, on first use,
    # not those of every model its modules define (a cold-start cost).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Form(BaseModel):
    """A form body (the OAuth endpoints): unknown parameters are ignored (RFC 6749 §3.2), values are text."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, defer_build=True)


def check_identifier(value: str) -> str:
    """The generic ID rules of the contract; ``ValueError`` for a string that breaks them."""
    return _identifier(value)


def _identifier(value: str) -> str:
    # The generic ID rules of the contract; a well-formed ID that names nothing is a 404 later.
    if "/" in value or _CONTROL.search(value) or not 1 <= len(value.encode("utf-8")) <= 128:
        raise ValueError("not a valid identifier")
    return value


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _tenant(value: str) -> str:
    if _TENANT.fullmatch(value) is None:
        raise ValueError("must match [A-Za-z0-9._-]{1,64}")
    return value


SCOPE = re.compile(r"[A-Za-z0-9:._/-]{1,64}")
MAX_SCOPES = 50


def _scopes(value: list[str]) -> list[str]:
    if any(SCOPE.fullmatch(scope) is None for scope in value):
        raise ValueError("each scope must match [A-Za-z0-9:._/-]{1,64}")
    if len(set(value)) != len(value):
        raise ValueError("a scope is named twice")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
Scopes = Annotated[list[str], Field(max_length=MAX_SCOPES), AfterValidator(_scopes)]
TenantId = Annotated[str, AfterValidator(_tenant)]
DisplayName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_text)]
Label = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_text)]
PageSize = Annotated[int, Field(ge=1, le=200)]
PageToken = Annotated[str, Field(min_length=1, max_length=256)]
SafeInt = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]


def _describe(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden":
        name = loc[-1] if loc and strictjson.is_sane_field(loc[-1]) else None
        return f"unknown field '{name}'" if name else "unknown field"
    field = ".".join(part for part in loc if strictjson.is_sane_field(part)) or "body"
    message = str(error.get("msg", "is not valid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{field}: {message}"


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.InvalidRequest(_describe(exc.errors(include_input=False, include_url=False)[0])) from None
