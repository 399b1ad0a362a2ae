"""Server-side SVG pictures for the web pages: the build-time history of a package (one bar per
build, oldest left; failed builds red). Pure text generation, no dependencies.
"""

import dataclasses
import datetime
import html

WIDTH, HEIGHT = 720, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 12, 28, 48


@dataclasses.dataclass
class BuildTime:
    """One build: when it ended, what, and how long sbuild's build took (seconds)."""

    timestamp: datetime.datetime
    version: str
    arch: str
    seconds: float
    ok: bool = True


def build_times(events):
    """:class:`BuildTime` points (oldest first) from BUILT events (``sbuild_build_time``); each build
    (bkey) once."""
    seen, points = set(), []
    for ev in events:
        if ev.type.value != "BUILT" or ev.bkey in seen:
            continue
        try:
            seconds = float(ev.extra.get("sbuild_build_time") or "")
        except ValueError:
            continue
        seen.add(ev.bkey)
        points.append(BuildTime(ev.timestamp, ev.version, ev.extra.get("architecture") or "?", seconds,
                                ok=ev.extra.get("sbuild_status") == "successful"))
    return sorted(points, key=lambda p: p.timestamp)


def _nice_max(value):
    """A round axis maximum >= value."""
    if value <= 0:
        return 1
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400):
        if value <= step * 4:
            return step * 4
    return value


def build_times_svg(points, title="Build time"):
    """The SVG document (text) for ``points`` (list of :class:`BuildTime`)."""
    e = html.escape
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'role="img" aria-label="{e(title)}" font-family="sans-serif" font-size="11">',
           f'<title>{e(title)}</title>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
           f'<text x="{MARGIN_LEFT}" y="16" font-size="13" font-weight="bold">{e(title)}</text>']
    if not points:
        out.append(f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle" fill="#777">No build times known yet.</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"
    top = _nice_max(max(p.seconds for p in points))
    # grid and y labels
    for i in range(5):
        value = top * i / 4
        y = MARGIN_TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_duration(value)}</text>')
    slot = plot_w / len(points)
    bar_w = max(2.0, min(40.0, slot * 0.7))
    label_every = max(1, int(len(points) / max(1, plot_w // 70)) + (1 if len(points) > plot_w // 70 else 0))
    for i, p in enumerate(points):
        h = plot_h * p.seconds / top
        x = MARGIN_LEFT + slot * i + (slot - bar_w) / 2
        y = MARGIN_TOP + plot_h - h
        colour = "#3a7d44" if p.ok else "#b03030"
        tip = f"{p.version} {p.arch}: {_duration(p.seconds)} ({p.timestamp.strftime('%Y-%m-%d %H:%M')} UTC)" + ("" if p.ok else ", failed")
        out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 1):.1f}" fill="{colour}">'
                   f'<title>{e(tip)}</title></rect>')
        if i % label_every == 0:
            cx = x + bar_w / 2
            out.append(f'<text x="{cx:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 14}" text-anchor="middle">{e(p.timestamp.strftime("%m-%d"))}</text>')
            out.append(f'<text x="{cx:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 28}" text-anchor="middle" fill="#555">{e(p.arch)}</text>')
    out.append(f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{WIDTH - MARGIN_RIGHT}" y2="{MARGIN_TOP + plot_h}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds % 60 else f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
