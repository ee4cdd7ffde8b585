"""``gradleak app``: serve the live attack page on this machine and print its address."""

from __future__ import annotations

import argparse

from gradleak.commands.options import number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "app",
        help="a local web page: pick an image, attack and defenses, watch the reconstruction",
        description="Serve the live attack page (Gradio, the optional 'app' extra) on this machine, offline. "
        "Stop it with Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=number(int, 1, 65535), help="port (default: Gradio's, 7860, or the next free one)")
    parser.add_argument("--device", default="cpu", help="where attacks run: cpu, cuda or cuda:N (default cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradleak.app.ui import launch

    page, url = launch(args.host, args.port, args.device)
    print(f"gradleak app: open {url} (Ctrl-C stops it)", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()
    return 0
