"""The evaluation report: PNG plots and report.md, both drawn from report.json's data."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from midimix.features import FEATURE_NAMES
from midimix.fidelity import describe as describe_fidelity
from midimix.manifest import atomic_path, atomic_write_text
from midimix.midifile import load_score

# Features drawn in the real-vs-generated plots (the pitch-class shares are one histogram each
# and say little alone; the report.json has all of them).
PLOTTED_FEATURES = tuple(n for n in FEATURE_NAMES if not n.startswith("pitch_class_"))
PLOT_DPI = 90  # small files; the plots are for screens


def slug(text: str) -> str:
    """A file-name-safe form of a set label ('logits w=0.25' -> 'logits-w-0.25')."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "set"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=PLOT_DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def plot_piano_rolls(paths: Sequence[Path], title: str, path: Path) -> str:
    """One panel per piece: pitch against seconds, drums in grey."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(paths), 1, figsize=(10, 2.2 * len(paths)), squeeze=False)
    for ax, midi in zip(axes[:, 0], paths, strict=True):
        score: Any = load_score(midi).to("second")
        for track in score.tracks:
            arr = track.notes.numpy()
            ax.barh(
                arr["pitch"].astype(int),
                arr["duration"],
                left=arr["time"],
                height=0.8,
                color="0.6" if track.is_drum else "C0",
            )
        ax.set_title(Path(midi).name, fontsize=9)
        ax.set_ylabel("MIDI pitch")
        ax.autoscale()
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"piano rolls: {title}")
    return _save(fig, path)


def plot_distributions(
    reference: dict[str, np.ndarray], label: str, generated: np.ndarray, path: Path
) -> str:
    """Histograms of each plotted feature: every reference genre and the generated set."""
    plt = _pyplot()
    cols = 4
    rows = -(-len(PLOTTED_FEATURES) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, PLOTTED_FEATURES, strict=False):
        j = FEATURE_NAMES.index(name)
        values = [t[:, j] for t in reference.values()] + [generated[:, j]]
        low = min(float(v.min()) for v in values)
        high = max(float(v.max()) for v in values)
        edges = np.linspace(low, high if high > low else low + 1.0, 16)
        for genre, table in reference.items():
            counts = np.histogram(table[:, j], edges, density=True)[0]
            ax.stairs(counts, edges, fill=True, alpha=0.45, label=genre)
        counts = np.histogram(generated[:, j], edges, density=True)[0]
        ax.stairs(counts, edges, lw=2, color="k", label=label)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(PLOTTED_FEATURES) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"features: reference genres vs {label}")
    fig.subplots_adjust(hspace=0.45, wspace=0.3)  # tight_layout costs seconds with 24 axes
    return _save(fig, path)


def plot_p_genre(report: dict[str, Any], path: Path) -> str:
    """Mean P(genre) of every generated set, with 95% confidence intervals."""
    plt = _pyplot()
    genres = report["classifier"]["genres"]
    labels = list(report["generated"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels) * len(genres)), 3.5))
    width = 0.8 / len(genres)
    for k, genre in enumerate(genres):
        stats = [report["generated"][label]["p_genre"][genre] for label in labels]
        means = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["ci95"][0], s["ci95"][1] - s["mean"]] for s in stats]).T
        x = np.arange(len(labels)) + (k - (len(genres) - 1) / 2) * width
        ax.bar(x, means, width, yerr=err, capsize=3, label=f"P({genre})")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean P(genre)")
    ax.legend()
    ax.set_title("genre classifier on the generated sets (95% CI)")
    return _save(fig, path)


def plot_sweep(sweep: dict[str, Any], path: Path) -> str:
    """Mean P(genre) against the genre's weight, one line per mixing method, with 95% CIs."""
    plt = _pyplot()
    genre = sweep["genre"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, points in sweep["methods"].items():
        w = np.array([p["weight"] for p in points])
        mean = np.array([p["mean"] for p in points])
        low = np.array([p["ci95"][0] for p in points])
        high = np.array([p["ci95"][1] for p in points])
        ax.plot(w, mean, "o-", label=method)
        ax.fill_between(w, low, high, alpha=0.2)
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="ideal")
    ax.set_xlabel(f"weight of {genre} (the other genre: 1 - weight)")
    ax.set_ylabel(f"mean P({genre}) of the classifier")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    ax.set_title(f"genre sweep, {sweep['pieces']} pieces per point (95% CI)")
    return _save(fig, path)


def write_plots(
    report: dict[str, Any], extra: dict[str, Any], out_dir: Path, config: Any
) -> list[str]:
    """Every PNG of the report into out_dir; returns their file names."""
    tables = extra["tables"]
    written = []
    n = config.piano_rolls_per_set
    for kind in ("reference", "generated"):
        for name, (paths, _) in tables[kind].items():
            if n and paths:
                file = out_dir / f"piano_roll_{kind}_{slug(name)}.png"
                written.append(plot_piano_rolls(paths[:n], f"{kind} {name}", file))
    reference = {g: t for g, (_, t) in tables["reference"].items()}
    chosen = extra.get("distribution_labels")  # the sweep draws only its end points
    for label, (_, table) in tables["generated"].items():
        if chosen is not None and label not in chosen:
            continue
        file = out_dir / f"features_{slug(label)}.png"
        written.append(plot_distributions(reference, label, table, file))
    written.append(plot_p_genre(report, out_dir / "p_genre.png"))
    if "sweep" in report:
        written.append(plot_sweep(report["sweep"], out_dir / "sweep.png"))
    return written


