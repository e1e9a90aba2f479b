"""A small inline SVG line chart, drawn on the server (no JavaScript, no CSS)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["sparkline"]


def sparkline(
    points: Sequence[tuple[float, float]],
    *,
    width: int = 160,
    height: int = 36,
    label: str = "lag",
) -> Markup:
    """An SVG polyline of ``(time, value)`` points scaled to `width` x `height`; a flat
    line at the bottom when there are fewer than two points. The title tells the range."""
    pad = 2.0
    if len(points) < 2:
        coords = f"{pad},{height - pad} {width - pad},{height - pad}"
        top = points[0][1] if points else 0.0
    else:
        t0, t1 = points[0][0], points[-1][0]
        top = max(value for _, value in points)
        span_t = (t1 - t0) or 1.0
        span_v = top or 1.0
        coords = " ".join(
            f"{pad + (t - t0) / span_t * (width - 2 * pad):.1f},"
            f"{height - pad - value / span_v * (height - 2 * pad):.1f}"
            for t, value in points
        )
    title = f"{label}: max {top:,.0f} over {len(points)} sample(s)"
    return Markup(
        f'<svg class="chart" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{coords}"/>'
        "</svg>"
    )
