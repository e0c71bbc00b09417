"""README.md tells the truth about the settings and the commands (fast: no stack).

- Its Settings table against ``core.settings.Settings``: every field is documented, under its
  ``QSERVER_*`` name, with its default; the table names no variable the class lacks, none twice.
- Its CLI section against the ``qserver`` app (the client's commands and the operator's, as
  ``python -m ops.cli`` builds it): every command is named there, and every ``qserver ...`` the
  section names exists.

Both read the live class and app, so a setting or command added without its README line fails
here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from core.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
_CODE = re.compile(r"`([^`]+)`")
_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "s": 1}


def section(title: str) -> str:
    """The README's ``## title`` section (its subsections too), up to the next ``## ``."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


# --- the settings table ---------------------------------------------------------------------------


def expand(names: list[str]) -> list[str]:
    """`QSERVER_A_B`, `_C` -> QSERVER_A_B, QSERVER_A_C: `_NAME` replaces as many last words of
    the first variable as it has (never QSERVER_ itself)."""
    first = names[0]
    assert first.startswith("QSERVER_"), first
    words = first.removeprefix("QSERVER_").split("_")
    found = [first]
    for short in names[1:]:
        assert short.startswith("_"), f"{short!r} after {first}: a later name starts with _"
        tail = short[1:].split("_")
        found.append("QSERVER_" + "_".join(words[: max(len(words) - len(tail), 0)] + tail))
    return found


def settings_table() -> list[tuple[str, str]]:
    """(QSERVER_NAME, its documented default) for each variable of the Settings table."""
    rows = []
    for line in section("Settings").splitlines():
        if not line.startswith("| `QSERVER_"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert len(cells) == 3, line
        names = expand(_CODE.findall(cells[0]))
        default = cells[1].replace("`", "")
        if len(names) == 1:
            parts = [default]
        else:
            parts = [part.strip() for part in re.split(r" / |, ", default)]
            assert len(parts) == len(names), f"{names}: {len(parts)} defaults for {len(names)} variables"
        rows += list(zip(names, parts, strict=True))
    return rows


def _number(text: str) -> float | None:
    """'1 000 000' -> 1e6, '32 MiB' -> 32 * 2**20, '86 400 s' -> 86400; None when not a number."""
    match = re.fullmatch(r"(-?[\d ]*\d(?:\.\d+)?)(?: ?(KiB|MiB|GiB|s))?", text)
    if not match:
        return None
    return float(match.group(1).replace(" ", "")) * _UNITS.get(match.group(2) or "", 1)


def documents(default: Any, text: str) -> bool:
    """Whether the README's ``text`` states ``default`` (a parenthesised remark after it aside)."""
    value = re.sub(r"\s*\(.*\)$", "", text).strip()
    if default is None:
        return bool(value)  # computed or unset: said in words
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, int | float):
        return _number(value) == pytest.approx(default)
    if isinstance(default, Path):
        return value in (str(default), str(default).replace(str(Path.home()), "~", 1))
    if isinstance(default, list):
        return value in (", ".join(default), json.dumps(default))
    if isinstance(default, dict):
        pairs = dict(re.findall(r"(\w+) (\d(?:[\d ]*\d)?)", value))
        return {key: _number(number) for key, number in pairs.items()} == default
    return value == str(default)


def test_every_setting_is_in_the_readme_with_its_default():
    documented = settings_table()
    names = [name for name, _ in documented]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"
    fields = {f"QSERVER_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(names) - set(fields) == set(), "the README lists variables the settings class does not have"
    assert set(fields) - set(names) == set(), "settings missing from the README's Settings table"
    wrong = [
        f"{name}: README says {text!r}, the class {fields[name].default!r}"
        for name, text in documented
        if not documents(fields[name].default, text)
    ]
    assert wrong == []


def test_the_table_reader_reads_what_it_should():
    assert expand(["QSERVER_INGEST_HOST", "_PORT"]) == ["QSERVER_INGEST_HOST", "QSERVER_INGEST_PORT"]
    assert expand(["QSERVER_NGINX_HTTP_PORT", "_GRPC_PORT"])[1] == "QSERVER_NGINX_GRPC_PORT"
    assert expand(["QSERVER_MAX_SHOTS", "_MAX_METADATA_BYTES"])[1] == "QSERVER_MAX_METADATA_BYTES"
    assert _number("1 000 000") == 1e6 and _number("16 KiB") == 16384 and _number("86 400 s") == 86400
    assert _number("one per CPU") is None
    assert documents(0, "0 (all of the node's)") and not documents(1, "0 (all of the node's)")
    assert documents({"a": 1000, "b": 9}, "a 1000, b 9") and not documents({"a": 1000}, "a 100")
    assert documents(Path.home() / ".qserver", "~/.qserver") and documents(True, "true")


# --- the CLI section ------------------------------------------------------------------------------

# `qserver` then its words: a mention in a code block or span (`.venv/bin/qserver ...` too)
_MENTION = re.compile(r"(?:^|[\s/(`])qserver((?:[ \t]+[a-z][a-z0-9-]*)+)")


def _subcommands(command: Any) -> dict[str, Any] | None:
    """A group's commands by name (typer's click groups), None for a command."""
    return getattr(command, "commands", None)


def commands(group: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every (visible) command path of a click group."""
    found = set()
    for name, command in _subcommands(group).items():
        if command.hidden:
            continue
        if _subcommands(command) is not None:
            found |= commands(command, (*prefix, name))
        else:
            found.add((*prefix, name))
    return found


def resolve(group: Any, words: list[str]) -> tuple[tuple[str, ...], str | None]:
    """The command path ``words`` name (the rest are its arguments), and the word that names
    nothing, if one does."""
    path: list[str] = []
    node = group
    for word in words:
        if _subcommands(node) is None:
            break  # a command's arguments
        child = _subcommands(node).get(word)
        if child is None:
            return tuple(path), word
        path.append(word)
        node = child
    return tuple(path), None


def mentions() -> list[list[str]]:
    """The words after each ``qserver`` in the CLI section's code (blocks and spans)."""
    text = section("The CLI")
    code = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)) + "\n" + "\n".join(_CODE.findall(text))
    code = re.sub(r"#.*", "", code)  # comments are prose
    return [match.group(1).split() for match in _MENTION.finditer(code)]


def _app() -> Any:
    from ops import cli

    return typer.main.get_command(cli.app)


def test_every_command_is_in_the_cli_section_and_every_one_named_there_exists():
    app = _app()
    named, unknown = set(), []
    for words in mentions():
        path, bad = resolve(app, words)
        if bad is not None:
            unknown.append(f"qserver {' '.join([*path, bad])}")
        named.add(path)
    assert unknown == [], "the README's CLI section names commands that do not exist"
    missing = sorted(" ".join(path) for path in commands(app) - named)
    assert missing == [], "commands the README's CLI section does not name"


def test_the_mention_reader_reads_what_it_should():
    app = _app()
    assert resolve(app, ["keys", "create", "alice"]) == (("keys", "create"), None)
    assert resolve(app, ["node", "sleep"]) == (("node",), "sleep")
    assert resolve(app, ["submit"]) == (("submit",), None)
    assert ("node", "drain") in commands(app) and ("up",) in commands(app)
    text = "x `qserver node join` .venv/bin/qserver up\nqserver-client"
    assert [m.group(1).split() for m in _MENTION.finditer(text)] == [["node", "join"], ["up"]]
