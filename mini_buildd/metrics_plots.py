"""The home page's plots of the monitoring figures (issue #17), as server-side SVG text (no script):
the build duration histogram of ``/metrics`` (:func:`histogram_svg`) and the packaging and build
queue over time, from the event hub's queue (:func:`timeline_svg`, points from
:func:`mini_buildd.metrics.ongoing_timeline`). Pure text generation.
"""

import datetime
import html

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
#: Colours: packaging, building (and the histogram's bars).
PACKAGING_COLOUR, BUILDING_COLOUR = "#2f6db5", "#3a7d44"


def duration_label(seconds):
    """``30s``, ``2m``, ``1h30m``: a short label for a bucket bound."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" + (f"{(seconds % 3600) // 60:02d}m" if seconds % 3600 else "")


def _head(title):
    e = html.escape(title)
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{e}" font-family="sans-serif" font-size="11">',
            f"<title>{e}</title>",
            f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
            f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{e}</text>']


def _empty(out, text):
    out.append(f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle" fill="#777">{html.escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _y_axis(out, top, label=str):
    """Grid lines and labels for 0..top (4 steps)."""
    for i in range(5):
        value = top * i / 4
        y = TOP + PLOT_H - PLOT_H * i / 4
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{html.escape(label(value))}</text>')


def _nice_top(value):
    """A round axis maximum >= value that divides into 4 steps."""
    top = 4
    while top < value:
        top *= 2
    return top


def _count_label(value):
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def histogram_svg(hist, title="Build durations"):
    """Bars per bucket of ``hist`` (:class:`mini_buildd.metrics.Histogram`): how many values fell
    into each bucket (not cumulative), the last one above every bound."""
    out = _head(f"{title} ({hist.count} build{'' if hist.count == 1 else 's'}"
                + (f", mean {duration_label(hist.sum / hist.count)}" if hist.count else "") + ")")
    if not hist.count:
        return _empty(out, "No builds known yet.")
    top = _nice_top(max(hist.counts))
    _y_axis(out, top, _count_label)
    labels = [f"≤{duration_label(b)}" for b in hist.bounds] + [f">{duration_label(hist.bounds[-1])}"]
    slot = PLOT_W / len(hist.counts)
    bar_w = slot * 0.7
    for i, (n, label) in enumerate(zip(hist.counts, labels)):
        h = PLOT_H * n / top
        x = LEFT + slot * i + (slot - bar_w) / 2
        out.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + PLOT_H - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                   f'fill="{BUILDING_COLOUR}"><title>{html.escape(label)}: {n}</title></rect>')
        out.append(f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{html.escape(label)}</text>')
    out.append(f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{WIDTH - RIGHT}" y2="{TOP + PLOT_H}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _step_path(points, start, end, value_of, top):
    """SVG path data of a step line through ``points`` (timestamp, ...) between ``start`` and ``end``."""
    span = (end - start).total_seconds() or 1.0

    def xy(when, value):
        x = LEFT + PLOT_W * max(0.0, min(1.0, (when - start).total_seconds() / span))
        return x, TOP + PLOT_H - PLOT_H * value / top
    value = 0
    for p in points:
        if p[0] <= start:
            value = value_of(p)
    x, y = xy(start, value)
    parts = [f"M{x:.1f},{y:.1f}"]
    for p in points:
        if p[0] <= start:
            continue
        x, _ = xy(p[0], value)
        value = value_of(p)
        _, y = xy(p[0], value)
        parts.append(f"H{x:.1f}V{y:.1f}")
    x, _ = xy(end, value)
    parts.append(f"H{x:.1f}")
    return " ".join(parts)


def timeline_svg(points, now, window=datetime.timedelta(hours=24), title="Queue"):
    """Step lines of packages being packaged and builds running over ``window`` up to ``now``, from
    ``points`` (``[(timestamp, packaging, building)]``, oldest first)."""
    start = now - window
    hours = int(window.total_seconds() // 3600)
    out = _head(f"{title} (last {hours} h)")
    shown = [p for p in points if p[0] > start]
    before = [p for p in points if p[0] <= start]
    initial = before[-1:]
    if not shown and not any(p[1] or p[2] for p in initial):
        return _empty(out, "Nothing was queued in this time.")
    top = _nice_top(max([v for p in initial + shown for v in p[1:]] + [1]))
    _y_axis(out, top, _count_label)
    for i in range(5):  # time labels
        when = start + window * i / 4
        x = LEFT + PLOT_W * i / 4
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{when:%H:%M}</text>')
    for index, colour, name in ((1, PACKAGING_COLOUR, "packaging"), (2, BUILDING_COLOUR, "building")):
        out.append(f'<path class="line-{name}" d="{_step_path(points, start, now, lambda p, i=index: p[i], top)}" '
                   f'fill="none" stroke="{colour}" stroke-width="2"><title>{name}</title></path>')
    out.append(f'<text x="{WIDTH - RIGHT - 160}" y="16" fill="{PACKAGING_COLOUR}">■ packaging</text>')
    out.append(f'<text x="{WIDTH - RIGHT - 80}" y="16" fill="{BUILDING_COLOUR}">■ building</text>')
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" fill="#555">UTC</text>')
    out.append(f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{WIDTH - RIGHT}" y2="{TOP + PLOT_H}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
