"""`gradleak app` in a real browser: the page loads without reaching beyond this machine, and a run
started from it shows a reconstruction whose PSNR is the one `gradleak attack --json` reports."""

from __future__ import annotations

import json
import re
import shutil
from urllib.parse import urlparse

import pytest

from gradleak.app.live import LiveConfig
from gradleak.cli import main

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def app_url():
    pytest.importorskip("gradio", reason="the app extra is not installed (pip install 'gradleak[app]')")
    from gradleak.app.ui import launch

    page, url = launch()
    yield url
    page.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.mark.timeout(120)
def test_a_run_from_the_page_shows_the_clis_reconstruction_and_nothing_leaves_the_machine(app_url, browser, capsys, tmp_path):
    local = urlparse(app_url).netloc
    outside: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).netloc not in ("", local) else None)
    page.goto(app_url)
    page.locator("#run").click()
    final = page.locator("#final-psnr")
    final.wait_for(timeout=60_000)
    shown = float(final.inner_text())
    assert page.locator("#guess img").count() == 1  # the reconstruction is on the page
    status = page.locator("#status").inner_text()
    assert re.search(r"no DP guarantee .* [0-9,]+ bytes", status), status
    page.close()

    capsys.readouterr()
    assert main(["--quiet", *LiveConfig().command(), "--json", "--out", str(tmp_path)]) == 0
    cli = json.loads(capsys.readouterr().out)["psnr"]
    assert cli > 40 and shown == pytest.approx(cli, abs=0.01)  # the page shows two decimals
    assert outside == [], f"the page reached beyond this machine: {outside}"


@pytest.mark.timeout(120)
def test_an_upload_that_is_not_an_image_is_refused_on_the_page(app_url, browser, tmp_path):
    fake = tmp_path / "holiday.png"
    fake.write_text("this is a text file, not a picture")
    page = browser.new_page()
    page.goto(app_url)
    page.get_by_label("my upload").check()
    page.locator("input[type=file]").set_input_files(str(fake))
    page.get_by_text("holiday.png").first.wait_for(timeout=20_000)  # the upload arrived
    page.locator("#run").click()
    page.get_by_text("is not an image Pillow can read").first.wait_for(timeout=20_000)
    assert page.locator("#final-psnr").count() == 0
    page.close()
