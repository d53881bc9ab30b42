"""HTML and SVG pieces of the feature page, built as strings and shown with one ``st.html`` each
(one element per section keeps reruns cheap; no chart library to load).

Layout rules: every context line is a flex item that may shrink (``min-width: 0``) and wraps at
spaces (``white-space: pre-wrap`` keeps runs of spaces) or, for a long token, anywhere
(``overflow-wrap: anywhere``), so long lines stay inside their column at any width;
charts are SVG images (data URIs) with ``width: 100%``, so they scale with their column.
"""

from __future__ import annotations

import base64
import html
import math

STYLE = """<style>
.ex{display:flex;gap:.6em;align-items:baseline;margin:.1em 0}
.ex code{flex:none;font-size:.8em}
.ctx{flex:1 1 0;min-width:0;font-family:monospace;font-size:.85em;line-height:1.9;
     overflow-wrap:anywhere;white-space:pre-wrap}
.tok{border-radius:2px}
.p1{background:rgba(255,140,0,0.1)}.n1{background:rgba(30,120,255,0.1)}.p2{background:rgba(255,140,0,0.2)}.n2{background:rgba(30,120,255,0.2)}.p3{background:rgba(255,140,0,0.3)}.n3{background:rgba(30,120,255,0.3)}.p4{background:rgba(255,140,0,0.4)}.n4{background:rgba(30,120,255,0.4)}.p5{background:rgba(255,140,0,0.5)}.n5{background:rgba(30,120,255,0.5)}.p6{background:rgba(255,140,0,0.6)}.n6{background:rgba(30,120,255,0.6)}.p7{background:rgba(255,140,0,0.7)}.n7{background:rgba(30,120,255,0.7)}.p8{background:rgba(255,140,0,0.8)}.n8{background:rgba(30,120,255,0.8)}.p9{background:rgba(255,140,0,0.9)}.n9{background:rgba(30,120,255,0.9)}.p10{background:rgba(255,140,0,1.0)}.n10{background:rgba(30,120,255,1.0)}
.band{margin:.6em 0}
.band summary{cursor:pointer;font-size:.9em;color:#555}
.metrics{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.5em;margin:.3em 0}
.metrics div{font-size:.85em;color:#555}.metrics b{display:block;font-size:1.6em;font-weight:400;color:#222}
.vocabrow{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.vocabrow table.vocab{flex:none;font-size:.85em;border-collapse:collapse}
.vocabrow table.vocab td,.vocabrow table.vocab th{padding:1px 6px;border:none}
.vocabrow .hist{flex:1 1 220px;min-width:0}
.explain{border-left:3px solid #ff8c00;padding:.2em .8em;margin:.4em 0}
.explain q{display:block;font-size:1.15em;quotes:none;overflow-wrap:anywhere}
.explain .who{font-size:.8em;color:#555;overflow-wrap:anywhere}
.explain .offline{display:inline-block;font-size:.8em;font-weight:600;color:#7a4100;background:#fff1dc;
  border-radius:3px;padding:0 .4em;margin:.2em 0}
</style>"""


def token_html(tok: str) -> str:
    return html.escape(tok).replace("\n", "↵").replace("\t", "⇥") or "∅"  # spaces kept: lines break there


def context_html(tokens: list[str], acts: list[float], at: int, scale: float) -> str:
    """One context with each token's background set by its activation (hover shows the value).
    Inactive tokens are plain text and active ones carry one of ten shade classes, so a page of
    contexts is a small DOM (the qualifying token keeps its exact shade inline)."""
    out = []
    for j, (tok, a) in enumerate(zip(tokens, acts)):
        alpha = min(abs(a) / scale, 1.0) if scale > 0 else 0.0
        if j == at:
            colour = "255,140,0" if a >= 0 else "30,120,255"
            out.append(
                f'<span class="tok qual" title="{a:.3g}" style="background:rgba({colour},{alpha:.2f});'
                f'border-bottom:2px solid #000">{token_html(tok)}</span>'
            )
        elif a == 0 or alpha < 0.05:
            out.append(token_html(tok))
        else:
            out.append(
                f'<span class="{"p" if a > 0 else "n"}{round(alpha * 10)}" title="{a:.3g}">{token_html(tok)}</span>'
            )
    return '<div class="ctx">' + "".join(out) + "</div>"