# ---------------------------------------------------------------------------------------
# Markdown


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _generated_table(report: dict[str, Any]) -> list[str]:
    genres = report["classifier"]["genres"]
    head = ["set", "pieces", *[f"P({g}) [95% CI]" for g in genres], "closest by features"]
    head += [f"effect / overlap vs {g}" for g in genres]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, g in report["generated"].items():
        cells = [label, str(g["pieces"])]
        for genre in genres:
            p = g["p_genre"][genre]
            cells.append(f"{_num(p['mean'], 2)} [{_num(p['ci95'][0], 2)}, {_num(p['ci95'][1], 2)}]")
        cells.append(g["closest_genre"])
        for genre in genres:
            d = g["distances"][genre]
            cells.append(f"{_num(d['mean_effect_size'], 2)} / {_num(d['mean_overlap'], 2)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _furthest_features(g: dict[str, Any], genre: str, count: int = 5) -> str:
    per = g["distances"][genre]["per_feature"]
    ranked = sorted(
        (v["effect_size"] if v["effect_size"] is not None else float("inf"), k)
        for k, v in per.items()
    )[::-1][:count]
    shown = (
        "n/a: constant in the reference" if e == float("inf") else _num(e, 2) for e, _ in ranked
    )
    return ", ".join(f"{k} ({s})" for (_, k), s in zip(ranked, shown, strict=True))


def markdown(report: dict[str, Any]) -> str:
    c = report["classifier"]
    lines = ["# midimix evaluation report", ""]
    lines += [
        "## Genre classifier",
        "",
        f"{c['model']}, trained on the reference pieces ({c['pieces_per_genre']}); "
        f"{c['cv_folds']}-fold cross-validated accuracy **{_num(c['cv_accuracy'])}**.",
        "",
        "## Generated sets",
        "",
        "Effect = mean over features of |mean difference| / reference std (0 = same means); "
        "overlap = mean shared histogram area (1 = same distributions).",
        "",
        *_generated_table(report),
        "",
    ]
    for label, g in report["generated"].items():
        lines.append(f"- **{label}**, furthest features from {g['closest_genre']}: "
                     f"{_furthest_features(g, g['closest_genre'])}")  # fmt: skip
        if g["skipped"]:
            lines.append(f"  - skipped {len(g['skipped'])} files, e.g. {g['skipped'][0]}")
    if report.get("fidelity"):
        lines += [
            "",
            "## Single-genre sets against their genre",
            "",
            "Distance = the mean effect size against the genre's reference pieces, set against "
            "the same between two random halves of them and between reference sets of the "
            "generated set's size (medians of 5 splits); tempo in range and the notes-per-onset "
            "cap come from the model's training pieces when it is known, else from the "
            "reference pieces.",
            "",
        ]
        lines += [f"- {describe_fidelity(label, f['genre'], f)}"
                  for label, f in report["fidelity"].items()]  # fmt: skip
    if "sweep" in report:
        s = report["sweep"]
        lines += ["", f"## Sweep: P({s['genre']}) against the weight of {s['genre']}", ""]
        lines += ["| method | " + " | ".join(f"w={p['weight']:g}" for p in next(iter(
            s["methods"].values()))) + " | rises |"]  # fmt: skip
        lines.append("|" + " --- |" * (len(next(iter(s["methods"].values()))) + 2))
        for method, points in s["methods"].items():
            cells = [f"{_num(p['mean'], 2)} ± {_num((p['ci95'][1] - p['ci95'][0]) / 2, 2)}"
                     for p in points]  # fmt: skip
            rises = "yes" if s["rises"][method] else "no"
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {rises} |")
        for method in s["methods"]:
            error, cross = s["calibration_error"][method], s["crossing_0_5"][method]
            lines += [
                "",
                f"{method}: calibration error (mean |P - w| at w = 0.25, 0.5, 0.75) "
                f"{'n/a' if error is None else _num(error)}; P crosses 0.5 at w = "
                f"{'n/a' if cross is None else _num(cross)}.",
            ]
        lines += ["", s["rises_definition"], f"Sweep time: {s['seconds']:.0f} s."]
    if "model" in report:
        m = report["model"]
        lines += ["", "## Model", "", f"Sequences: {m['source']}.", ""]
        lines += ["| genre | NLL per token (nats) | NLL per note (nats) | sequences |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for genre, v in m["nll"].items():
            lines.append(
                f"| {genre} | {_num(v['per_token'])} | {_num(v['per_note'])} | {v['sequences']} |"
            )
        lines += ["", f"Genre sensitivity (share of sequences best explained by their own genre "
                      f"token): **{_num(m['genre_sensitivity'])}**."]  # fmt: skip
    if report.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in report["plots"]]
    lines += ["", "## Feature definitions", "", "| feature | definition |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in report["features"].items()]
    return "\n".join(lines) + "\n"


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    atomic_write_text(path, markdown(report))
    return path
