"""The test commands the docs give are the ones CI runs: the README's fast command selects only tests that one of
`.ci/run`'s pytest runs selects too, and docs/testing.md names each of `.ci/run`'s commands."""

import itertools
import re
import shlex
import tomllib
from pathlib import Path

from _pytest.mark.expression import Expression  # pytest's own `-m` parser and evaluator

ROOT = Path(__file__).resolve().parent.parent


def markers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return [line.split(":")[0] for line in config["markers"]]


def marker_expression(command: list[str]) -> str:
    """The `-m` a pytest command runs with: its own (a later -m replaces an earlier one), else pyproject's addopts."""
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    args = shlex.split(addopts) + command
    return [value for flag, value in itertools.pairwise(args) if flag == "-m"][-1]


def ci_pytest_commands() -> list[list[str]]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [shlex.split(line)[3:] for line in lines if line.startswith("python -m pytest")]


def readme_fast_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    (line,) = re.findall(r"^python -m pytest -m .*$", readme, re.M)
    return shlex.split(line)[3:]


def selected(expression: str, marks: set[str]) -> bool:
    return Expression.compile(expression).evaluate(lambda name, **_: name in marks)


def test_ci_runs_every_test_the_readmes_fast_command_runs() -> None:
    fast = marker_expression(readme_fast_command())
    ci = [marker_expression(command) for command in ci_pytest_commands()]
    assert len(ci) >= 2, ".ci/run runs pytest"
    for size in range(len(markers()) + 1):
        for marks in map(set, itertools.combinations(markers(), size)):
            if selected(fast, marks):
                assert any(selected(expression, marks) for expression in ci), f"a test marked {marks or 'nothing'}"


def test_docs_testing_names_what_ci_runs() -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    assert "bash .ci/run" in (ROOT / "README.md").read_text()
    for command in ci_pytest_commands():
        assert shlex.join(["python", "-m", "pytest", *command]) in page
