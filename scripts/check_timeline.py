#!/usr/bin/env python3
"""Checks what headless Chromium drew for a faultline HTML timeline.

Standard library only (zlib + struct PNG decoding), so CI needs nothing from pip.

  check_timeline.py --html PAGE --png SCREENSHOT --dom DUMPED_DOM --report SEED.json --trace SEED.trace.txt

Checks, failing with a message on the first problem:
  * the DOM marker the page's script sets after drawing (`data-rendered="lanes:3 violations:13 ..."`)
    names as many node lanes as the trace has nodes and as many violations as the report, and
    the page's self-test (hover, click, zoom on a violation) passed;
  * the screenshot shows the role colours of the lanes (leader, follower) and the exact
    violation red, with the red inside the band of rows where the lanes are.
The colours are read from the page's own CSS, so restyling the page cannot silently break this.
"""

import argparse
import json
import re
import struct
import sys
import zlib


def fail(msg):
    print(f"check-timeline: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_png(path):
    """Returns (width, height, channels, rows) with rows as bytes objects of unfiltered pixels."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if ihdr is None:
        fail(f"{path}: no IHDR")
    width, height, depth, color, _, _, interlace = ihdr
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace != 0:
        fail(f"{path}: unsupported PNG (depth {depth}, color type {color}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, prev = [], bytearray(stride)
    bpp = channels
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            fail(f"{path}: bad filter type {ftype} in row {y}")
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def css_color(html, selector):
    m = re.search(re.escape(selector) + r"\{fill:#([0-9a-fA-F]{6})", html)
    if not m:
        fail(f"the page's CSS has no fill for `{selector}`")
    return bytes.fromhex(m.group(1))


def count_by_row(rows, channels, rgb):
    """Pixels of exactly `rgb` (opaque) per row."""
    out = []
    for row in rows:
        n = 0
        for i in range(0, len(row), channels):
            if row[i : i + 3] == rgb and (channels == 3 or row[i + 3] == 255):
                n += 1
        out.append(n)
    return out


def main():
    ap = argparse.ArgumentParser()
    for arg in ("--html", "--png", "--dom", "--report", "--trace"):
        ap.add_argument(arg, required=True)
    a = ap.parse_args()

    html = open(a.html, encoding="utf-8").read()
    dom = open(a.dom, encoding="utf-8").read()
    report = json.load(open(a.report, encoding="utf-8"))
    seed = report["failures"][0]
    nodes = set()
    for line in open(a.trace, encoding="utf-8"):
        parts = line.split()
        if len(parts) >= 2 and parts[1] != "controller":
            nodes.add(parts[1])
    nodes.update(v["node"] for v in seed["violations"] if v.get("node"))

    m = re.search(r'data-rendered="([^"]*)"', dom)
    if not m:
        fail("the page's script did not set body[data-rendered] (did JS run?)")
    rendered = dict(kv.split(":", 1) for kv in m.group(1).split())
    print(f"check-timeline: DOM marker: {m.group(1)}")
    if int(rendered.get("lanes", -1)) != len(nodes):
        fail(f"{rendered.get('lanes')} node lanes drawn, the trace has {len(nodes)} nodes: {sorted(nodes)}")
    if int(rendered.get("violations", -1)) != len(seed["violations"]):
        fail(f"{rendered.get('violations')} violation markers drawn, the report has {len(seed['violations'])}")
    if rendered.get("selftest") != "ok":
        fail(f"the page's interaction self-test did not pass: {rendered.get('selftest')}")

    width, height, channels, rows = read_png(a.png)
    red = css_color(html, ".violation path")
    colors = {
        "leader": css_color(html, ".r-leader"),
        "follower": css_color(html, ".r-follower"),
    }
    lane_rows = set()
    for name, rgb in colors.items():
        per_row = count_by_row(rows, channels, rgb)
        total = sum(per_row)
        print(f"check-timeline: {name} #{rgb.hex()}: {total} px")
        if total < 2000:
            fail(f"too few {name} pixels ({total}): the lanes were not drawn")
        # Rows where a lane bar spans a good part of the chart (the legend swatch does not).
        lane_rows.update(y for y, n in enumerate(per_row) if n >= 40)
    if not lane_rows:
        fail("no row crosses a lane bar")
    top, bottom = min(lane_rows), max(lane_rows)
    red_rows = count_by_row(rows, channels, red)
    red_total = sum(red_rows)
    red_on_lanes = sum(n for y, n in enumerate(red_rows) if top - 4 <= y <= bottom + 4)
    print(
        f"check-timeline: violation red #{red.hex()}: {red_total} px, {red_on_lanes} on the lanes "
        f"(rows {top}..{bottom} of {width}x{height})"
    )
    if red_on_lanes < 100:
        fail(f"the violation markers are not visible on the lanes ({red_on_lanes} px of exact red there)")
    print("check-timeline: ok")


if __name__ == "__main__":
    main()
