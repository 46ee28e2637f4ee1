"""User text on a page that renders markdown: shown literally, never as markup.

Every streamlit body, label, caption, alert and progress text is GitHub-flavoured markdown
plus streamlit's own directives (`:red[...]`, `:material/icon:`, emoji, `$LaTeX$`), so a
scheme name from a link such as `![](http://host/i.png)` would fetch a remote image and
`[click](http://...)` would be a link. `md` makes such text display exactly as it is.
"""

from __future__ import annotations

import logging
import re

# Backslash-escaped (CommonMark lets any ASCII punctuation be escaped; it displays unchanged):
# markdown, HTML and <autolinks>, entities (&), directives and icons (:), LaTeX ($).
_SIGNIFICANT = frozenset("\\`*_{}[]()#+-.!|<>~$:&")
# Some markup is found after parsing, in the text itself, where escapes are already gone: GFM
# bare links (http://, www.x, a@b.c), `:material/x:` / `:streamlit:` icons and streamlit's
# arrows (` -> `, ` <= `, ...). A word joiner (U+2060, invisible) breaks each pattern up.
_JOINER = "\u2060"
_FOUND_IN_TEXT = re.compile(r"[:@]|(?i:www)(?=\.)|[-<>~](?=[-<>=])")
MAX_SHOWN = 2000  # characters of an error message: a message can quote the input itself
_NEWLINES = str.maketrans({"\r": " ", "\n": " ", "\u2028": " ", "\u2029": " "})


def md(text: object) -> str:
    """`text` as markdown that displays exactly `text`, on one line (a newline would start a
    new block: a heading, a list, a table)."""
    flat = str(text).translate(_NEWLINES)
    joined = _FOUND_IN_TEXT.sub(lambda m: m.group() + _JOINER, flat)
    return "".join(f"\\{c}" if c in _SIGNIFICANT else c for c in joined)


def plain(markdown: str) -> str:
    """What `md(text)` displays: `text` (newlines as spaces). For tests and logs."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(_JOINER, "")


def describe(exc: Exception) -> str:
    """An exception as one plain sentence for the page (escape it with `md` to show it).

    A ValueError is initlab's own message on the input; anything else is a failure the input
    found (a bug): named by its type, its traceback logged for the server, not shown.
    """
    if isinstance(exc, RecursionError):
        return "nested too deeply to be an experiment"
    if isinstance(exc, ValueError):
        return _shorten(str(exc))
    logging.getLogger("initlab.ui").error("unexpected failure", exc_info=exc)
    return _shorten(f"{type(exc).__name__}: {exc}")


def _shorten(text: str, most: int = MAX_SHOWN) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


def chip(color: str | None) -> str:
    """A dot in the scheme's chart colour, drawn by streamlit's colour directive (no HTML);
    only a plain hex colour goes into it, anything else is a grey dot."""
    if color is None or not _HEX_COLOR.fullmatch(color):
        return ":gray[●]"
    return f':color[●]{{foreground="{color}"}}'
