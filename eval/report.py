"""Reports from result records: ``report.md`` and a self-contained ``report.html``.

The records may mix these kinds, each from its own producer:

- ``attack``  (``gradleak evaluate``, the demo): one attack on one defended round;
- ``utility`` (``gradleak utility``): the test accuracy FedAvg reaches under a defense;
- ``secagg``  (the secure-aggregation cost sweep): bytes and seconds for n clients;
- ``audit``, ``property`` (``gradleak audit --out``, ``gradleak property --out``): empirical ε
  beside the accountant's, and property-inference AUC.

The report shows what is there and says plainly what is not: the summary table, an image grid
per attack (the truth in the first row, then one row per defense), privacy–utility plots (attack
PSNR against ε, accuracy against ε) and secure-aggregation cost plots (bytes and seconds against
clients). Figures are drawn with matplotlib's object API (no global pyplot state, no display).
``report.md`` links the figures saved beside it; ``report.html`` embeds them as base64 PNGs,
so the one file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from skimage import io as skio

import gradleak
from gradleak.eval.records import (
    AttackRecord, AuditRecord, PropertyRecord, Record, SecaggRecord, UtilityRecord, from_dict, of_kind,
)
from gradleak.eval.summary import (
    SUCCESS_DB, TABLE_COLUMNS, VERDICT_COLUMNS, Stat, defense_verdicts, group_runs, markdown_table, number,
    table_rows, verdict_rows,
)

MAX_GRID_COLUMNS = 10
FIGURES = "figures"


@dataclass
class Section:
    """A heading, Markdown text (tables included), and figures, rendered into both formats."""

    title: str
    text: str = ""
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)  # (file name, caption, PNG)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60] or "x"


# --- attacks: table and image grids ------------------------------------------------------


def attack_section(records: list[AttackRecord], threshold_db: float) -> Section:
    groups = group_runs(records)
    section = Section("Attacks against defenses")
    if not groups:
        section.text = "No attack runs in these results."
        return section
    section.text = (
        f"Per (scenario, attack, defense): PSNR and SSIM as mean ± std over all images of all seeds, "
        f"label accuracy after Hungarian matching, and the attack success rate — the share of "
        f"images reconstructed at {threshold_db:g} dB PSNR or better. ε is the DP guarantee of the "
        f"defense (δ as configured), where one is defined.\n\n"
        + markdown_table(table_rows(groups, threshold_db), TABLE_COLUMNS)
    )
    verdicts = defense_verdicts(groups, threshold_db)
    if verdicts:
        section.text += (
            "\n\nVerdict per (scenario, defense): a defense is as strong as the best attack run against "
            "it, so the attack with the highest success rate decides (a defense-aware attack, "
            "`adaptive=true`, beside an oblivious one counts when it does better). It leaks when that "
            f"attack recovers any image at {threshold_db:g} dB or better.\n\n"
            + markdown_table(verdict_rows(verdicts), VERDICT_COLUMNS)
        )
    return section




def grid_figure(records: list[AttackRecord], attack: str) -> Figure | None:
    """Truth in the first row, one row per defense; a column per (scenario, seed); PSNR under each."""
    runs = sorted((r for r in records if r.attack == attack and r.images.get("truth")), key=lambda r: r.position)
    if not runs:
        return None
    columns = list(dict.fromkeys((r.scenario, r.seed) for r in runs))[:MAX_GRID_COLUMNS]
    defenses = list(dict.fromkeys(r.defense for r in runs))
    cell = {(r.scenario, r.seed, r.defense): r for r in runs}
    figure = Figure(figsize=(1.25 * len(columns) + 1.6, 1.35 * (len(defenses) + 1)))
    axes = figure.subplots(len(defenses) + 1, len(columns), squeeze=False)
    for j, (scenario, seed) in enumerate(columns):
        truth_run = next(r for r in runs if (r.scenario, r.seed) == (scenario, seed))
        _show(axes[0][j], skio.imread(truth_run.images["truth"][0]))
        heading = "\n".join(textwrap.wrap(scenario.replace("/", "/ "), 16, break_on_hyphens=False))
        if len({s for _, s in columns}) > 1:
            heading += f"\nseed {seed}"
        axes[0][j].set_title(heading, fontsize=6)
        for i, defense in enumerate(defenses, start=1):
            run = cell.get((scenario, seed, defense))
            if run is None:
                axes[i][j].axis("off")
                continue
            _show(axes[i][j], skio.imread(run.images["reconstruction"][0]))
            psnr = number(run.per_image[0]["psnr"])
            axes[i][j].set_xlabel("inf dB" if math.isinf(psnr) else f"{psnr:.1f} dB", fontsize=7)
    for i, name in enumerate(["truth", *defenses]):
        axes[i][0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    return figure


def _show(axis: Any, image: np.ndarray) -> None:
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def grid_section(records: list[AttackRecord]) -> Section:
    section = Section("Reconstructions", "First row: the victim's image. Each further row: what the attack "
                      "recovered from the server's view under one defense (first image of the batch, "
                      "matched to the truth), with its PSNR.")
    attacks = list(dict.fromkeys(r.attack for r in records))
    for attack in attacks:
        figure = grid_figure(records, attack)
        if figure is not None:
            section.figures.append((f"grid-{_slug(attack)}.png", f"Reconstructions by {attack}", _png(figure)))
    if not section.figures:
        section.text = "No saved images in these results."
    refusals = refusals_text(records)
    if refusals:
        section.text = (section.text + "\n\n" + refusals).strip()
    return section


def refusals_text(records: list[AttackRecord]) -> str:
    """One line per run in which clients refused the model they received (receive-stage ``vet``)."""
    lines = [
        f"- {r.scenario}, {r.defense}, seed {r.seed}: "
        + "; ".join(f"client {k} refused ({why})" for k, why in r.refused.items())
        for r in records if r.refused
    ]
    return "Clients that refused the model they received:\n\n" + "\n".join(lines) if lines else ""


# --- privacy-utility ---------------------------------------------------------------------


def _dp_mechanism(record: AttackRecord) -> str | None:
    return record.dp[0]["defense"] if record.dp else None


def privacy_section(attacks: list[AttackRecord], utility: list[UtilityRecord], threshold_db: float) -> Section:
    section = Section("Privacy against utility")
    notes = []
    figure = psnr_vs_epsilon(attacks, threshold_db)
    if figure is None:
        notes.append("No attack runs under a DP defense in these results: no PSNR-against-ε plot.")
    else:
        section.figures.append(("psnr-vs-epsilon.png", "Attack PSNR against ε (dashed: no defense)", _png(figure)))
    figure = accuracy_vs_epsilon(utility)
    if figure is None:
        notes.append("No utility runs under a DP defense in these results (run `gradleak utility`): "
                     "no accuracy-against-ε plot.")
    else:
        section.figures.append(("accuracy-vs-epsilon.png", "Test accuracy against ε (dashed: no defense)", _png(figure)))
    if utility:
        notes.append(utility_table(utility))
    section.text = "\n\n".join(notes)
    return section


def psnr_vs_epsilon(records: list[AttackRecord], threshold_db: float) -> Figure | None:
    lines: dict[tuple[str, str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    clean: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        psnrs = [number(i["psnr"]) for i in r.per_image]
        mechanism = _dp_mechanism(r)
        if mechanism and r.epsilon is not None:
            lines[(r.scenario, r.attack, mechanism)][_eps(r)].extend(psnrs)
        elif r.defense == "none":
            clean[(r.scenario, r.attack)].extend(psnrs)
    if not lines:
        return None
    figure = Figure(figsize=(6, 3.6))
    axis = figure.subplots()
    for index, ((scenario, attack, mechanism), points) in enumerate(sorted(lines.items())):
        color = f"C{index % 10}"
        eps = sorted(points)
        stats = [Stat.of(_capped(points[e])) for e in eps]
        axis.errorbar(eps, [s.mean for s in stats], yerr=[0 if math.isnan(s.std) else s.std for s in stats],
                      marker="o", capsize=3, color=color, label=f"{scenario} · {attack} · {mechanism}")
        baseline = clean.get((scenario, attack))
        if baseline:
            axis.axhline(Stat.of(_capped(baseline)).mean, color=color, linestyle="--", linewidth=0.8)
    axis.axhline(threshold_db, color="black", linestyle=":", linewidth=0.8, label=f"success threshold {threshold_db:g} dB")
    _epsilon_axis(axis, lines, "attack PSNR (dB)")
    return figure


def _epsilon_axis(axis: Any, lines: dict[Any, dict[float, list[float]]], ylabel: str) -> None:
    _log_ticks(axis, [e for points in lines.values() for e in points])
    axis.set_xlabel("ε (smaller = more private)")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=6)
    axis.grid(alpha=0.3)


def _eps(record: AttackRecord | UtilityRecord) -> float:
    """A record's ε to 3 significant digits: calibration lands within 1e-6 of the target, not on it."""
    return float(f"{number(record.epsilon):.3g}")


