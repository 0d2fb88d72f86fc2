#!/usr/bin/env python3
"""Plots of the benchmark results (JSON lines from dnsd-bench) as standalone SVG files.

    python3 bench/plot.py dns      bench/results/dns.jsonl      docs/
    python3 bench/plot.py failover bench/results/failover.jsonl docs/
    python3 bench/plot.py scale    bench/results/scale.jsonl    docs/

No dependencies beyond the Python 3 standard library: the SVG is written by hand.
"""

import json
import math
import os
import sys
from html import escape

COLORS = {
    "dnsd": "#1f77b4",
    "knot": "#ff7f0e",
    "nsd": "#2ca02c",
    "gdnsd": "#d62728",
    "dnsd default": "#1f77b4",
    "dnsd aggressive": "#17becf",
    "gdnsd fastest": "#d62728",
}
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


class Svg:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.parts = [f'<rect width="{width}" height="{height}" fill="white"/>']

    def text(self, x, y, s, size=12, anchor="start", weight="normal", rotate=None, color="#222"):
        tr = f' transform="rotate({rotate} {x} {y})"' if rotate is not None else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{color}" {FONT}{tr}>{escape(str(s))}</text>'
        )

    def line(self, x1, y1, x2, y2, color="#999", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="{width}"{d}/>'
        )

    def rect(self, x, y, w, h, color, opacity=1.0):
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}" fill-opacity="{opacity}"/>'
        )

    def circle(self, x, y, r, color):
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}" fill-opacity="0.55"/>')

    def polyline(self, points, color, width=2):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"/>')

    def save(self, path):
        body = "\n".join(self.parts)
        with open(path, "w", encoding="utf-8") as f:
            f.write(
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}">\n{body}\n</svg>\n'
            )
        print(f"wrote {path}", file=sys.stderr)


