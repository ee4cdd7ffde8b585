"""One live attack, as the page runs it: a teacher's choices in, a stream of frames out.

The round is built exactly as ``gradleak attack`` builds it (a :class:`~gradleak.scenario.Scenario`,
a defense stack, a server), the attack runs in a worker thread, and every check of its search
(``on_check``, see :func:`gradleak.attacks.search_lbfgs.lbfgs_search`) hands the current guess to the
caller as a :class:`Frame` with its PSNR/SSIM against the truth. The last frame is scored with
:func:`gradleak.eval.metrics.score`, the CLI's own scoring, so the page and
``gradleak attack ... --json`` give the same PSNR for the same seed. Like ``gradleak.eval``, this
module holds the truth only to score; the attack receives the server's view alone.
"""

from __future__ import annotations

import inspect
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from gradleak.attacks import ATTACKS, build_attack
from gradleak.defenses import DefenseStack, build_stack
from gradleak.device import resolve_device
from gradleak.errors import GradleakError
from gradleak.eval.metrics import Scores, score
from gradleak.federated import Round
from gradleak.registry import Registry
from gradleak.scenario import Scenario, build_round
from gradleak.spec import config_fields, parse_spec
from gradleak.threat import Reconstruction, Truth

MAX_UPLOAD_BYTES = 10 * 2**20  # a phone photo fits; anything larger is refused before decoding
MAX_UPLOAD_PIXELS = 50_000_000  # refuses decompression bombs: a small file that decodes to a huge image
EMBEDDED = ("faces", "photos")  # embedded datasets whose images a class recognises (digits are 8x8)

# A server turns the scenario and the defenses into the round it observes. Only the honest-but-curious
# server exists yet; one that deviates from the protocol registers a builder of its own here.
ServerBuilder = Callable[[Scenario, DefenseStack, torch.device, "int | None"], Round]
SERVERS: Registry[ServerBuilder] = Registry("server")


@SERVERS.register("honest")
def honest_server(scenario: Scenario, defenses: DefenseStack, device: torch.device, noise_seed: int | None) -> Round:
    """Honest-but-curious: runs the protocol as written and attacks what it observes."""
    return build_round(scenario, defenses, device, noise_seed=noise_seed)


@dataclass(frozen=True)
class LiveConfig:
    dataset: str = "faces"  # where the victim's image comes from, unless ``image`` is given
    index: int = 0  # the victim's example in ``dataset``
    image: str | None = None  # a validated upload (see validate_upload) instead of a dataset example
    model: str = "lenet-zhu"  # DLG's network
    attack: str = "idlg"  # an attack spec, e.g. "dlg:iterations=2000"
    server: str = "honest"  # a name in SERVERS
    defenses: tuple[str, ...] = ()  # defense specs, applied stage by stage
    cohort_size: int = 1  # clients in the round; secure aggregation needs 2 or more
    seed: int = 0  # the attack's seed (`gradleak attack --seed`)
    noise_seed: int | None = None  # seeds DP noise for a reproducible lesson (not private); None: OS randomness
    device: str = "cpu"

    def scenario(self) -> Scenario:
        if self.image is not None:
            return Scenario(images=(self.image,), channels=3, cohort_size=self.cohort_size, model=self.model)
        return Scenario(dataset=self.dataset, index=self.index, cohort_size=self.cohort_size, model=self.model)

    def command(self) -> list[str]:
        """The ``gradleak attack`` arguments that run the same attack on the same round."""
        source = ["--image", self.image] if self.image is not None else ["--dataset", self.dataset, "--index", str(self.index)]
        args = ["attack", "--attack", self.attack, "--model", self.model, *source, "--cohort-size", str(self.cohort_size),
                "--seed", str(self.seed), "--device", self.device]
        for spec in self.defenses:
            args += ["--defense", spec]
        return args + ([] if self.noise_seed is None else ["--noise-seed", str(self.noise_seed)])


@dataclass(frozen=True)
class Frame:
    """The attack's guess at one check, scored; the last frame of a run has ``done`` set."""

    evaluations: int  # gradient evaluations spent so far
    image: np.ndarray  # the guess matched to the victim's first image, (H, W, C) in [0, 1]
    truth: np.ndarray  # that image, (H, W, C) in [0, 1]
    psnr: float  # dB, against the truth
    ssim: float
    curve: tuple[tuple[int, float, float], ...]  # (evaluations, PSNR, SSIM) of every frame so far
    done: bool = False
    cost: dict[str, Any] = field(default_factory=dict)  # epsilon and bytes, from the round (not the attack)
    scores: Scores | None = None  # the final scores, as `gradleak attack` computes them


