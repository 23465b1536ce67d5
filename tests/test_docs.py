"""The README and the pages of docs/: every relative link and image points to a file of the
repository (and a link to a README section to a heading it has), and every shell command they
show is accepted: train.py, sweep.py and report.py arguments by their parsers (sweeps with
--dry-run), modules and scripts exist, a benchmark defines the flags shown."""

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the sweep extra installs tomli
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as -."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files_of_the_repository(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: {target} names no heading"


def test_the_readme_is_a_front_page_with_both_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert 'pip install torch==2.13.0 && pip install -e ".[all]" && python train.py' in text
    assert "python -m pytest -q -n 2 --dist loadfile" in text
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"the README does not link docs/{page.name}"


# --- the commands the pages show ----------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.M | re.S)  # in a list item too
CODE_SPAN = re.compile(r"`((?:[A-Z_]+=\S+ )*python [^`]+)`")
PLACEHOLDER = re.compile(r"[<>{}]|\.\.\.|…")


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's bash blocks (continuation lines joined, comments dropped) and
    of its inline ``python ...`` code spans; ``a && b`` is two commands."""
    text = page.read_text()
    lines = []
    for language, block in FENCE.findall(text):
        if language in ("bash", "sh", "shell"):
            lines += re.sub(r"\\\n\s*", " ", block).splitlines()
    prose = re.sub(r"\s*\n\s*", " ", FENCE.sub("", text))
    lines += CODE_SPAN.findall(prose)
    commands = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*$", "", line)
        commands += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return commands


COMMANDS = [(page, command) for page in PAGES for command in shell_commands(page)]


def flags(tokens: list[str]) -> list[str]:
    """The ``--flag`` names among ``tokens`` (optional ones in brackets too)."""
    return [t.strip("[]").split("=")[0] for t in tokens if t.strip("[").startswith("--")]


def check_train(argv: list[str]) -> None:
    import importlib

    import train
    from agents.cli import parse_args

    if argv == ["--help"]:  # the overview, which train.py prints itself
        assert "python train.py --agent AGENT --help" in train.overview()
        return
    agent, rest = train.split_agent(argv)
    args_class = importlib.import_module(f"agents.{agent}").Args
    if rest == ["--help"]:  # an agent's settings: tyro prints them and exits with 0
        with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(io.StringIO()):
            parse_args(args_class, agent, rest, prog="train.py")
        assert exited.value.code == 0
        return
    parse_args(args_class, agent, rest, prog="train.py")


def check_sweep(argv: list[str], runs_dir: Path) -> None:
    """A sweep as its own command would start it (grid, run arguments, envs), with
    ``--dry-run`` in a fresh runs folder; a sweep file is only parsed."""
    import tyro

    from experiments.sweep import cli, config

    if "--file" in argv:
        own, _ = config.split_passthrough(argv)
        tyro.cli(config.SweepArgs, args=own, prog="sweep.py")
        return
    own, extra = config.split_passthrough(argv)
    assert cli.main([*own, "--runs-dir", str(runs_dir), "--dry-run", "--", *extra]) == 0


def check_report(argv: list[str]) -> None:
    import tyro

    from experiments.report.cli import ReportArgs

    tyro.cli(ReportArgs, args=argv, prog="report.py")


def check_module(module: str, argv: list[str]) -> None:
    """The module exists; its own parser takes the arguments (experiments.symmetry), or every
    flag shown is one the module's source defines (the benchmarks, run by hand)."""
    import importlib.util

    if PLACEHOLDER.search(module):
        return
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    if module == "experiments.symmetry" and argv:
        from experiments.symmetry import parse_args

        parse_args(argv)
    elif module.startswith("benchmarks."):
        source = Path(spec.origin).read_text()
        for flag in flags(argv):
            assert f'"{flag}"' in source, f"{module} defines no {flag}"


@pytest.mark.parametrize(
    ("page", "command"), COMMANDS, ids=[f"{p.name}:{c[:60]}" for p, c in COMMANDS]
)
def test_each_command_shown_is_accepted(page, command, tmp_path):
    tokens = shlex.split(command)
    while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):  # OMP_NUM_THREADS=1 python ...
        tokens.pop(0)
    program, *args = tokens
    if program in ("ruff",):  # not ours to check
        return
    if program == "bash":
        assert (ROOT / args[0]).is_file(), f"{page.name}: no script {args[0]}"
    elif program == "pip":
        extras = re.findall(r"\.\[([\w,-]+)\]", command)
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        for extra in ",".join(extras).split(",") if extras else []:
            assert extra in declared["optional-dependencies"], f"no extra {extra}"
    else:
        assert program == "python", f"{page.name}: {command}"
        if args[0] == "-m":
            check_module(args[1], args[2:])
        elif PLACEHOLDER.search(command):
            assert (ROOT / args[0]).is_file(), f"{page.name}: no script {args[0]}"
        else:
            check = {
                "train.py": check_train,
                "sweep.py": lambda argv: check_sweep(argv, tmp_path / "runs"),
                "report.py": check_report,
            }
            assert args[0] in check, f"{page.name}: {command}"
            check[args[0]](args[1:])


def test_the_pages_show_the_commands_this_test_checks():
    shown = {command.split()[1 if command.startswith("python") else 0] for _, command in COMMANDS}
    assert {"train.py", "sweep.py", "report.py", "-m"} <= shown
    assert len(COMMANDS) > 30