def example_row(e: dict, tokens: list[str], scale: float) -> str:
    return (
        f'<div class="ex"><code>{e["value"]:.3g}</code>{context_html(tokens, e["acts"], e["token_index"], scale)}</div>'
    )


def examples_html(examples: list[dict], decode, scale: float) -> str:
    """Top examples, then one open ``<details>`` per activation-quantile band (highest first)."""
    top = [e for e in examples if e["kind"] == "top"]
    parts = [STYLE]
    if not top:
        parts.append("<p>This feature never activated on the store's text.</p>")
    parts += [example_row(e, decode(e["tokens"]), scale) for e in top]
    bands = sorted({e["band"] for e in examples if e["kind"] == "quantile"}, reverse=True)
    for b in bands:
        rows = [e for e in examples if e["kind"] == "quantile" and e["band"] == b]
        r = rows[0]
        parts.append(
            f'<details class="band" open><summary>Quantile band {b + 1}: activations '
            f"{r['bin_min']:.3g} – {r['bin_max']:.3g} ({100 * r['bin_contains']:.1f}% of active "
            f"tokens)</summary>" + "".join(example_row(e, decode(e["tokens"]), scale) for e in rows) + "</details>"
        )
    return "".join(parts)


def svg_bars(
    xs: list[float],
    heights: list[float],
    colours: list[str],
    xlabel: str,
    w: int = 360,
    h: int = 150,
    log: bool = False,
) -> str:
    """A bar chart of ``heights`` at centres ``xs`` (equal widths), scaled to its column; ``log``:
    bar heights on a log scale (log(1 + count)), so a tail of a few tokens stays visible."""
    if not xs:
        return "<p>No values to plot.</p>"
    shown = [math.log1p(v) for v in heights] if log else heights
    pad_l, pad_b, pad_t = 36, 30, 8
    lo, hi = min(xs), max(xs)
    step = min((b - a for a, b in zip(xs, xs[1:]) if b > a), default=1.0)
    lo, hi = lo - step / 2, hi + step / 2
    top = max(shown) or 1
    sx = lambda x: pad_l + (x - lo) / (hi - lo) * (w - pad_l - 4)  # noqa: E731
    sy = lambda y: pad_t + (1 - y / top) * (h - pad_b - pad_t)  # noqa: E731
    bw = max(sx(lo + step) - sx(lo) - 0.5, 0.8)
    bars = "".join(
        f'<rect x="{sx(x) - bw / 2:.1f}" y="{sy(y):.1f}" width="{bw:.1f}" '
        f'height="{sy(0) - sy(y):.1f}" fill="{c}"><title>{x:.3g}: {v:g}</title></rect>'
        for x, v, y, c in zip(xs, heights, shown, colours)
        if v
    )
    mid = 0.0 if lo + 0.2 * (hi - lo) < 0 < hi - 0.2 * (hi - lo) else (lo + hi) / 2  # 0 when it is inside
    ticks = "".join(
        f'<text x="{sx(x):.1f}" y="{h - pad_b + 13}" text-anchor="{a}">{x:.3g}</text>'
        for x, a in ((lo, "start"), (mid, "middle"), (hi, "end"))
    )
    axes = (
        f'<line x1="{pad_l}" y1="{sy(0):.1f}" x2="{w - 4}" y2="{sy(0):.1f}" stroke="#999"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 9}" text-anchor="end">{max(heights):g}</text>'
        f'<text x="{pad_l - 4}" y="{sy(0):.1f}" text-anchor="end">0</text>'
        f'<text x="{(pad_l + w) / 2:.0f}" y="{h - 3}" text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}"><style>text{{font:11px sans-serif;'
        f"fill:#555}}</style>{bars}{axes}{ticks}</svg>"
    )
    # as an <img>: st.html sanitises inline <svg> away, a data-URI image passes
    return (
        f'<img class="chart" alt="{html.escape(xlabel)}" style="width:100%;height:auto" '
        f'src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}">'
    )


