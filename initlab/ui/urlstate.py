"""The experiment in the page's URL: `?experiment=<URL-safe base64 of the experiment JSON>`."""

from __future__ import annotations

import base64
import json
from typing import Any

from initlab.reading import parse_json

MAX_URL_CHARS = 200_000


def encode(experiment: dict[str, Any]) -> str:
    text = json.dumps(experiment, separators=(",", ":"), sort_keys=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    """The experiment dict in a URL token; ValueError with a readable reason otherwise."""
    if len(token) > MAX_URL_CHARS:
        raise ValueError("the experiment in the address is too long to be one")
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        json.loads(text)  # the syntax first: each of its failures reads the same
    except RecursionError:  # e.g. "[" * 5000: json's decoder recurses once per level
        raise ValueError("the experiment in the address is nested too deeply to be one") from None
    except Exception:  # binascii, UTF-8, JSON or int-digits errors: none is an experiment
        raise ValueError("the experiment in the address is not valid base64 JSON") from None
    # then as a file is read: a key given twice is refused, not silently the last one
    data = parse_json(text, "the experiment in the address")
    if not isinstance(data, dict):
        raise ValueError("the experiment in the address is not a JSON object")
    return data