def validate_upload(path: str | Path) -> Path:
    """``path`` if it is an image file of acceptable size; otherwise a GradleakError saying why."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise GradleakError(f"upload {path.name} did not arrive; choose the file again")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise GradleakError(f"upload {path.name} is {size / 2**20:.1f} MiB; choose an image under {MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise GradleakError(f"upload {path.name} is {width}x{height} pixels; choose a smaller image")
            image.verify()  # reads the whole file: a truncated or forged image fails here
    except GradleakError:
        raise
    except Exception:  # Pillow raises many types for files that are not images
        raise GradleakError(f"upload {path.name} is not an image Pillow can read; choose a PNG or JPEG") from None
    return path


def round_cost(round_: Round, defenses: DefenseStack) -> dict[str, Any]:
    """What the defenses cost and guarantee: ε (δ) of each DP mechanism, bytes a client sends and receives."""
    update_bytes = sum(u.numel() * 4 for u in round_.view.update)  # the float32 upload without defenses
    sent = round_.cost.get("client_bytes_sent", update_bytes)
    received = round_.cost.get("client_bytes_received", 0.0)
    dp = [(d.name, d.epsilon(), getattr(d.config, "delta", None)) for d in defenses if d.epsilon() is not None]
    return {
        "epsilon": dp[0][1] if dp else None,
        "delta": dp[0][2] if dp else None,
        "mechanism": dp[0][0] if dp else None,
        "client_bytes": float(sent + received),
        "plaintext_bytes": float(update_bytes),
        "server_sees": "only the aggregate" if round_.view.aggregate else "each upload",
    }


def live_attack(config: LiveConfig, interval: float = 0.25, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Run the attack and yield a scored frame at most every ``interval`` seconds, then the final one.

    The attack runs in a worker thread so that the caller (a page) stays responsive; closing the
    generator, or setting ``stop``, ends the attack at its next check.
    """
    attack = build_attack(config.attack, **_seed_override(config))
    defenses = build_stack(list(config.defenses))
    server = SERVERS.get(config.server)
    device = resolve_device(config.device)
    round_ = server(config.scenario(), defenses, device, config.noise_seed)
    truth, normalization = round_.truth, round_.view.normalization
    cost = round_cost(round_, defenses)

    stop = stop or threading.Event()
    checks: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def on_check(evaluations: int, images: torch.Tensor) -> None:
        if stop.is_set():
            raise _Stopped
        checks.put((evaluations, normalization.denormalize(images.detach().float().cpu())))

    def work() -> None:
        try:
            watch = {"on_check": on_check} if "on_check" in inspect.signature(attack.reconstruct).parameters else {}
            outcome["reconstruction"] = attack.reconstruct(round_.view, **watch)
        except _Stopped:
            pass
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc
        finally:
            checks.put(None)

    worker = threading.Thread(target=work, name=f"gradleak-{config.attack}", daemon=True)
    worker.start()
    curve: list[tuple[int, float, float]] = []
    try:
        shown = -math.inf
        for evaluations, images in iter(checks.get, None):
            if time.monotonic() - shown >= interval:
                yield _frame(evaluations, images, truth, curve)
                shown = time.monotonic()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        reconstruction: Reconstruction = outcome["reconstruction"]
        scores = score(reconstruction, truth)
        final = _frame(int(reconstruction.info.get("evaluations", len(reconstruction.history))), reconstruction.images,
                       truth, curve, scores)
        yield Frame(final.evaluations, final.image, final.truth, final.psnr, final.ssim, final.curve, True, cost, scores)
    finally:
        stop.set()  # a closed generator (the page's Stop, a closed tab) ends the search


class _Stopped(Exception):
    """Raised inside the attack's search to end it early."""


def _seed_override(config: LiveConfig) -> dict[str, int]:
    """The seed as `gradleak attack --seed` passes it: an override, where the attack has a seed."""
    return {"seed": config.seed} if "seed" in config_fields(ATTACKS.get(parse_spec(config.attack).name).Config) else {}


def _frame(evaluations: int, images: torch.Tensor, truth: Truth, curve: list, scores: Scores | None = None) -> Frame:
    """Score the guess (matched to the truth as in ``score``) and append it to the curve."""
    scores = scores or score(Reconstruction(images.clamp(0, 1), None), truth)
    partner = scores.order[0]
    guess = images[partner] if partner >= 0 else torch.full_like(truth.images[0], 0.5)
    curve.append((evaluations, scores.mean_psnr, scores.mean_ssim))
    return Frame(evaluations, _hwc(guess), _hwc(truth.images[0]), scores.mean_psnr, scores.mean_ssim, tuple(curve))


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().cpu().float().permute(1, 2, 0).numpy()
