"""Plots for the self-contained HTML reports: matplotlib figures embedded as base64 PNG (no external files)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["bar_chart", "figure_tag", "grouped_bar_chart", "html_page", "html_table", "line_chart",
           "reliability_diagram"]


def figure_tag(fig: plt.Figure, alt: str) -> str:
    """An ``<img>`` with the figure inlined as a data URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str,
              ylim: tuple[float, float] | None = (0.0, 1.0)) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.bar(list(labels), list(values), color="#3b6ea5")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelrotation=30)
    return figure_tag(fig, title)


def grouped_bar_chart(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str, ylabel: str,
                      ylim: tuple[float, float] | None = (0.0, 1.0)) -> str:
    """Bars side by side per label, one colour per series (e.g. approve/edit/reject shares per action kind)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    width = 0.8 / max(len(series), 1)
    positions = range(len(labels))
    for n, (name, values) in enumerate(series.items()):
        ax.bar([x + n * width for x in positions], list(values), width=width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in positions], list(labels))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(fontsize="small")
    return figure_tag(fig, title)


def line_chart(x: Sequence[str], series: dict[str, Sequence[float]], *, title: str, ylabel: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for name, values in series.items():
        ax.plot(list(x), list(values), marker="o", label=name)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return figure_tag(fig, title)


def reliability_diagram(bins: Sequence[tuple[float, float, int]], *, title: str) -> str:
    """``bins``: (mean confidence, observed accept rate, count) per non-empty bin."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if bins:
        ax.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", color="#3b6ea5", label="observed")
        for conf, rate, count in bins:
            ax.annotate(str(count), (conf, rate), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("share approved as proposed")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
    return figure_tag(fig, title)


def html_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
          "text-align:left;font-size:.9em}th{background:#f2f2f2}.fail{color:#b00020;font-weight:bold}"
          ".pass{color:#1b7a1b;font-weight:bold}img{margin:.5em 1em .5em 0}")


def html_page(title: str, body: str) -> str:
    """A whole self-contained page: inline style, no script, no external resource."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
