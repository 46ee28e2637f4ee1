"""The experiment in the page's URL: `?experiment=<URL-safe base64 of the experiment JSON>`."""

from __future__ import annotations

import base64
import json
from typing import Any

MAX_URL_CHARS = 200_000


def encode(experiment: dict[str, Any]) -> str:
    text = json.dumps(experiment, separators=(",", ":"), sort_keys=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    """The experiment dict in a URL token; ValueError with a readable reason otherwise."""
    if len(token) > MAX_URL_CHARS:
        raise ValueError("the experiment in the address is too long to be one")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the experiment in the address is not valid base64 JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the experiment in the address is not a JSON object")
    return data
