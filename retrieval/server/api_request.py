"""The HTTP API's search parameters, made from the request's declaration (retrieval.request):
one pydantic model that FastAPI reads from the query string (GET), a JSON body (POST) or a
form (uploads), and from which the OpenAPI schema is written."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, Field, create_model

from retrieval.request import Spec, specs


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, (str, int, float)) else value


def _annotation(spec: Spec, default: Any) -> Any:
    one: Any = spec.kind
    if spec.choices is not None:
        one = Literal.__getitem__(tuple(spec.choices()))
    if spec.multiple:  # one value alone is taken too (a JSON "type": "image")
        return Annotated[list[one], BeforeValidator(_listed)]  # type: ignore[valid-type]
    return Optional[one] if default is None else one


def search_model() -> type[BaseModel]:
    """The parameters of /api/search and /api/search/upload, with the kinds registered now."""
    fields: dict[str, Any] = {}
    for f, spec in specs():
        if not spec.api:
            continue
        default = list(f.default) if spec.multiple else f.default
        extra = {"ge": spec.ge, "le": spec.le} if spec.kind in (int, float) else {}
        info = Field(default_factory=list, alias=spec.wire, description=spec.help) if spec.multiple else \
            Field(default, alias=spec.wire, description=spec.help, **{k: v for k, v in extra.items() if v is not None})
        fields[f.name] = (_annotation(spec, default), info)
    return create_model("SearchParams", __config__={"populate_by_name": True}, **fields)  # type: ignore[call-overload]


def wire_of(params: BaseModel) -> dict[str, Any]:
    """The parameters by their wire names (as SearchRequest.from_wire takes them)."""
    return params.model_dump(by_alias=True)
