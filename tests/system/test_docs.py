"""Every `cnnviz ...` example in README.md, in the pages of docs/ and in the commands' --help
runs, on the demo model.

Examples come from the shell code blocks of README.md and docs/*.md (fences without a language,
or bash/sh/shell/console) and from the `Example:` blocks of the help texts. A code block
preceded by `<!-- not run in tests: REASON -->`, or a command line ending in
`# not run in tests: REASON` (a page or a help), is skipped with that reason. The examples of
one block run in order in one temporary folder, so a later example may use what an earlier one
wrote (a baseline, a PNG to inspect); running one example alone first runs the earlier examples
of its block. A `toml` block whose first line is a comment naming a file (`# pyproject.toml`)
is written into the folder of the next shell block of its page. An example that repeats another
(the same command line after the same earlier lines of its block, such as the README's one
example per command) is tested once.
"""

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"not run in tests:\s*(.*?)\s*(?:-->)?\s*$")
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
FILE_NAME = re.compile(r"#\s*([\w.-]+\.toml)\s*$")
FILES: dict[str, dict[str, str]] = {}  # block -> the files the page writes before it


@dataclass(frozen=True)
class Example:
    """One command line of the docs."""

    id: str
    block: str  # examples of one block share a working folder and run in order
    index: int  # position in the block
    text: str
    skip: str | None  # the reason the docs give for not running it


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join lines continued with a trailing backslash; keep the first line's number."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1].rstrip())
            continue
        pending = None
        joined.append((number, line.strip()))
    if pending is not None:
        joined.append(pending)
    return joined


def _examples_of(lines: list[tuple[int, str]], block: str, skip: str | None, name) -> list:
    examples = []
    for number, line in _logical_lines(lines):
        if not line.startswith("cnnviz "):
            continue
        marker = SKIP.search(line.split("#", 1)[1]) if "#" in line else None
        command = shlex.split(line, comments=True)[1:]
        examples.append(Example(name(number, command), block, len(examples), line,
                                skip or (marker[1] if marker else None)))
    return examples


def _command_name(arguments: list[str]) -> str:
    return next((a for a in arguments if not a.startswith("-")), "cnnviz")


def page_examples(page: Path) -> list[Example]:
    """The command lines of the shell code blocks of a page (README.md or docs/*.md)."""
    name = "README" if page == README else page.name
    examples: list[Example] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    fence, block_lines, block_skip, start = None, [], None, 0
    files: dict[str, str] = {}  # written by toml blocks, for the next shell block
    previous = ""  # the last non-blank line before the current one
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence, block_lines, start = stripped[3:].strip().lower(), [], number
            marker = SKIP.search(previous) if previous.startswith("<!--") else None
            block_skip = marker[1] if marker else None
        elif fence is not None and stripped.startswith("```"):
            named = FILE_NAME.match(block_lines[0][1].strip()) if block_lines else None
            if fence == "toml" and named:
                files[named[1]] = "\n".join(line for _, line in block_lines) + "\n"
            if fence in SHELL_FENCES and files:
                FILES[f"{name}:{start}"], files = files, {}
            if fence in SHELL_FENCES:
                examples += _examples_of(
                    block_lines, f"{name}:{start}", block_skip,
                    lambda n, args: f"{name}:{n}:{_command_name(args)}",
                )
            fence = None
        elif fence is not None:
            block_lines.append((number, line))
        if stripped:
            previous = stripped
    return examples


def help_examples() -> list[Example]:
    """The command lines of the `Example:` blocks in the help of the group and every command."""
    from cnnviz_cli.cli import cli

    commands = {"cnnviz": cli, **cli.commands}
    examples: list[Example] = []
    for name, command in commands.items():
        lines = (command.help or "").splitlines()
        starts = [i for i, line in enumerate(lines) if line.strip() in ("Example:", "Examples:")]
        for start in starts:
            block = []
            for offset, line in enumerate(lines[start + 1 :], start=1):
                if not line.strip():
                    break
                block.append((offset, line))
            examples += _examples_of(
                block, f"help:{name}:{start}", None,
                lambda n, _args, name=name: f"help:{name}:{n}",
            )
    return examples


PAGE_EXAMPLES = {page: page_examples(page) for page in PAGES}
README_EXAMPLES = PAGE_EXAMPLES[README]
HELP_EXAMPLES = help_examples()
ALL_EXAMPLES = [*(e for examples in PAGE_EXAMPLES.values() for e in examples), *HELP_EXAMPLES]
BLOCKS: dict[str, list[Example]] = {}
for _example in ALL_EXAMPLES:
    BLOCKS.setdefault(_example.block, []).append(_example)


def _first_of_each(examples: list[Example]) -> list[Example]:
    """The examples but those that repeat an earlier one: the same command line after the same
    earlier lines of its block does the same."""
    seen: set[tuple[str, ...]] = set()
    kept = []
    for example in examples:
        run = tuple(e.text for e in BLOCKS[example.block][: example.index + 1])
        if run not in seen:
            seen.add(run)
            kept.append(example)
    return kept


