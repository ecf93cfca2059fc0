"""Turning PyYAML/libyaml errors into one-line messages at the most useful place.

YAML's own messages are multi-line and often point far from the mistake (a missing closing quote
surfaces as "did not find expected key" many lines later), so the classic mistakes get a message
of their own: tabs, unclosed quotes and brackets, several documents, control characters.
"""

from __future__ import annotations

from typing import Any

import yaml

Located = tuple[str, int, int]  # message, 1-based line, 1-based column


def syntax_error(text: str, e: yaml.MarkedYAMLError) -> Located:
    problem = " ".join((e.problem or "syntax error").split())
    context = " ".join((e.context or "").split())
    mark = e.problem_mark or e.context_mark
    if mark is None:
        return f"YAML syntax: {problem}", 1, 1
    quote = _open_quote(text, mark.line)
    if "tab" in problem or "'\\t'" in problem or _char_at(text, mark) == "\t":
        return "tab character: YAML must be indented with spaces", mark.line + 1, mark.column + 1
    if "quoted scalar" in context and e.context_mark is not None:
        return "unclosed quote: " + problem, e.context_mark.line + 1, e.context_mark.column + 1
    if quote is not None:
        message = f"unclosed quote: the string runs on to line {mark.line + 1}, where YAML fails: {problem}"
        return message, quote[0], quote[1]
    if not text[_offset(text, mark):].strip() and context and e.context_mark is not None:
        what = context.removeprefix("while parsing ").removeprefix("while scanning ")
        message = f"YAML syntax: {what} is not closed before the end of the file ({problem})"
        return message, e.context_mark.line + 1, e.context_mark.column + 1
    if context and e.context_mark is not None:
        where = f"line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
        if "expected key" in problem and "block mapping" in context:  # the classic: a line indented
            return (f"YAML syntax: this line's indentation matches no key above it (the mapping began at "
                    f"{where}): indent it as its siblings are", mark.line + 1, mark.column + 1)
        return f"YAML syntax: {problem} ({context} at {where})", mark.line + 1, mark.column + 1
    return f"YAML syntax: {problem}", mark.line + 1, mark.column + 1


def reader_error(text: str, e: yaml.reader.ReaderError, byte_offsets: bool) -> Located:
    """Non-printable characters, at their line and column (libyaml counts UTF-8 bytes)."""
    pos = max(e.position, 0)
    if byte_offsets:
        pos = len(text.encode("utf-8")[:pos].decode("utf-8", "ignore"))
    pos = min(pos, len(text))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = e.character if isinstance(e.character, str) else chr(e.character)
    return f"unacceptable character U+{ord(char):04X} (control characters are not allowed)", line, col


def _open_quote(text: str, last_line: int) -> tuple[int, int] | None:
    """(line, col) of the first quote left open at the end of its line, up to `last_line` (0-based).

    A quoted YAML string may span lines, so a missing closing quote often surfaces as an
    unrelated error much later; pointing at the quote is what helps.
    """
    for number, line in enumerate(text.split("\n")[: last_line + 1]):
        col = _open_quote_in(line)
        if col is not None:
            return number + 1, col + 1
    return None


def _open_quote_in(line: str) -> int | None:
    """Column of a quote that starts a value on this line and is not closed on it."""
    quote, start, i = "", 0, 0
    while i < len(line):
        char = line[i]
        if quote == '"' and char == "\\":
            i += 1
        elif quote and char == quote:
            if quote == "'" and line[i + 1: i + 2] == "'":
                i += 1
            else:
                quote = ""
        elif not quote and char in "\"'" and line[:i].rstrip()[-1:] in ("", ":", "-", "[", "{", ","):
            quote, start = char, i
        elif not quote and char == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        i += 1
    return start if quote else None


def _offset(text: str, mark: Any) -> int:
    """The character offset of a mark's line and column."""
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: mark.line]) + mark.column


def _char_at(text: str, mark: Any) -> str:
    offset = _offset(text, mark)
    return text[offset: offset + 1]
