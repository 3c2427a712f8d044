"""PNG figures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

COLOURS = {
    "floor": "#444444",
    "concsignals": "#d62728",
    "django": "#2ca02c",
    "django (use_caching)": "#98df8a",
    "blinker": "#1f77b4",
    "psygnal": "#9467bd",
    "pydispatcher": "#ff7f0e",
}


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colour(name: str) -> str:
    if name in COLOURS:
        return COLOURS[name]
    for key in ("hand-written", "floor", "concsignals", "django"):
        if key in name:
            return COLOURS.get(key, COLOURS["floor"])
    return "#7f7f7f"


def label(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def lines(
    path: Path,
    title: str,
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    xlabels: Sequence[str],
    xtitle: str,
    ytitle: str,
    logy: bool = True,
) -> None:
    """One panel per key of ``panels``; in each, one line per series."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (panel, series) in zip(axes, panels.items(), strict=True):
        for name, values in series.items():
            style = "--" if name == "floor" else "-"
            ax.plot(xlabels, values, style, marker="o", label=name, color=colour(name))
        ax.set_title(panel)
        ax.set_xlabel(xtitle)
        ax.set_ylabel(ytitle)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars(
    path: Path,
    title: str,
    values: Mapping[str, float],
    xtitle: str,
    logx: bool = False,
    reference: float | None = None,
    fmt: Callable[[float], str] = label,
) -> None:
    """Horizontal bars, one per name, top to bottom in the given order."""
    plt = pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.4))
    ax.barh(names, [values[n] for n in names], color=[colour(n) for n in names])
    ax.invert_yaxis()
    if logx:
        ax.set_xscale("log")
    if reference is not None:
        ax.axvline(reference, color="black", linewidth=0.8, linestyle="--")
    for i, name in enumerate(names):
        ax.annotate(
            f" {fmt(values[name])}",
            (values[name], i),
            va="center",
            fontsize="small",
        )
    ax.set_xlabel(xtitle)
    ax.set_title(title)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