def _log_ticks(axis: Any, values: Iterable[float]) -> None:
    """A log x axis ticked at the values measured, written plainly (8, not 2^3 or 8x10^0)."""
    ticks = sorted(set(values))
    axis.set_xscale("log")
    axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axis.minorticks_off()


PSNR_PLOT_CAP = 100.0  # a perfect copy (inf dB) is drawn at the top of the plot


def _capped(values: Sequence[float]) -> list[float]:
    return [min(v, PSNR_PLOT_CAP) for v in values]


def accuracy_vs_epsilon(records: list[UtilityRecord]) -> Figure | None:
    lines: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    clean: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.epsilon is not None:
            lines[(r.setting, r.mechanism)][_eps(r)].append(number(r.accuracy))
        elif r.defense == "none":
            clean[r.setting].append(number(r.accuracy))
    if not lines:
        return None
    figure = Figure(figsize=(6, 3.6))
    axis = figure.subplots()
    settings = sorted({d for d, _ in lines} | set(clean))
    for (setting, mechanism), points in sorted(lines.items()):
        color = f"C{settings.index(setting) % 10}"
        eps = sorted(points)
        stats = [Stat.of(points[e]) for e in eps]
        axis.errorbar(eps, [100 * s.mean for s in stats], yerr=[0 if math.isnan(s.std) else 100 * s.std for s in stats],
                      marker="o", capsize=3, color=color, label=f"{setting} · {mechanism}")
    for setting, values in clean.items():
        axis.axhline(100 * float(np.mean(values)), color=f"C{settings.index(setting) % 10}", linestyle="--",
                     linewidth=0.8, label=f"{setting} · no defense")
    _epsilon_axis(axis, lines, "test accuracy (%)")
    return figure


