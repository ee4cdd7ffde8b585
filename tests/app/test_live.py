"""The app's logic without a browser: uploads refused with a reason, frames that show the search,
the CLI's PSNR for the same seed, costs beside it, and an attack that stops when the page does."""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest

from gradleak.app import live
from gradleak.app.live import LiveConfig, live_attack, validate_upload
from gradleak.cli import main
from gradleak.errors import GradleakError

# A short budget leaves the search mid-way, where the PSNR depends on every step: a run that
# differs from the CLI's in seed, start or scoring lands far from it.
SHORT = "idlg:iterations=150,restarts=1"  # seeds 0 and 3 end 0.02 dB apart, float64 reruns within 1e-9


def cli_psnr(config: LiveConfig, capsys, tmp_path) -> float:
    capsys.readouterr()
    assert main(["--quiet", *config.command(), "--json", "--out", str(tmp_path)]) == 0
    return json.loads(capsys.readouterr().out)["psnr"]


def test_uploads_that_are_not_images_or_too_large_are_refused_with_a_reason(tmp_path, monkeypatch):
    from PIL import Image

    good = tmp_path / "me.png"
    Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8)).save(good)
    assert validate_upload(good) == good

    fake = tmp_path / "notes.png"
    fake.write_text("not a picture at all")
    with pytest.raises(GradleakError, match="not an image"):
        validate_upload(fake)
    truncated = tmp_path / "half.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(GradleakError, match="not an image"):
        validate_upload(truncated)

    monkeypatch.setattr(live, "MAX_UPLOAD_BYTES", good.stat().st_size - 1)
    with pytest.raises(GradleakError, match="MiB"):
        validate_upload(good)
    monkeypatch.setattr(live, "MAX_UPLOAD_BYTES", 10 * 2**20)
    monkeypatch.setattr(live, "MAX_UPLOAD_PIXELS", 40 * 30 - 1)
    with pytest.raises(GradleakError, match="30x40 pixels"):
        validate_upload(good)


def test_frames_show_the_search_and_the_last_one_scores_as_the_cli_does(capsys, tmp_path):
    config = LiveConfig(dataset="faces", index=0, attack=SHORT, seed=3)
    frames = list(live_attack(config, interval=0))
    evaluations = [f.evaluations for f in frames[:-1]]
    assert len(frames) >= 5 and evaluations == sorted(evaluations) and not any(f.done for f in frames[:-1])
    final = frames[-1]
    assert final.done and final.image.shape == final.truth.shape == (32, 32, 1)
    assert frames[0].psnr < final.psnr - 3  # the picture visibly improves
    assert [p for _, p, _ in final.curve] == [f.psnr for f in frames]
    assert final.psnr == pytest.approx(cli_psnr(config, capsys, tmp_path), abs=1e-3)


def test_the_page_shows_epsilon_and_the_bytes_the_protocol_measures(capsys):
    config = LiveConfig(dataset="faces", attack="idlg:iterations=20,restarts=1", cohort_size=2,
                        defenses=("dp-sgd:epsilon=8", "secagg"), noise_seed=0)
    final = list(live_attack(config, interval=0))[-1]
    assert final.cost["epsilon"] == pytest.approx(8, rel=0.01) and final.cost["mechanism"] == "dp-sgd"
    assert final.cost["server_sees"] == "only the aggregate"
    # the same protocol run alone, for the face model's 9,074 parameters
    capsys.readouterr()
    assert main(["secagg", "--clients", "2", "--dim", "9074", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert final.cost["client_bytes"] == alone["client_bytes_sent"] + alone["client_bytes_received"]
    assert final.cost["plaintext_bytes"] == alone["plaintext_bytes"]


def test_closing_the_stream_stops_the_attack():
    # under strong DP noise the search never solves, and it may not give up: only a stop ends it early
    stream = live_attack(LiveConfig(attack="dlg:iterations=100000,restarts=1,abandon_stalled=false",
                                    defenses=("dp-sgd:epsilon=1",), noise_seed=0), interval=0)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 20
    while any(t.name == "gradleak-dlg:iterations=100000,restarts=1,abandon_stalled=false" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the attack kept running after the page let go"
        time.sleep(0.05)


def test_an_unknown_server_is_named():
    with pytest.raises(GradleakError, match="unknown server 'malicious'.*honest"):
        next(live_attack(LiveConfig(server="malicious")))


def test_without_the_app_extra_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["app"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gradleak: error: gradleak app needs the app extra: pip install 'gradleak[app]'"]
