"""Shared by the eval tests: a real headless browser to open reports in."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

HEADLESS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=10000",
]
# records each image's decoded width on the body, where --dump-dom shows it
PROBE = """<script>
window.addEventListener("load", function () {
  var widths = Array.prototype.map.call(document.images, function (img) { return img.naturalWidth; });
  document.body.setAttribute("data-image-widths", widths.join(","));
});
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; without it the test is skipped, with why (.ci/run installs it beforehand)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does this before the tests)")
    return found


@pytest.fixture
def decoded_widths(chromium, tmp_path_factory) -> Callable[[Path], list[int]]:
    """Load a copy of a page in headless chromium, with a probe script added, and read the width
    each <img> decoded to (0: the browser could not decode it)."""

    def widths(page: Path) -> list[int]:
        profile = tmp_path_factory.mktemp("chromium-profile")  # empty: no state carries over
        probed = tmp_path_factory.mktemp("probed") / page.name
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        run = subprocess.run(
            [chromium, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
        found = re.search(r'data-image-widths="([0-9,]*)"', run.stdout)
        assert found, f"the probe script did not run: {run.stderr[-2000:]}"
        return [int(w) for w in found.group(1).split(",") if w]

    return widths