def utility_groups(records: Iterable[UtilityRecord | dict[str, Any]]) -> dict[tuple[str, str], list[UtilityRecord]]:
    groups: dict[tuple[str, str], list[UtilityRecord]] = {}
    for r in of_kind(records, UtilityRecord):
        groups.setdefault((r.setting, r.defense), []).append(r)
    return groups


UTILITY_COLUMNS = ("setting", "defense", "ε", "seeds", "test accuracy %", "change vs none (points)", "rounds")


def utility_rows(records: Iterable[UtilityRecord | dict[str, Any]]) -> list[tuple[str, ...]]:
    """Test accuracy per (setting, defense), mean ± std over seeds, and its change against no defense."""
    groups = utility_groups(records)
    clean = {s: Stat.of(number(r.accuracy) for r in rs).mean for (s, name), rs in groups.items() if name == "none"}
    rows = []
    for (setting, defense), rs in groups.items():
        stat = Stat.of(number(r.accuracy) for r in rs)
        eps = rs[0].epsilon
        change = stat.mean - clean.get(setting, math.nan)
        rows.append((
            setting, defense, "–" if eps is None else f"{number(eps):.3g}", str(len(rs)),
            f"{100 * stat.mean:.1f}" + ("" if stat.n < 2 else f" ± {100 * stat.std:.1f}"),
            "–" if defense == "none" or math.isnan(change) else f"{100 * change:+.1f}",
            str(rs[0].config["rounds"]),
        ))
    return rows


def utility_table(records: list[UtilityRecord]) -> str:
    return ("Test accuracy after federated training (mean ± std over seeds):\n\n"
            + markdown_table(utility_rows(records), UTILITY_COLUMNS))