def activation_hist_html(f: dict) -> str:
    """The exact histogram of the feature's nonzero codes (negative side blue, positive orange)."""
    n = len(f["hist_pos"])
    if not f["hist_range"]:
        return "<p>No activations to plot.</p>"
    w = f["hist_range"] / n
    bars = [(-(b + 0.5) * w, h, "#1e78ff") for b, h in enumerate(f["hist_neg"]) if h][::-1]
    bars += [((b + 0.5) * w, h, "#ff8c00") for b, h in enumerate(f["hist_pos"]) if h]
    xs, hs, cs = zip(*bars) if bars else ((), (), ())
    log = bool(hs) and max(hs) > 100 * min(hs)  # a long tail (dense features): the top examples sit in it
    label = "activation (nonzero tokens" + ("; count on a log scale)" if log else ")")
    return STYLE + svg_bars(list(xs), list(hs), list(cs), label, log=log)


def vocab_html(f: dict) -> str:
    """Promoted/suppressed tokens beside the histogram of the direction's logits over the whole
    vocabulary (SAEDashboard's logit-effect histogram; the tails are the tokens listed)."""
    cell = lambda t: (  # noqa: E731 (a leading space stays visible; a token of spaces shows them as ␣ / ⍽)
        token_html(t).replace(" ", "&nbsp;") if t.strip() else token_html(t).replace(" ", "␣").replace("\xa0", "⍽")
    )
    rows = "".join(
        f"<tr><td><code>{cell(a)}</code></td><td>{x:+.3f}</td><td><code>{cell(b)}</code></td><td>{y:+.3f}</td></tr>"
        for a, x, b, y in zip(f["vocab_top"], f["vocab_top_logits"], f["vocab_bottom"], f["vocab_bottom_logits"])
    )
    table = (
        '<table class="vocab"><tr><th>promoted</th><th>logit</th><th>suppressed</th><th>logit</th></tr>'
        + rows
        + "</table>"
    )
    xs, hs = f.get("logit_hist_values") or [], f.get("logit_hist_heights") or []
    chart = (
        svg_bars(list(xs), list(hs), ["#ff8c00" if x >= 0 else "#1e78ff" for x in xs], "logit effect (all tokens)")
        if xs
        else ""
    )
    return STYLE + f'<div class="vocabrow">{table}<div class="hist">{chart}</div></div>'


def metrics_html(f: dict) -> str:
    """The feature's summary numbers as one grid (one element instead of four widgets)."""
    cells = [
        ("density", f"{f['density']:.3%}"),
        ("max activation", f"{f['max']:.3g}"),
        ("mean (when active)", f"{f['mean_active']:.3g}"),
        ("active tokens", f"{f['n_active']:,}"),
    ]
    return STYLE + '<div class="metrics">' + "".join(f"<div>{k}<b>{v}</b></div>" for k, v in cells) + "</div>"


def _auroc(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}"


def explanation_html(e: dict) -> str:
    """An attached explanation: the text, its detection and fuzzing AUROC (0.5: chance), who
    explained and who scored, and a label when the scorer is the offline one (not an LLM reader)."""
    offline = str(e["scorer"]).startswith("offline")
    badge = (
        '<div class="offline">offline scorer: sentence-embedding similarity, not an LLM reader; '
        "its AUROCs are not comparable with LLM-scored ones</div>"
        if offline
        else ""
    )
    cells = [
        ("detection AUROC", _auroc(e["detection"])),
        ("fuzzing AUROC", _auroc(e["fuzzing"])),
        ("scored contexts", f"{e['n_activating']} activating · {e['n_negative']} not"),
    ]
    return (
        STYLE
        + f'<div class="explain"><q>{html.escape(str(e["explanation"]))}</q>{badge}'
        + '<div class="metrics">'
        + "".join(f"<div>{k}<b>{v}</b></div>" for k, v in cells)
        + "</div>"
        + f'<div class="who">explainer: {html.escape(str(e["explainer"]))}<br>'
        + f"scorer: {html.escape(str(e['scorer']))}</div></div>"
    )
