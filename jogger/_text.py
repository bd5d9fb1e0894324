"""Text that came from someone else, made safe to show on a terminal or in a log line.

A job's argv, a peer's :path, a server's error message can hold ESC (which lets them retitle
or redraw a terminal), newlines (which forge lines in a table or a log) and bidi controls.
Everything that is not printable is shown as an escape instead; printable text is unchanged.
"""

import shlex

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with each non-printable character (str.isprintable) as ``\\n``, ``\\x1b``,
    ``\\u202e``: one line, no terminal controls."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def shell_quote(word: str) -> str:
    """``word`` as a shell reads it back: shlex.quote, or bash's ``$'...'`` with escapes
    when it holds anything non-printable (as ``ls`` shows such names)."""
    if word.isprintable():
        return shlex.quote(word)
    inner = "".join("\\" + c if c in "\\'" else c if c.isprintable() else _escaped(c) for c in word)
    return f"$'{inner}'"


def shell_join(words: list[str]) -> str:
    """An argv as one safe line that a shell would read back as the same argv."""
    return " ".join(shell_quote(w) for w in words)
