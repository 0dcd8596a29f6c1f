"""A runtime: a container image plus how to install a function's dependencies and run it."""

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.clock import utcnow
from schemas.names import NAME_PATTERN, is_valid_name

_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


class RuntimeSpec(BaseModel):
    """What ``POST /registerRuntime`` and ``POST /v1/runtimes`` take.

    ``name`` defaults to ``image`` when the image reference is itself a valid name.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    image: str = Field(min_length=1, max_length=255)
    path: str = Field(default="/app", max_length=255)
    dependencies: str = Field(default="", max_length=4096)
    run: str = Field(min_length=1, max_length=4096)
    # Command that starts the runtime's handler-protocol shim (see runtimes/*/bootstrap);
    # functions registered with a ``handler`` need it.
    handler_command: str | None = Field(default=None, max_length=4096)
    created_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _name_from_image(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("image"), str):
            image = data["image"]
            if not is_valid_name(image):
                raise ValueError(
                    f"image {image!r} cannot name the runtime (a name has only letters, digits,"
                    " '-' and '_'): give a 'name'"
                )
            data = {**data, "name": image}
        return data

    @field_validator("image")
    @classmethod
    def _image_ref(cls, v: str) -> str:
        if not _IMAGE.match(v):
            raise ValueError(f"{v!r} is not a Docker image reference")
        return v

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, v: str) -> str:
        parts = v.split("/")
        if not v.startswith("/") or ".." in parts or v == "/":
            raise ValueError("must be an absolute directory other than / without '..'")
        return v.rstrip("/")