# --- secure aggregation costs ------------------------------------------------------------


def secagg_section(records: list[SecaggRecord]) -> Section:
    section = Section("Secure aggregation cost")
    records = [r for r in records if not r.aborted]
    if not records:
        section.text = "No secure-aggregation cost runs in these results."
        return section
    rows = []
    for r in sorted(records, key=lambda r: (r.dim, r.clients, r.dropout)):
        rows.append((
            str(r.clients), str(r.dim), f"{100 * r.dropout:.0f}%", "all" if r.neighbors is None else str(r.neighbors),
            f"{r.client_bytes_sent / 1024:.1f}", f"{r.expansion:.2f}×",
            f"{r.client_seconds:.3f}", f"{r.server_seconds:.3f}", "yes" if r.correct else "NO",
        ))
    columns = ("clients", "dim", "dropout", "neighbours", "KiB sent / client", "expansion vs float32",
               "client s", "server s", "exact sum")
    section.text = markdown_table(rows, columns)
    figure = Figure(figsize=(8, 3.2))
    left, right = figure.subplots(1, 2)
    series: dict[tuple[int, float], list[SecaggRecord]] = defaultdict(list)
    for r in records:
        series[(r.dim, r.dropout)].append(r)
    for (dim, dropout), rs in sorted(series.items()):
        rs.sort(key=lambda r: r.clients)
        n = [r.clients for r in rs]
        tag = f"d={dim}, {100 * dropout:.0f}% drop"
        left.plot(n, [r.client_bytes_sent / 1024 for r in rs], marker="o", label=f"masked upload · {tag}")
        left.plot(n, [4 * dim / 1024 for _ in rs], linestyle="--", color="grey", linewidth=0.8)
        right.plot(n, [r.client_seconds for r in rs], marker="o", label=f"client · {tag}")
        right.plot(n, [r.server_seconds for r in rs], marker="s", label=f"server · {tag}")
    left.set_ylabel("KiB sent per client (dashed: float32 in the clear)")
    right.set_ylabel("seconds")
    for axis in (left, right):
        _log_ticks(axis, [r.clients for r in records])
        axis.set_xlabel("clients")
        axis.legend(fontsize=6)
        axis.grid(alpha=0.3)
    section.figures.append(("secagg-cost.png", "Secure aggregation: bytes and seconds against clients", _png(figure)))
    return section


# --- writing -----------------------------------------------------------------------------


# --- beyond one image: audits and property inference --------------------------------------

AUDIT_COLUMNS = ("defense", "level", "ε accountant", "ε lower", "ε lower (one run)", "AUC", "advantage", "releases")
PROPERTY_COLUMNS = ("dataset", "defense", "cohort", "AUC", "interval", "held-out releases")


def _fmt(value: Any, digits: str = ".3g") -> str:
    return "–" if value is None or math.isnan(number(value)) else format(number(value), digits)


def leakage_section(audits: list[AuditRecord], properties: list[PropertyRecord]) -> Section:
    """Empirical ε beside the accountant's (``gradleak audit --out``) and property-inference AUC
    (``gradleak property --out``): what a defense promises about membership, measured."""
    section = Section("Membership, properties and empirical ε")
    if not audits and not properties:
        section.text = ("No audit or property-inference records in these results (run `gradleak audit --out DIR` "
                        "or `gradleak property --out DIR` into the same folder).")
        return section
    parts = []
    if audits:
        rows = [(r.label["defense"], r.level, _fmt(r.epsilon_accountant),
                 f"{_fmt(r.epsilon_lower)} ({r.confidence:g})", _fmt(r.one_run_epsilon_lower),
                 _fmt(r.auc), _fmt(r.advantage), str(r.trials)) for r in audits]
        parts.append("Audits: an empirical lower bound on ε from a membership attack's true and false positive "
                     "rates (Clopper–Pearson, confidence in brackets), beside the accountant's ε. A bound above "
                     "the accountant's ε means the mechanism is not what its accountant assumes.\n\n"
                     + markdown_table(rows, AUDIT_COLUMNS))
        figure = audit_figure(audits)
        if figure is not None:
            section.figures.append(("epsilon-audit.png", "Empirical ε lower bound against the accountant's ε", _png(figure)))
    if properties:
        rows = [(r.dataset, r.label["defense"], str(r.cohort), _fmt(r.auc),
                 f"{_fmt(r.auc_low)}–{_fmt(r.auc_high)}", str(r.trials)) for r in properties]
        parts.append("Property inference (Melis et al. 2019): ROC AUC of telling from a release whether a client's "
                     "data carry the property (0.5: no better than chance).\n\n" + markdown_table(rows, PROPERTY_COLUMNS))
    section.text = "\n\n".join(parts)
    return section


