"""The comparison's one table (markdown + CSV) and one figure, from ``compare``'s results dict.

A cell whose metric does not apply to a method reads ``n/a`` and the reason is listed under the
table; a metric that was not run is left empty.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

# (column, where in a row's results, format)
CORE_COLS = (
    ("L0", "l0"),
    ("EV", "explained_variance"),
    ("cos", "cossim"),
    ("CE score", "ce_loss_score"),
    ("KL score", "kl_div_score"),
    ("alive", "frac_alive"),
    ("L2 ratio", "l2_ratio"),
)
ABS_COLS = (
    ("absorb frac", "mean_absorption_fraction_score"),
    ("full absorb", "mean_full_absorption_score"),
    ("split feats", "mean_num_split_features"),
    ("letters", "n_letters"),
)


def _columns(results: dict[str, Any]) -> list[tuple[str, str, tuple]]:
    """(header, metric group, key path) for every column that has a value in some row."""
    rows = results["results"].values()
    cols = [(h, "core", (k,)) for h, k in CORE_COLS]
    sets = sorted({s for r in rows for s in r.get("probing", {})})
    ks = sorted(
        {k for r in rows for s in r.get("probing", {}).values() for k in s if k != "raw"},
        key=lambda k: int(k.split("_")[1]),
    )
    for s in sets:
        cols += [(f"{s} {k.replace('top_', 'k=')}", "probing", (s, k)) for k in ks] + [
            (f"{s} raw", "probing", (s, "raw"))
        ]
    cols += [(h, "absorption", (k,)) for h, k in ABS_COLS]
    cols += [("detection", "autointerp", ("detection",)), ("fuzzing", "autointerp", ("fuzzing",))]
    return cols


def _cell(row: dict[str, Any], group: str, path: tuple) -> str:
    if group in row.get("na", {}):
        return "n/a"
    v: Any = row.get(group)
    for p in path:
        v = v.get(p) if isinstance(v, dict) else None
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.1f}" if path[-1] in ("l0",) else f"{v:.3f}"


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(results)
    header = ["artifact", "method", "site", "F"] + [c[0] for c in cols]
    rows = [
        [name, r["method"], r["site"], str(r["n_features"])] + [_cell(r, g, p) for _, g, p in cols]
        for name, r in results["results"].items()
    ]
    return header, rows


def write_tables(results: dict[str, Any], out: Path) -> None:
    """``table.md`` (with the not-applicable reasons and the scorer labels) and ``table.csv``."""
    header, rows = table_rows(results)
    with open(out / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    notes = [
        f"- {name}, {metric}: {why}"
        for name, r in results["results"].items()
        for metric, why in r.get("na", {}).items()
    ]
    readers = {(a["explainer"], a["scorer"]) for r in results["results"].values() if (a := r.get("autointerp"))}
    md += [
        "",
        f"Model {results['model']}; total {results['seconds']['total']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results['seconds'].items() if k != 'total')}).",
    ]
    md += [f"Autointerp explainer: {e}; scorer: {s} (AUROC, 0.5 = chance)." for e, s in sorted(readers)]
    if notes:
        md += ["", "Not applicable:"] + notes
    (out / "table.md").write_text("\n".join(md) + "\n")


def write_figure(results: dict[str, Any], path: Path) -> None:
    """One figure: a bar panel per headline metric, one bar per artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header, rows = table_rows(results)
    want = [h for h in ("EV", "CE score", "KL score", "alive") if h in header]
    want += [h for h in header if h.endswith(("k=1", "k=5", "raw"))][:6]
    want += [h for h in ("absorb frac", "full absorb", "detection", "fuzzing") if h in header]
    n = max(len(want), 1)
    fig, axes = plt.subplots((n + 3) // 4, 4, figsize=(16, 3.2 * ((n + 3) // 4)), squeeze=False)
    names = [r[0] for r in rows]
    for ax, h in zip(axes.flat, want):
        j = header.index(h)
        vals = [float(r[j]) if r[j] not in ("", "n/a") else float("nan") for r in rows]
        ax.bar(range(len(names)), vals, color="C0")
        ax.set_title(h, fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    for ax in list(axes.flat)[len(want) :]:
        ax.axis("off")
    fig.suptitle(f"feature quality, {results['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
