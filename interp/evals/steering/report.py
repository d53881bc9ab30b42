"""Writing a steering comparison: results JSON, a markdown table with 95% intervals, example
generations, and a plot of the scores against the KL budget (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from interp._io import write_atomic, write_json_atomic


def _ci(x: tuple[float, float, float], fmt: str = ".3f") -> str:
    m, lo, hi = x
    return "–" if math.isnan(m) else f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def table_markdown(rows: list[dict[str, Any]], unsteered: dict[str, float] | None = None) -> str:
    head = (
        "| method | sign | KL target | concept | fluency | combined | success | output score | median ppl | "
        "misses | selection AUROC |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        auc = "–" if r["selection_auroc"] is None else f"{r['selection_auroc']:.2f}"
        lines.append(
            f"| {r['method']} | {'+' if r['sign'] > 0 else '−'} | {r['kl_target']:g} | {_ci(r['concept'])} | "
            f"{_ci(r['fluency'])} | {_ci(r['combined'])} | {_ci(r.get('success', (math.nan,) * 3), '.2f')} | "
            f"{_ci(r['output_score'], '.2e')} | "
            f"{r['perplexity']:.1f} | {r['misses']}/{r['n']} | {auc} |"
        )
    if unsteered:
        u = {k: unsteered.get(k, math.nan) for k in ("concept", "fluency", "combined", "success")}
        lines.append(
            f"| unsteered | | 0 | {u['concept']:.3f} | {u['fluency']:.3f} | {u['combined']:.3f} | "
            f"{u['success']:.2f} | | {unsteered['perplexity']:.1f} | | |"
        )
    text = head + "\n".join(lines) + "\n"
    llm = [r for r in rows if "llm_combined" in r]
    if llm:
        text += (
            "\nLLM judge (AxBench 0–2 harmonic mean):\n\n"
            + "\n".join(
                f"- {r['method']} {'+' if r['sign'] > 0 else '−'} KL {r['kl_target']:g}: {_ci(r['llm_combined'])}"
                for r in llm
            )
            + "\n"
        )
    return text


def examples_markdown(result: dict[str, Any], per_method: int = 3) -> str:
    """The first generation at each KL target for the first ``per_method`` concepts of each method."""
    out = ["# Example generations\n"]
    un = result["unsteered"]
    out.append("## unsteered\n")
    out += [f"- *{p}* → {g!r}" for p, g in zip(un["prompts"], un["generations"])]
    recs = result["records"]
    firsts = sorted({un["prompts"].index(p) for p in un["prompts"]})[:2]  # one sample of two prompts
    for method in dict.fromkeys(r["method"] for r in recs):
        out.append(f"\n## {method}\n")
        for concept in list(dict.fromkeys(r["concept"] for r in recs if r["method"] == method))[:per_method]:
            out.append(f"\n### {concept}\n")
            for r in recs:
                if (r["method"], r["concept"]) != (method, concept):
                    continue
                tag = f"KL {r['target']:g}, sign {r['sign']:+d}, α {r['alpha']:.3g}"
                if r["hit"]:
                    for i in firsts:
                        out.append(
                            f"- {tag} (concept {r['concept_score'][i]:.2f}, fluency {r['fluency'][i]:.2f}): "
                            f"*{un['prompts'][i]}* → {r['generations'][i]!r}"
                        )
                else:
                    out.append(f"- {tag}: missed ({r['note']})")
    return "\n".join(out) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, score in zip(axes, ("concept", "fluency", "combined")):
        for method in dict.fromkeys(r["method"] for r in rows):
            for sign in sorted({r["sign"] for r in rows if r["method"] == method}, reverse=True):
                sel = [r for r in rows if r["method"] == method and r["sign"] == sign and not math.isnan(r[score][0])]
                if not sel:
                    continue
                x = [r["kl_target"] for r in sel]
                m = [r[score][0] for r in sel]
                err = [[r[score][0] - r[score][1] for r in sel], [r[score][2] - r[score][0] for r in sel]]
                ax.errorbar(x, m, yerr=err, marker="o", capsize=3, label=method + ("" if sign > 0 else " (−)"))
        ax.set_xscale("log")
        ax.set_xlabel("KL budget (next token, neutral prompts)")
        ax.set_title(score)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120), binary=True)
    plt.close(fig)


def write_report(
    out: str | Path, result: dict[str, Any], rows: list[dict[str, Any]], unsteered: dict[str, float] | None = None
) -> dict[str, Path]:
    out = Path(out)
    paths = {
        "results": out / "results.json",
        "table": out / "table.md",
        "examples": out / "examples.md",
        "plot": out / "plot.png",
    }
    write_json_atomic(paths["results"], {**result, "summary": rows})
    write_atomic(paths["table"], lambda f: f.write(table_markdown(rows, unsteered)))
    write_atomic(paths["examples"], lambda f: f.write(examples_markdown(result)))
    plot(rows, paths["plot"])
    return paths