def audit_figure(audits: list[AuditRecord]) -> Figure | None:
    """ε lower against ε accountant for the DP audits, with the line a correct mechanism stays under."""
    points = [(number(r.epsilon_accountant), number(r.epsilon_lower), r.label["defense"]) for r in audits
              if math.isfinite(number(r.epsilon_accountant))]
    if not points:
        return None
    figure = Figure(figsize=(4.2, 3.4))
    axis = figure.subplots()
    top = max(max(x for x, _, _ in points), max(y for _, y, _ in points)) * 1.1
    axis.plot([0, top], [0, top], linestyle="--", color="grey", label="ε lower = ε accountant")
    for x, y, name in points:
        axis.scatter([x], [y], label=name, s=18)
    axis.set_xlim(0, top)
    axis.set_ylim(0, top)
    axis.set_xlabel("ε accountant")
    axis.set_ylabel("ε lower (empirical)")
    axis.legend(fontsize=6)
    axis.grid(alpha=0.3)
    return figure


def build_sections(records: Sequence[Record | dict[str, Any]], threshold_db: float = SUCCESS_DB) -> list[Section]:
    """The report's sections from typed records (or records as read from JSON)."""
    records = [from_dict(r) for r in records]
    attacks = of_kind(records, AttackRecord)
    sections = [attack_section(attacks, threshold_db)]
    if attacks:
        sections.append(grid_section(attacks))
    sections.append(privacy_section(attacks, of_kind(records, UtilityRecord), threshold_db))
    sections.append(secagg_section(of_kind(records, SecaggRecord)))
    sections.append(leakage_section(of_kind(records, AuditRecord), of_kind(records, PropertyRecord)))
    return sections


def write_report(
    records: Sequence[Record | dict[str, Any]],
    out: str | Path,
    threshold_db: float = SUCCESS_DB,
    title: str = "gradleak report",
) -> tuple[Path, Path]:
    """Write ``out/report.md`` (+ ``out/figures/``) and ``out/report.html`` from records with absolute image paths."""
    out = Path(out)
    (out / FIGURES).mkdir(parents=True, exist_ok=True)
    sections = build_sections(records, threshold_db)
    stamp = f"gradleak {gradleak.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, {len(records)} record(s)"
    markdown = [f"# {title}", "", f"_{stamp}_", ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=stamp>{html.escape(stamp)}</p>"]
    for section in sections:
        markdown += [f"## {section.title}", "", section.text, ""]
        body += [f"<h2>{html.escape(section.title)}</h2>", markdown_to_html(section.text)]
        for name, caption, png in section.figures:
            (out / FIGURES / name).write_bytes(png)
            markdown += [f"![{caption}]({FIGURES}/{name})", ""]
            data = base64.b64encode(png).decode()
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text("\n".join(markdown))
    html_path.write_text(HTML_PAGE.format(title=html.escape(title), body="\n".join(body)))
    return md_path, html_path


def markdown_to_html(text: str) -> str:
    """The little Markdown the sections use: paragraphs and pipe tables (cells are escaped)."""
    out = []
    for block in filter(None, (b.strip() for b in text.split("\n\n"))):
        lines = block.splitlines()
        if all(line.startswith("|") for line in lines) and len(lines) >= 2:
            cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[2:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            escaped = html.escape(block)
            # `code` spans, the only inline markup the section texts use
            parts = escaped.split("`")
            escaped = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
            out.append(f"<p>{escaped}</p>")
    return "\n".join(out)


HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1.5rem 0; }}
figure img {{ max-width: 100%; }}
figcaption, .stamp {{ color: #666; font-size: 0.85rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
