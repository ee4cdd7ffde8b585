"""The page of ``gradleak app``, laid out with Gradio (the optional ``app`` extra).

Offline by construction: analytics and update checks off (``GRADIO_ANALYTICS_ENABLED``), no share
link, server-side rendering off (it would need Node), and the default theme's fonts, which Gradio
bundles. All logic lives in :mod:`gradleak.app.live`; this module only wires widgets to it.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from gradleak.app.live import EMBEDDED, SERVERS, Frame, LiveConfig, live_attack, validate_upload
from gradleak.attacks import ATTACKS
from gradleak.errors import GradleakError
from gradleak.models import MODELS

# The defenses a lecture compares; any other spec can be typed in below them.
PRESET_DEFENSES = ("prune:ratio=0.9", "dp-sgd:epsilon=8", "dp-sgd:epsilon=1", "secagg")
SCALE = 8  # a 32x32 reconstruction is drawn 256x256, pixel for pixel


def require_gradio() -> Any:
    """Import Gradio with its phoning home switched off, or say how to install it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read at import: no analytics, no version check
    try:
        import gradio
    except ImportError:
        raise GradleakError("gradleak app needs the app extra: pip install 'gradleak[app]'") from None
    return gradio


def build_page(device: str = "cpu") -> Any:
    """The Gradio Blocks of the page (not launched)."""
    gr = require_gradio()
    with gr.Blocks(title="gradleak: watch a gradient leak", analytics_enabled=False) as page:
        gr.Markdown("## gradleak: watch a server rebuild a client's image from its update\n"
                    "Pick an image, a model, an attack and defenses, then **Run**. The picture on the right is "
                    "the attacker's current guess; the curve is its PSNR against the truth (20 dB: recognisable).")
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio(["embedded image", "my upload"], value="embedded image", label="victim's image")
                dataset = gr.Dropdown(list(EMBEDDED), value="faces", label="dataset")
                index = gr.Number(value=0, precision=0, minimum=0, label="image index")
                upload = gr.File(label="your image (PNG or JPEG, under 10 MiB)", type="filepath")
                model = gr.Dropdown(MODELS.names(), value="lenet-zhu", label="model")
                attack = gr.Dropdown(ATTACKS.names(), value="idlg", label="attack", allow_custom_value=True)
                server = gr.Dropdown(SERVERS.names(), value="honest", label="server")
                presets = gr.CheckboxGroup(list(PRESET_DEFENSES), label="defenses")
                extra = gr.Textbox(label="more defense specs, one per line (e.g. quantize:bits=4)", lines=1)
                cohort = gr.Slider(1, 16, value=1, step=1, label="clients in the round (secure aggregation needs 2+)")
                seed = gr.Number(value=0, precision=0, label="attack seed")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    stop = gr.Button("Stop", elem_id="stop")
            with gr.Column(scale=2):
                with gr.Row():
                    truth = gr.Image(label="client's image (the truth)", interactive=False, height=260)
                    guess = gr.Image(label="server's reconstruction", interactive=False, height=260, elem_id="guess")
                status = gr.Markdown("Press **Run**.", elem_id="status")
                with gr.Row():
                    psnr_plot = gr.LinePlot(x="evaluations", y="PSNR (dB)", title="PSNR", height=220)
                    ssim_plot = gr.LinePlot(x="evaluations", y="SSIM", title="SSIM", height=220, y_lim=[0, 1])

        def start(source_, dataset_, index_, upload_, model_, attack_, server_, presets_, extra_, cohort_, seed_
                  ) -> Iterator[tuple]:
            try:
                image = None
                if source_ == "my upload":
                    if not upload_:
                        raise GradleakError("no image uploaded; choose a file or pick an embedded image")
                    image = str(validate_upload(upload_))
                specs = (*presets_, *(line.strip() for line in (extra_ or "").splitlines() if line.strip()))
                config = LiveConfig(dataset=dataset_, index=int(index_ or 0), image=image, model=model_, attack=attack_,
                                    server=server_, defenses=specs, cohort_size=int(cohort_), seed=int(seed_ or 0),
                                    device=device)
                for frame in live_attack(config):
                    yield _outputs(frame, config)
            except GradleakError as exc:
                raise gr.Error(str(exc)) from None

        inputs = [source, dataset, index, upload, model, attack, server, presets, extra, cohort, seed]
        running = run.click(start, inputs, [truth, guess, status, psnr_plot, ssim_plot])
        stop.click(None, cancels=[running])
    return page


def launch(host: str = "127.0.0.1", port: int | None = None, device: str = "cpu") -> tuple[Any, str]:
    """Start the page's server in the background; returns the Blocks and the local URL."""
    page = build_page(device)
    # `max_file_size` is a second line behind validate_upload: Gradio stops a huge upload mid-stream
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                            ssr_mode=False, max_file_size=4 * 10 * 2**20, footer_links=[])
    return page, url


def _outputs(frame: Frame, config: LiveConfig) -> tuple:
    import pandas as pd  # a Gradio dependency

    curve = pd.DataFrame(frame.curve, columns=["evaluations", "PSNR (dB)", "SSIM"])
    curve["PSNR (dB)"] = curve["PSNR (dB)"].clip(upper=100)  # a perfect copy is inf dB
    lines = [f"**{frame.evaluations:,} gradient evaluations** · PSNR **{frame.psnr:.1f} dB** · SSIM {frame.ssim:.3f}"]
    if frame.done:
        cost = frame.cost
        privacy = (f"ε = {cost['epsilon']:.2g} (δ = {cost['delta']:g}, {cost['mechanism']})"
                   if cost["epsilon"] is not None else "no DP guarantee (ε = ∞)")
        lines += [f"finished: <span id='final-psnr'>{frame.psnr:.2f}</span> dB",
                  f"privacy: {privacy} · a client sends and receives {cost['client_bytes']:,.0f} bytes "
                  f"({cost['client_bytes'] / cost['plaintext_bytes']:.2f}× its plain float32 update) · "
                  f"the server sees {cost['server_sees']}",
                  "the same run on the command line: `gradleak " + " ".join(config.command()) + " --json`"]
    truth = _pixels(frame.truth)
    return truth, _pixels(frame.image), "\n\n".join(lines), curve, curve


def _pixels(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats (H, W, C) -> uint8 RGB, enlarged without smoothing."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return np.kron((rgb * 255).round().astype(np.uint8), np.ones((SCALE, SCALE, 1), dtype=np.uint8))