def lighten(color, amount=0.55):
    """The colour mixed with white."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    mix = [int(c + (255 - c) * amount) for c in (r, g, b)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def nice_max(v):
    if v <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def axis_y(svg, x0, y0, h, vmax, label, ticks=5, fmt="{:g}"):
    for i in range(ticks + 1):
        v = vmax * i / ticks
        y = y0 - h * i / ticks
        svg.line(x0 - 4, y, x0, y, "#444")
        svg.text(x0 - 7, y + 4, fmt.format(round(v, 6)), size=11, anchor="end")
    svg.line(x0, y0, x0, y0 - h, "#444")
    svg.text(x0 - 48, y0 - h / 2, label, size=12, anchor="middle", rotate=-90)


def bar_panel(svg, x0, y0, w, h, title, groups, series, values, points, unit_label, fmt="{:g}"):
    """groups: x categories; series: bars per group; values[(g, s)] = median; points[(g, s)] = list."""
    svg.text(x0 + w / 2, y0 - h - 18, title, size=13, anchor="middle", weight="bold")
    vmax = nice_max(max([v for v in values.values() if v is not None] + [max(p) for p in points.values() if p] + [0]) * 1.05)
    for i in range(6):
        y = y0 - h * i / 5
        svg.line(x0, y, x0 + w, y, "#eee")
    axis_y(svg, x0, y0, h, vmax, unit_label, fmt=fmt)
    svg.line(x0, y0, x0 + w, y0, "#444")
    gw = w / len(groups)
    bw = gw * 0.7 / max(len(series), 1)
    for gi, g in enumerate(groups):
        gx = x0 + gi * gw + gw * 0.15
        for si, s in enumerate(series):
            v = values.get((g, s))
            if v is None:
                continue
            color = COLORS.get(g, "#888")
            if si == 1:
                color = lighten(color)
            bx = gx + si * bw
            bh = h * v / vmax
            svg.rect(bx, y0 - bh, bw * 0.92, bh, color)
            svg.text(bx + bw * 0.46, y0 - bh - 4, fmt.format(round(v, 2)), size=10, anchor="middle")
            for p in points.get((g, s), []):
                svg.circle(bx + bw * 0.46, y0 - h * p / vmax, 2.2, "#000")
        svg.text(x0 + gi * gw + gw / 2, y0 + 16, g, size=12, anchor="middle")


def plot_dns(records, outdir):
    runs = [r for r in records if r.get("type") == "run"]
    env = next((r for r in records if r.get("type") == "environment"), {})
    servers = []
    for r in runs:
        if r["server"] not in servers:
            servers.append(r["server"])
    summ = {(r["mode"], r["server"]): r["median"] for r in records if r.get("type") == "summary"}

    def pts(mode, server, key):
        return [r[key] for r in runs if r["mode"] == mode and r["server"] == server and r.get(key) is not None]

    svg = Svg(1180, 430)
    fixed_qps = next((r["qps"] for r in runs if r["mode"] == "fixed"), 0)
    svg.text(590, 22, f"DNS on one pinned core (dnsperf on the other): medians over rounds, dots = single runs — {env.get('date', '')} commit {env.get('commit', '')}", size=13, anchor="middle")
    series = ["server_cpu_us_per_query", "cpu1_us_per_query"]
    vals = {(s, k): summ.get(("fixed", s), {}).get(k) for s in servers for k in series}
    p = {(s, k): pts("fixed", s, k) for s in servers for k in series}
    bar_panel(svg, 80, 370, 300, 270, f"CPU per query at ~{fixed_qps / 1000:.0f}k qps (µs)", servers, series, vals, p, "µs per query")
    svg.text(230, 410, "dark: server process (utime+stime); light: CPU 1 busy (incl. softirq)", size=10, anchor="middle")
    vals = {(s, "p99"): summ.get(("fixed", s), {}).get("p99_latency_us") for s in servers}
    p = {(s, "p99"): pts("fixed", s, "p99_latency_us") for s in servers}
    bar_panel(svg, 470, 370, 300, 270, f"99th percentile latency at ~{fixed_qps / 1000:.0f}k qps (µs)", servers, ["p99"], vals, p, "µs")
    if any(r["mode"] == "max" for r in runs):
        vals = {(s, "qps"): (summ.get(("max", s), {}).get("qps") or 0) / 1000 for s in servers}
        p = {(s, "qps"): [v / 1000 for v in pts("max", s, "qps")] for s in servers}
        bar_panel(svg, 860, 370, 300, 270, "Unthrottled (dnsperf-bound: see CPU 0)", servers, ["qps"], vals, p, "thousand queries/s")
    svg.save(os.path.join(outdir, "bench-dns.svg"))


def histogram(svg, x0, y0, w, h, title, series, bin_ms, max_ms):
    svg.text(x0 + w / 2, y0 - h - 34, title, size=13, anchor="middle", weight="bold")
    bins = int(math.ceil(max_ms / bin_ms))
    counts = {}
    for name, samples in series:
        c = [0] * bins
        for v in samples:
            c[min(int(v // bin_ms), bins - 1)] += 1
        counts[name] = c
    cmax = nice_max(max([max(c) for c in counts.values()] + [1]))
    for i in range(6):
        y = y0 - h * i / 5
        svg.line(x0, y, x0 + w, y, "#eee")
    axis_y(svg, x0, y0, h, cmax, "trials", fmt="{:g}")
    svg.line(x0, y0, x0 + w, y0, "#444")
    # Side by side within each bin, so series never hide one another.
    bw = w / bins
    sw = bw * 0.9 / max(len(series), 1)
    for si, (name, _) in enumerate(series):
        for b, n in enumerate(counts[name]):
            if n:
                svg.rect(x0 + b * bw + si * sw, y0 - h * n / cmax, sw, h * n / cmax, COLORS.get(name, "#888"))
    step = 250 if max_ms <= 3000 else 500
    for t in range(0, int(max_ms) + 1, step):
        x = x0 + w * t / max_ms
        svg.line(x, y0, x, y0 + 4, "#444")
        svg.text(x, y0 + 16, f"{t}", size=10, anchor="middle")
    svg.text(x0 + w / 2, y0 + 32, "ms from crash (failover) or revive (failback) to the first DNS answer naming the new member", size=11, anchor="middle")
    lx = x0
    for name, samples in series:
        svg.rect(lx, y0 - h - 20, 12, 12, COLORS.get(name, "#888"))
        svg.text(lx + 16, y0 - h - 10, f"{name} (n={len(samples)})", size=11)
        lx += 200


def plot_failover(records, outdir):
    trials = [r for r in records if r.get("type") == "trial"]
    env = next((r for r in records if r.get("type") == "environment"), {})
    settings = []
    for t in trials:
        if t["setting"] not in settings:
            settings.append(t["setting"])
    svg = Svg(1000, 760)
    svg.text(500, 22, f"Failover and failback time, 10 ms DNS polling — {env.get('date', '')} commit {env.get('commit', '')}", size=13, anchor="middle")
    allv = []
    for direction, y0 in (("failover", 360), ("failback", 720)):
        series = []
        for s in settings:
            v = [t[f"dnsd_{direction}_ms"] for t in trials if t["setting"] == s and t.get(f"dnsd_{direction}_ms") is not None]
            series.append((f"dnsd {s}", v))
        g = [t[f"gdnsd_{direction}_ms"] for t in trials if t.get(f"gdnsd_{direction}_ms") is not None]
        if g:
            series.append(("gdnsd fastest", g))
        allv += [v for _, vs in series for v in vs]
        max_ms = nice_max(max(allv + [100]) * 1.02)
        histogram(svg, 80, y0, 880, 250, direction, series, 50, max_ms)
    svg.save(os.path.join(outdir, "bench-failover.svg"))


def line_panel(svg, x0, y0, w, h, title, xs, ys_list, ylabel, fmt="{:g}"):
    svg.text(x0 + w / 2, y0 - h - 12, title, size=13, anchor="middle", weight="bold")
    vmax = nice_max(max([max(v for v in ys if v is not None) for _, ys, _ in ys_list] + [1]) * 1.1)
    for i in range(6):
        y = y0 - h * i / 5
        svg.line(x0, y, x0 + w, y, "#eee")
    axis_y(svg, x0, y0, h, vmax, ylabel, fmt=fmt)
    svg.line(x0, y0, x0 + w, y0, "#444")
    lx = [math.log10(x) for x in xs]
    lo, hi = min(lx) - 0.15, max(lx) + 0.15

    def X(x):
        return x0 + w * (math.log10(x) - lo) / (hi - lo)

    for x in xs:
        svg.line(X(x), y0, X(x), y0 + 4, "#444")
        svg.text(X(x), y0 + 16, f"{x:,}", size=11, anchor="middle")
    svg.text(x0 + w / 2, y0 + 32, "members (log scale)", size=11, anchor="middle")
    for name, ys, extra in ys_list:
        color = COLORS.get(name, "#1f77b4")
        pts = [(X(x), y0 - h * y / vmax) for x, y in zip(xs, ys) if y is not None]
        svg.polyline(pts, color)
        for (px, py), y in zip(pts, ys):
            svg.circle(px, py, 4, color)
            svg.text(px + 6, py - 6, fmt.format(round(y, 2)), size=10)
        if extra:
            for x, (lo_v, hi_v) in zip(xs, extra):
                if lo_v is None or hi_v is None:
                    continue
                svg.line(X(x), y0 - h * lo_v / vmax, X(x), y0 - h * hi_v / vmax, color, 1.5)
                svg.line(X(x) - 5, y0 - h * hi_v / vmax, X(x) + 5, y0 - h * hi_v / vmax, color, 1.5)
                svg.line(X(x) - 5, y0 - h * lo_v / vmax, X(x) + 5, y0 - h * lo_v / vmax, color, 1.5)


def plot_scale(records, outdir):
    sizes = sorted((r for r in records if r.get("type") == "size"), key=lambda r: r["members"])
    env = next((r for r in records if r.get("type") == "environment"), {})
    if not sizes:
        return
    xs = [r["members"] for r in sizes]
    svg = Svg(1180, 420)
    svg.text(590, 22, f"dnsd heartbeating N members every {sizes[0]['interval']} over {sizes[0]['protocol'].upper()} — {env.get('date', '')} commit {env.get('commit', '')}", size=13, anchor="middle")
    line_panel(svg, 80, 360, 300, 270, "CPU (% of one core)", xs, [("dnsd", [r["cpu_pct_of_one_core"] for r in sizes], None)], "%")
    line_panel(svg, 470, 360, 300, 270, "Resident memory (MiB, median)", xs, [("dnsd", [r["rss_mib"]["median"] for r in sizes], None)], "MiB")
    line_panel(
        svg, 860, 360, 300, 270, "Death to node_down (ms): median, min–max", xs,
        [("dnsd", [r["down_delay_ms"]["median"] for r in sizes], [(r["down_delay_ms"]["min"], r["down_delay_ms"]["max"]) for r in sizes])],
        "ms",
    )
    svg.save(os.path.join(outdir, "bench-scale.svg"))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("dns", "failover", "scale"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kind, path, outdir = sys.argv[1:]
    records = load(path)
    os.makedirs(outdir, exist_ok=True)
    {"dns": plot_dns, "failover": plot_failover, "scale": plot_scale}[kind](records, outdir)


if __name__ == "__main__":
    main()
