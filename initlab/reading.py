"""Reading an experiment: at most a bounded number of bytes from any path, in bounded time,
and JSON that refuses a key given twice. Files and links are data: nothing here runs them."""

from __future__ import annotations

import json
import os
import select
import time
from pathlib import Path
from typing import Any

from initlab.params import shown

MAX_FILE_BYTES = 1_000_000  # an experiment is a few KB; anything bigger is not one
READ_SECONDS = 30.0  # a pipe (stdin) has this long to deliver a whole experiment


class DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice is refused (JSON would silently keep the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(
                f"the key {shown(key)} appears twice in one object; each key may be given once"
            )
        out[key] = value
    return out


def parse_json(text: str, where: str = "experiment") -> Any:
    """JSON text to plain data, or one ValueError naming `where` and the reason."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be an experiment") from None
    except DuplicateKeyError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise ValueError(f"{where}: not an experiment ({exc})") from None


def read_bounded(path: Path, cap: int = MAX_FILE_BYTES, seconds: float = READ_SECONDS) -> bytes:
    """At most cap + 1 bytes from any path: a file, a device (/dev/zero), a pipe or stdin,
    whose size `stat` cannot tell; more than `cap` is refused with the size named, and so is
    a pipe that has not ended within `seconds` (a FIFO nobody writes to would block forever)."""
    if path.is_file():
        with open(path, "rb") as stream:
            data = stream.read(cap + 1)
    else:
        data = _read_stream(path, cap, seconds)
    if len(data) > cap:
        raise ValueError(f"{path}: larger than {cap // 1000} KB; not an experiment")
    return data


def _read_stream(path: Path, cap: int, seconds: float) -> bytes:
    """A device or pipe, read without blocking: each wait for data is bounded by the time left."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait either
    deadline, chunks, size = time.monotonic() + seconds, [], 0
    try:
        while size <= cap:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ValueError(
                    f"{path}: no end of data within {seconds:g} s; not an experiment file"
                )
            try:
                chunk = os.read(fd, min(1 << 16, cap + 1 - size))
            except BlockingIOError:  # woken without data (a writer came and went)
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
