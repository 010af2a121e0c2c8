"""The docs name only jobs, sensors, schedules, assets, checks, `bettercat` commands and options
and `make` targets that exist, so they cannot drift silently from the code.

What counts as a name in the docs (README.md, docs/*.md, bench/RESULTS.md):

* a kind word next to backticked names: "Sensor `x`", "Jobs `a`, `b` and `c`", "the `x` check",
  "the `x` automation sensor"; a parenthesis after a name is skipped ("`s` (`job`, 02:00 UTC)");
* the first column of a table whose header starts with "check", "job", "sensor", ...;
* a UI path: "**Jobs → x → Launchpad**", "**Catalog → x → ...**" (an asset or the group);
* `bettercat <command> [--option ...]` in code spans and fenced blocks: the command and each
  `--option` of that command;
* `make <target>` in code spans and fenced blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "RESULTS.md"]

KINDS = ("job", "sensor", "schedule", "asset", "check")
_NAME = r"`((?-i:[a-z_][a-z0-9_]*))`"  # our Dagster names are snake_case
_PAREN = r"(?:\s*\([^()]*\))?"
_SEP = r"(?:\s*,\s*|\s+and\s+|\s+or\s+)"
#: "Jobs `a`, `b` and `c`", "sensor `x`", "Schedules `a` (`job`, ...) and `b`"
_KIND_THEN_NAMES = re.compile(
    rf"\b({'|'.join(KINDS)})s?\s+((?:{_NAME}{_PAREN}{_SEP})*{_NAME})", re.IGNORECASE
)
#: "`quality_gate` check", "`rescore_on_new_champion` automation sensor"
_NAME_THEN_KIND = re.compile(
    rf"{_NAME}\s+(?:automation\s+|blocking\s+|asset\s+)?({'|'.join(KINDS)})s?\b", re.IGNORECASE
)
#: "Jobs → promote_champion_job →", "Catalog → registered_model"
_UI_PATH = re.compile(r"\b(Jobs|Catalog)\s*→\s*`?([A-Za-z_]\w*)`?")
#: "| check | fails when |" then "| `schema` | ... |" rows
_TABLE = re.compile(
    rf"^\|\s*({'|'.join(KINDS)})\s*\|.*\n\|[-:| ]+\|\n((?:\|.*\n?)+)", re.MULTILINE | re.IGNORECASE
)
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"`([^`]+)`")
_COMMAND = re.compile(r"(?<![\w.-])(?:[\w./-]*/)?bettercat[ \t]+([a-z][\w-]*)([^\n|;&#]*)")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
_MAKE = re.compile(r"(?<![\w.-])make[ \t]+([a-z][\w-]*)")


@dataclass(frozen=True)
class Reference:
    """One name a doc uses: what kind of thing it claims to be, and where."""

    kind: str  # job, sensor, schedule, asset, check, command, option, make
    name: str
    where: str
    command: str = ""  # for options: the command they belong to


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def code_parts(text: str) -> Iterator[tuple[int, str]]:
    """Fenced blocks and inline code spans, with their offsets."""
    for fence in _FENCE.finditer(text):
        yield fence.start(1), fence.group(1)
    outside = _FENCE.sub(lambda m: " " * len(m.group(0)), text)
    for span in _SPAN.finditer(outside):
        yield span.start(1), span.group(1)


def dagster_references(text: str, where: str) -> Iterator[Reference]:
    for match in _KIND_THEN_NAMES.finditer(text):
        kind = match.group(1).lower()
        names = re.sub(r"\([^()]*\)", "", match.group(2))  # a parenthesis says something else
        for name in re.findall(r"`(\w+)`", names):
            yield Reference(kind, name, f"{where}:{_line(text, match.start())}")
    for match in _NAME_THEN_KIND.finditer(text):
        kind = match.group(2).lower()
        yield Reference(kind, match.group(1), f"{where}:{_line(text, match.start())}")
    for table in _TABLE.finditer(text):
        kind = table.group(1).lower()
        for row in re.finditer(r"^\|\s*`(\w+)`\s*\|", table.group(2), re.MULTILINE):
            yield Reference(
                kind, row.group(1), f"{where}:{_line(text, table.start(2) + row.start())}"
            )
    for match in _UI_PATH.finditer(text):
        kind = "job" if match.group(1) == "Jobs" else "asset"
        yield Reference(kind, match.group(2), f"{where}:{_line(text, match.start())}")


def cli_references(text: str, where: str) -> Iterator[Reference]:
    for offset, code in code_parts(text):
        for match in _COMMAND.finditer(code):
            command, rest = match.group(1), match.group(2)
            at = f"{where}:{_line(text, offset + match.start())}"
            yield Reference("command", command, at)
            for option in _OPTION.findall(rest):
                yield Reference("option", option, at, command=command)
        for match in _MAKE.finditer(code):
            yield Reference(
                "make", match.group(1), f"{where}:{_line(text, offset + match.start())}"
            )


def references(text: str, where: str) -> list[Reference]:
    return [*dagster_references(text, where), *cli_references(text, where)]


@dataclass(frozen=True)
class Known:
    """Every name the code defines, by kind."""

    names: dict[str, set[str]]
    options: dict[str, set[str]]

    def stale(self, refs: list[Reference]) -> list[str]:
        """One line per reference to something that does not exist."""
        problems = []
        for ref in refs:
            if ref.kind == "option":
                if ref.command in self.options and ref.name not in self.options[ref.command]:
                    problems.append(
                        f"{ref.where}: `bettercat {ref.command}` has no option {ref.name}"
                    )
            elif ref.name not in self.names[ref.kind]:
                known = ", ".join(sorted(self.names[ref.kind]))
                problems.append(f"{ref.where}: no {ref.kind} '{ref.name}' (there are: {known})")
        return problems


def _make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", makefile, re.MULTILINE))


@pytest.fixture(scope="module")
def known() -> Known:
    import click

    from bettercat_assets.cli import main
    from bettercat_assets.definitions import build_definitions

    defs = build_definitions()
    assets = [key.to_user_string() for a in defs.assets for key in a.keys]
    checks = [spec.name for a in defs.assets for spec in a.check_specs]
    groups = {spec.group_name for a in defs.assets for spec in a.specs if spec.group_name}
    commands: dict[str, click.Command] = dict(main.commands)
    return Known(
        names={
            "job": {job.name for job in defs.jobs},
            "sensor": {sensor.name for sensor in defs.sensors},
            "schedule": {schedule.name for schedule in defs.schedules},
            "asset": {*assets, *groups},
            "check": set(checks),
            "command": set(commands),
            "make": _make_targets(),
        },
        options={
            name: {opt for param in command.params for opt in param.opts if opt.startswith("--")}
            | {"--help"}
            for name, command in commands.items()
        },
    )


def test_every_name_in_the_docs_exists(known):
    refs = [r for doc in DOCS for r in references(doc.read_text(encoding="utf-8"), doc.name)]
    problems = known.stale(refs)
    assert not problems, "stale names in the docs:\n" + "\n".join(problems)
    # The extraction itself must keep working: the docs name every job, sensor, schedule,
    # asset and check, and the CLI's commands.
    found = {(r.kind, r.name) for r in refs}
    for kind in (*KINDS, "command"):
        missing = known.names[kind] - {name for k, name in found if k == kind} - {"categorisation"}
        assert not missing, f"the docs never name the {kind}(s) {sorted(missing)}"


@pytest.mark.parametrize(
    ("stale_text", "expected"),
    [
        ("Sensor `rescore_nightly`, running by default", "no sensor 'rescore_nightly'"),
        ("Jobs `train_clients`, `score_all` and `client_pipeline`", "no job 'score_all'"),
        ("Schedules `monthly_retraining` (`train_clients`) and `weekly_scoring`", "weekly_scoring"),
        ("runs the blocking `quality_check` check", "no check 'quality_check'"),
        ("1. **Jobs → promote_job → Launchpad**", "no job 'promote_job'"),
        ("**Catalog → trained_model → Materialize**", "no asset 'trained_model'"),
        ("Assets `training_data`, `model` (group x)", "no asset 'model'"),
        ("```bash\nbettercat retrain --client-id a\n```", "no command 'retrain'"),
        ("run `bettercat predict --client acme`", "`bettercat predict` has no option --client"),
        ("`make docs`", "no make 'docs'"),
        (
            "| check | fails when |\n|---|---|\n| `schema` | x |\n| `nulls` | y |\n",
            "no check 'nulls'",
        ),
    ],
)
def test_a_stale_name_fails(known, stale_text, expected):
    problems = known.stale(references(stale_text, "stale.md"))
    assert any(expected in p for p in problems), problems


def test_a_stale_name_in_a_real_doc_fails(known):
    """docs/ui.md with the sensor renamed, as a rename in the code without the docs would leave it."""
    text = (REPO / "docs" / "ui.md").read_text(encoding="utf-8")
    assert "`rescore_on_new_champion`" in text
    stale = text.replace("rescore_on_new_champion", "rescore_clients")
    problems = known.stale(references(stale, "ui.md"))
    assert problems and all("no sensor 'rescore_clients'" in p for p in problems), problems