def test_the_docs_have_examples():
    from cnnviz_cli.cli import cli

    in_readme = {_command_name(shlex.split(e.text, comments=True)[1:]) for e in README_EXAMPLES}
    assert in_readme >= set(cli.commands), "the README has an example of every command"
    assert sum(map(len, PAGE_EXAMPLES.values())) >= 30
    with_examples = {example.id.split(":")[1] for example in HELP_EXAMPLES}
    assert with_examples == {"cnnviz", *cli.commands}, "every command's help has an example"
    assert len({example.id for example in ALL_EXAMPLES}) == len(ALL_EXAMPLES)
    for block in BLOCKS.values():
        texts = [example.text for example in block]
        assert len(set(texts)) == len(texts), f"a command line repeated in {block[0].block}"
    assert all(example.skip for example in ALL_EXAMPLES if example.skip is not None), "say why"


# --- the inputs the examples name ------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with what the examples read besides sample_images/: training checkpoints of the
    demo model (ck/epoch_NN.weights.h5), the demo model as a file with its labels (shapes.keras,
    shapes.txt) and a small validation set (val/ with masks, val.csv)."""
    import keras

    from cnnviz_cli.demo.shapes import CLASS_NAMES, draw_scene

    folder = tmp_path_factory.mktemp("doc-inputs")
    shutil.copytree(ROOT / "sample_images", folder / "sample_images")
    (folder / "cnnviz_cli").symlink_to(ROOT / "cnnviz_cli", target_is_directory=True)

    model = keras.models.load_model(ROOT / "cnnviz_cli/demo/shapes_cnn.keras", compile=False)
    model.save(folder / "shapes.keras")
    (folder / "shapes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    trained = model.get_weights()
    rng = np.random.default_rng(0)
    noise = [rng.normal(scale=0.05, size=w.shape).astype("float32") for w in trained]
    (folder / "ck").mkdir()
    for epoch in (0, 5, 6):
        share = 1.0 - epoch / 6
        model.set_weights([w + share * n for w, n in zip(trained, noise, strict=True)])
        model.save_weights(folder / "ck" / f"epoch_{epoch:02d}.weights.h5")

    (folder / "val" / "masks").mkdir(parents=True)
    rows = ["image,class,mask"]
    rng = np.random.default_rng(3)
    for index, name in enumerate(CLASS_NAMES):
        image, masks = draw_scene(rng, 128, [index])
        Image.fromarray(image).save(folder / "val" / f"{name}.png")
        Image.fromarray(masks[0].astype("uint8") * 255).save(folder / "val/masks" / f"{name}.png")
        rows.append(f"val/{name}.png,{name},val/masks/{name}.png")
    (folder / "val.csv").write_text("\n".join(rows) + "\n")
    return folder


_folders: dict[str, Path] = {}
_finished: set[str] = set()


def _fewer_steps(arguments: list[str]) -> dict[str, str]:
    """Cheaper defaults for the optimising examples, set as users set defaults (environment
    variables; the command line still wins): what the examples show runs, in fewer steps.
    Only where the option takes effect (refused otherwise)."""
    command = _command_name(arguments)
    if command == "maximize" and "--from-images" not in arguments:
        return {"CNNVIZ_MAXIMIZE_STEPS": "24"}
    if command == "dream":
        return {"CNNVIZ_DREAM_STEPS": "3", "CNNVIZ_DREAM_OCTAVES": "2"}
    if command == "reconstruct" and "inversion" in arguments:
        return {"CNNVIZ_RECONSTRUCT_STEPS": "30"}
    return {}


def _run(example: Example, folder: Path) -> click.testing.Result:
    from cnnviz_cli.cli import cli

    arguments = shlex.split(example.text, comments=True)[1:]
    result = CliRunner().invoke(cli, arguments, catch_exceptions=False,
                                env=_fewer_steps(arguments))
    _finished.add(example.id)
    return result


@pytest.mark.parametrize(
    "example", [pytest.param(e, id=e.id, marks=[pytest.mark.skip(reason=e.skip)] if e.skip else [])
                for e in _first_of_each(ALL_EXAMPLES)],
)
def test_example_runs(example: Example, inputs: Path, tmp_path_factory, monkeypatch):
    if example.block not in _folders:
        folder = tmp_path_factory.mktemp(re.sub(r"\W+", "-", example.block))
        for entry in inputs.iterdir():
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        for name, text in FILES.get(example.block, {}).items():
            (folder / name).write_text(text, encoding="utf-8")
        _folders[example.block] = folder
    folder = _folders[example.block]
    monkeypatch.chdir(folder)
    for earlier in BLOCKS[example.block][: example.index]:
        if earlier.id not in _finished and not earlier.skip:
            _run(earlier, folder)
    result = _run(example, folder)
    assert result.exit_code == 0, f"`{example.text}` exited {result.exit_code}:\n{result.output}"
