"""CI must run what the README tells a newcomer to run."""

from conftest import ROOT


def fenced_command_after(marker: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    start = lines.index(marker)
    fence = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return lines[fence + 1]


def test_ci_runs_the_readmes_test_command():
    command = fenced_command_after("<!-- test-command -->")
    assert "pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").split("\n")
