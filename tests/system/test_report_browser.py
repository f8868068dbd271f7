"""The HTML report in a real browser: every image of the manifest is shown and loads.

Needs Debian's chromium (`.ci/run` installs it); without it the test is skipped, since the
test suite installs nothing at run time.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run does this), so the "
    "report cannot be opened in a real browser",
)

# Appended to a copy of the page: load every image (even lazy ones), then open the first
# thumbnail in the viewer, and write what happened into attributes of <body>.
CHECK = """
<script>
addEventListener('load', () => {
  const images = [...document.querySelectorAll('img[src]')];
  images.forEach(image => { image.loading = 'eager'; });
  const shown = image => image.naturalWidth > 0 && image.getBoundingClientRect().width > 0;
  const viewer = () => {
    const big = document.querySelector('#viewer img');
    if (!big.complete) return setTimeout(viewer, 50);
    document.body.dataset.viewer = document.querySelector('#viewer').open + ' '
      + big.getAttribute('src') + ' ' + big.naturalWidth;
  };
  const check = () => {
    if (!images.every(image => image.complete)) return setTimeout(check, 50);
    document.body.dataset.loaded = JSON.stringify(
      images.filter(shown).map(image => decodeURIComponent(image.getAttribute('src'))));
    document.querySelector('a.thumb').click();
    viewer();
  };
  check();
});
</script>
"""


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *arguments],
        capture_output=True, text=True, timeout=120,
    )


def test_report_shows_every_image_in_chromium(run_cli, tmp_path, sample_dir, small_model_file):
    out = tmp_path / "out"
    run_cli("-q", "activations", sample_dir, "-m", small_model_file, "--preprocess", "unit",
            "--size", "32", "-l", "conv", "-o", out)
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted(record["file"] for record in manifest["outputs"])
    assert len(files) == 6

    page = (out / "index.html").read_text()
    (out / "check.html").write_text(page.replace("</body>", CHECK + "</body>"))
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", (out / "check.html").as_uri(),
                   profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-loaded="([^"]*)"', dom.stdout)
    assert loaded, "the page never finished loading its images"
    assert sorted(json.loads(html.unescape(loaded[1]))) == files

    viewer = re.search(r'data-viewer="([^"]*)"', dom.stdout)
    assert viewer, "clicking a thumbnail did not open the viewer"
    is_open, source, width = html.unescape(viewer[1]).split(" ")
    assert is_open == "true" and source in (files[0], *files) and int(width) > 0

    screenshot = tmp_path / "report.png"
    shot = chromium("--window-size=1280,1000", f"--screenshot={screenshot}",
                    (out / "index.html").as_uri(), profile=tmp_path / "profile")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1000, 1280) and pixels.std() > 10  # drawn, not blank
    print(f"Screenshot of the report: {screenshot}")
