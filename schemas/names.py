"""Names that end up in NATS subjects, KV keys and file paths."""

import re

# One NATS subject token, one KV key, one path component: no dots, slashes,
# wildcards or whitespace; starts with an alphanumeric so it is never "." or "..".
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)

# Call ids are subject tokens too (events are published on faas.events.<call_id>.<kind>).
CALL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def is_valid_name(value: str) -> bool:
    return bool(_NAME.match(value))
