"""Every `har-stream` command written in the README and docs/ parses with the real CLI.

Docs drift from the code one flag at a time (a renamed option, a removed subcommand); this
reads every command line in their code blocks and every inline one without placeholders, and
parses it with `cli.build_parser()`, abbreviations refused, so a command a reader copies
either works as written or this test names it. Parsing runs nothing.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from har_stream import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]+\b|…|\.\.\.|\bP\b|\bK\b|\[")
"""NAME, ZIP, COMMAND, P, K, `...`, `[...]`: a pattern to fill in, not a command."""
NOT_COMMANDS = ("har-stream run: ",)  # the shape of an error message, quoted as such


def _block_commands(text: str) -> list[str]:
    """Command lines inside fenced code blocks, continuations joined, comments dropped."""
    commands, fenced, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.sub(r"^(\$ )?([A-Z_]+=\S+ )*", "", line)
        if line.startswith("har-stream ") or line == "har-stream":
            commands.append(line.split("  #")[0].split(" # ")[0].strip())
    return commands


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        inline = re.findall(r"`(har-stream [^`]*)`", text)
        for command in [*_block_commands(text), *inline]:
            if command.startswith(NOT_COMMANDS) or PLACEHOLDER.search(command[10:]):
                continue
            found.append((path.name, command))
    return sorted(set(found))


def _strict(parser: argparse.ArgumentParser) -> None:
    """No prefix matching: `--duration` must not pass for `--duration-s`."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check() -> None:
    documents = {name for name, _ in COMMANDS}
    assert len(COMMANDS) >= 30 and {"README.md", "SERVICE.md", "MODELS.md"} <= documents


@pytest.mark.parametrize(("document", "command"), COMMANDS)
def test_a_documented_command_parses(document: str, command: str) -> None:
    parser = cli.build_parser()
    _strict(parser)
    argv = shlex.split(command)[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0 and "--help" in argv, f"{document}: `{command}` does not parse"
        return
    assert callable(args.func), f"{document}: `{command}` runs nothing"
