"""The documentation site: `mkdocs build --strict` passes (a broken link or anchor, or a page
the nav names that does not exist, fails it), the README is a short front page, and the pages
read off the code (options reference, methods table) say what the code says."""

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "docs" / "hooks"


def _hook_module(name: str):
    spec = importlib.util.spec_from_file_location(f"cnnviz_docs_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HOOKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(HOOKS))
    return module


reference = _hook_module("reference")


def _text(html: str) -> str:
    """The visible text of an HTML page, roughly."""
    return unescape(re.sub(r"<[^>]+>", "", html))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_page(site):
    pages = {path.relative_to(ROOT / "docs").with_suffix("").as_posix()
             for path in (ROOT / "docs").glob("*.md")}
    for page in pages | {"reference/options"}:
        assert (site / page / "index.html").is_file(), page
    front = _text((site / "index.html").read_text())
    assert "make demo" in front and "make test" in front


@pytest.mark.slow
def test_the_options_reference_lists_every_option_of_every_command(site):
    from cnnviz_cli.cli import cli

    text = _text((site / "reference/options/index.html").read_text())
    for name, command in cli.commands.items():
        assert f"cnnviz {name}" in text
        for param in command.get_params(click.Context(command, info_name=name)):
            for flag in getattr(param, "opts", []) if isinstance(param, click.Option) else []:
                assert flag in text, f"{flag} of cnnviz {name} is missing"


@pytest.mark.slow
def test_the_methods_table_lists_every_registered_method(site):
    from cnnviz_cli.techniques.cam import methods

    html = (site / "cam/index.html").read_text()
    for spec in methods().values():
        assert f"<code>{spec.name}</code>" in html, spec.name
    assert "<!-- cnnviz:" not in html


def test_the_reference_is_read_off_the_table_of_a_command():
    from cnnviz_cli.cli import cli

    cam = cli.commands["cam"]
    table = reference.table_of(cam)
    rows = {row[0]: row for rows in reference.options_of("cam", cam).values() for row in rows}
    for option in table:
        if option.argument:
            continue
        flags = ", ".join(f"`{flag}`" for flag in ([option.short] if option.short else [])
                          + [option.long])
        assert flags in rows, option.long
        assert option.help.split(".")[0] in rows[flags][3]
    seed = rows["`--seed`"]
    assert "`0`" in seed[2] and "Applies only when" in seed[3]  # default, "only with" rule


def test_a_command_without_a_table_is_read_from_its_click_parameters():
    @click.command()
    @click.option("--steps", type=click.IntRange(1, 9), default=4, show_default=True,
                  help="How many.")
    @click.option("--mode", type=click.Choice(["fast", "slow"]), help="Which way.")
    def tool(steps, mode):
        """Do a thing."""

    assert reference.table_of(tool) is None
    section = reference.command_section("tool", tool)
    assert "**Options**" in section  # one section: no "Other"
    assert "| `--steps` | integer (>= 1 and <= 9) | `4` | How many. |" in section
    assert "`fast` \\| `slow` |" in section and "Do a thing." in section


def test_a_table_named_by_its_api_module_is_found():
    cam = importlib.import_module("cnnviz_cli.api.cam")
    command = click.Command("cam")
    command.table = "cam"
    assert [option.name for option in reference.table_of(command)] == \
        [option.name for option in cam.table()]


def test_the_readme_is_the_front_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "make demo" in readme and "make test" in readme
    for target in re.findall(r"\]\(([^)#]+)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"the README links to {target}, which is missing"
            assert target.startswith("docs/"), f"{target}: the site only has docs/"


def test_no_generated_page_is_committed():
    assert not (ROOT / "docs" / "reference").exists()
    assert not (ROOT / "docs" / "index.md").exists()
