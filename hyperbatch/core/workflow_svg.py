"""A workflow's DAG as a small SVG picture: no Graphviz needed, so `hyper workflow show` works anywhere.

Layered layout: a step's layer is the longest chain of parents above it, so every edge points down;
within a layer steps keep the file's order. Each box is coloured by the step's state (a plan, before
submit, has none) with a legend of the colours used; each edge is labelled with its dependency kind.
Every text from the user (step names, job ids) is escaped.
"""

from __future__ import annotations

from html import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

# State -> fill colour. PLANNED is a step of a file not submitted (no state yet).
COLOURS = {
    "PLANNED": "#e0e0e0",
    "WAITING": "#fff3b0",
    "HELD": "#ffd59e",
    "QUEUED": "#b3d9ff",
    "RUNNING": "#7fb3ff",
    "SUCCEEDED": "#9be59b",
    "FAILED": "#ff8a8a",
    "CANCELLED": "#c8c8c8",
    "UNKNOWN": "#ffffff",  # its job is gone (expired from the store)
}
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, LEGEND_W = 170, 46, 40, 70, 20, 130


def layers(steps: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> list[list[str]]:
    """Steps by layer (longest path from a root), file order within a layer. `edges` are
    (parent, child, kind) between known steps and form no cycle (core.workflows.order checks)."""
    parents: dict[str, list[str]] = {s: [] for s in steps}
    for parent, child, _ in edges:
        parents[child].append(parent)
    depth: dict[str, int] = {}

    def level(step: str) -> int:
        if step not in depth:
            depth[step] = 1 + max((level(p) for p in parents[step]), default=-1)
        return depth[step]

    out: list[list[str]] = []
    for step in steps:
        n = level(step)
        while len(out) <= n:
            out.append([])
        out[n].append(step)
    return out


def draw(steps: Sequence[str], edges: Sequence[tuple[str, str, str]], states: Mapping[str, str] | None = None,
         labels: Mapping[str, str] | None = None, title: str = "") -> str:
    """The SVG document. `states`: step -> state (None: a plan, every step PLANNED); `labels`: a second
    line per step (its job id)."""
    rows = layers(steps, edges)
    widest = max(len(row) for row in rows) if rows else 1
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X + LEGEND_W
    top = MARGIN + (24 if title else 0)
    height = top + len(rows) * BOX_H + (len(rows) - 1) * GAP_Y + MARGIN
    where: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        offset = (widest - len(row)) * (BOX_W + GAP_X) / 2
        for c, step in enumerate(row):
            where[step] = (MARGIN + offset + c * (BOX_W + GAP_X), top + r * (BOX_H + GAP_Y))
    state_of = {s: (states.get(s) or "UNKNOWN") if states is not None else "PLANNED" for s in steps}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{max(height, 200):g}" '
        f'font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    if title:
        out.append(f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="15" font-weight="bold">{escape(title)}</text>')
    for parent, child, kind in edges:
        (px, py), (cx, cy) = where[parent], where[child]
        x1, y1, x2, y2 = px + BOX_W / 2, py + BOX_H, cx + BOX_W / 2, cy
        out.append(f'<g class="edge" data-from="{escape(parent)}" data-to="{escape(child)}">'
                   f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="#555" marker-end="url(#arrow)"/>'
                   f'<text x="{(x1 + x2) / 2 + 4:g}" y="{(y1 + y2) / 2:g}" fill="#333">{escape(kind)}</text></g>')
    for step in steps:
        x, y = where[step]
        state = state_of[step]
        label = (labels or {}).get(step)
        second = f"{label} {state.lower()}" if label else ("" if state == "PLANNED" else state.lower())
        out.append(
            f'<g class="step" data-step="{escape(step)}" data-state="{state}">'
            f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{COLOURS[state]}" stroke="#333"/>'
            f'<text x="{x + BOX_W / 2:g}" y="{y + 18:g}" text-anchor="middle" font-weight="bold">{escape(step)}</text>'
            f'<text x="{x + BOX_W / 2:g}" y="{y + 35:g}" text-anchor="middle">{escape(second)}</text></g>')
    used = [s for s in COLOURS if s in set(state_of.values())]
    lx = width - LEGEND_W + 10
    out.append('<g class="legend">')
    for i, state in enumerate(used):
        ly = top + i * 20
        out.append(f'<rect x="{lx:g}" y="{ly}" width="14" height="14" fill="{COLOURS[state]}" stroke="#333"/>'
                   f'<text x="{lx + 20:g}" y="{ly + 11}">{state.lower()}</text>')
    out.append("</g></svg>")
    return "\n".join(out) + "\n"
