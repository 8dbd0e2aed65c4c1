"""Charts drawn on the server as SVG (no chart library, no script): a monitor's status timeline
(one bar per run, its time, status and code on hover), its response time per step stacked over
its runs, and the small status strip of the monitors list. Each chart is an image with a text
alternative; the runs table under it holds the same figures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from markupsafe import Markup

from imapscope.store import RunRecord

#: Colours of the steps in the stacked chart, in the order steps first appear (readable on the
#: light and the dark theme alike).
STEP_COLOURS = ("#2f6fde", "#e08a00", "#1a9e77", "#c2408f", "#7a5cd6", "#8c6d1f", "#0f8fa8",
                "#d1495b", "#5c7c2f", "#6b6b6b")  # fmt: skip
Run = tuple[dt.datetime, str, str | None, bool]  # at, status, code, in maintenance
#: Runs a status strip shows (monitors list, accounts list, status pages).
STRIP_RUNS = 30
#: One run's bar: x, width, height, status, hover text (escaped by Markup.format).
BAR = Markup('<rect x="{}" y="0" width="{}" height="{}" class="run-{}"><title>{}</title></rect>')


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _status(status: str, maintenance: bool) -> str:
    return "maintenance" if maintenance else status


def strip(runs: Sequence[Run], *, label: str, slots: int = STRIP_RUNS) -> Markup:
    """The newest ``slots`` runs as small bars, oldest left (empty slots when fewer)."""
    bars = []
    shown = list(runs)[-slots:]
    offset = slots - len(shown)
    for index, (at, status, code, maintenance) in enumerate(shown):
        state = _status(status, maintenance)
        tip = f"{_when(at)}: {state}" + (f", {code}" if code else "")
        bar = Markup(
            '<rect x="{}" y="0" width="3" height="16" class="run-{}"><title>{}</title></rect>'
        )
        bars.append(bar.format((offset + index) * 4, state, tip))
    fails = sum(1 for _, s, _, m in shown if s == "fail" and not m)
    alt = f"{label}: the last {len(shown)} runs, {fails} failed"
    svg = Markup('<svg class="strip" viewBox="0 0 {0} 16" width="{0}" height="16" role="img" '
                 'aria-label="{1}">{2}</svg>')  # fmt: skip
    return svg.format(slots * 4, alt, Markup("").join(bars))


def timeline(runs: Sequence[RunRecord], *, label: str) -> Markup:
    """One bar per run, oldest left, coloured by status; its time and code on hover."""
    count = max(len(runs), 1)
    width = 8
    bars = []
    for index, run in enumerate(runs):
        state = _status(run.status, run.maintenance)
        tip = (f"{_when(run.at)}: {state}" + (f", {run.code}" if run.code else "")
               + f", {round(run.total_ms)} ms")  # fmt: skip
        bar = Markup(
            '<rect x="{}" y="0" width="{}" height="40" class="run-{}"><title>{}</title></rect>'
        )
        bars.append(bar.format(index * width, width - 2, state, tip))
    fails = sum(1 for r in runs if r.status == "fail" and not r.maintenance)
    alt = f"{label}: status of the last {len(runs)} runs, {fails} failed"
    return Markup('<svg class="timeline" viewBox="0 0 {} 40" preserveAspectRatio="none" '
                  'role="img" aria-label="{}">{}</svg>').format(count * width, alt,
                                                              Markup("").join(bars))  # fmt: skip


def step_order(runs: Sequence[RunRecord]) -> list[str]:
    """Step names in the order the ladder runs them (as they first appear)."""
    names: list[str] = []
    for run in runs:
        for name, status, _ms in run.steps:
            if status != "skip" and name not in names:
                names.append(name)
    return names


def stacked(runs: Sequence[RunRecord], *, label: str) -> Markup:
    """Each run's steps stacked by time (ms), oldest left, with a legend and the scale."""
    names = step_order(runs)
    colour = {n: STEP_COLOURS[i % len(STEP_COLOURS)] for i, n in enumerate(names)}
    height, width = 120.0, 8
    tallest = max((sum(ms for _, st, ms in r.steps if st != "skip") for r in runs), default=0.0)
    scale = height / tallest if tallest else 0.0
    bars = []
    for index, run in enumerate(runs):
        y = height
        for name, status, ms in run.steps:
            if status == "skip" or ms <= 0:
                continue
            h = ms * scale
            y -= h
            tip = f"{_when(run.at)}: {name} {round(ms, 1)} ms"
            bars.append(Markup('<rect x="{}" y="{:.2f}" width="{}" height="{:.2f}" fill="{}">'
                               "<title>{}</title></rect>").format(
                index * width, y, width - 2, h, colour[name], tip))  # fmt: skip
    legend = Markup("").join(
        Markup('<li><span class="swatch" style="background:{}"></span>{}</li>').format(colour[n], n)
        for n in names
    )
    alt = (f"{label}: time per step of the last {len(runs)} runs; the tallest took "
           f"{round(tallest)} ms")  # fmt: skip
    return Markup(
        '<figure class="stacked"><svg viewBox="0 0 {} {:.0f}" preserveAspectRatio="none" '
        'role="img" aria-label="{}">{}</svg><figcaption>Scale: top = {} ms. '
        '<ul class="legend">{}</ul></figcaption></figure>'
    ).format(max(len(runs), 1) * width, height, alt, Markup("").join(bars), round(tallest), legend)
