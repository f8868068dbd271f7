"""The import contracts of pyproject.toml ([tool.importlinter]): cli -> api -> techniques ->
models -> render | io, nothing imports the package root, no cycles between sibling modules."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(source: Path) -> subprocess.CompletedProcess:
    """lint-imports with this project's contracts on the package under `source`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")], cwd=source,
        env={"PYTHONPATH": str(source), "PATH": ""}, capture_output=True, text=True,
        timeout=120,
    )


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("io/images.py", "from cnnviz_cli.api import cam", "Layers"),  # upward
    ("render/grid.py", "from cnnviz_cli.io import images", "Layers"),  # render and io: siblings
    ("models/labels.py", "import cnnviz_cli", "package root"),
    ("api/maximize.py", "from cnnviz_cli.api import examples", "cycles"),  # examples -> maximize
])
def test_a_broken_contract_fails(tmp_path, module, line, contract):
    """Each contract catches its kind of import in a copy of the package."""
    copy = tmp_path / "cnnviz_cli"
    shutil.copytree(ROOT / "cnnviz_cli", copy, ignore=shutil.ignore_patterns("__pycache__"))
    if contract == "cycles":  # close a cycle: examples imports maximize back
        (copy / "api/examples.py").write_text(
            (copy / "api/examples.py").read_text() + "\nfrom cnnviz_cli.api import maximize\n")
    (copy / module).write_text((copy / module).read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(contract in row for row in broken), result.stdout
