"""A report as a list of blocks, and how it is written: one HTML page, Markdown, PNGs.

For each experiment: ``DIR/<experiment>/index.html`` (one self-contained file, figures
embedded as base64 PNG, no scripts, no external files), ``DIR/<experiment>/report.md``
with the PNGs beside it, and ``DIR/index.html`` linking them all.
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bpresearch.keys import safe_name

from .figures.style import NotApplicable, plt


# ---------------------------------------------------------------- the report as blocks
@dataclass
class Figure:
    name: str          # file stem of the PNG
    title: str         # the question the figure answers
    png: bytes | None  # None: not applicable
    reason: str = ""   # why there is no figure


@dataclass
class Report:
    """An experiment's report: a list of blocks, rendered to HTML and Markdown."""
    name: str
    blocks: list = field(default_factory=list)   # ("h2"|"h3"|"p"|"pre"|"ul", payload) | Figure | ("table", title, df)
    summary: dict = field(default_factory=dict)  # this report's entry of summary.json (``analysis.summary``)

    def h2(self, text): self.blocks.append(("h2", text))
    def h3(self, text): self.blocks.append(("h3", text))
    def p(self, text): self.blocks.append(("p", text))
    def pre(self, text): self.blocks.append(("pre", text))
    def ul(self, items): self.blocks.append(("ul", items))  # kept by reference: findings fill in later
    def table(self, title, df): self.blocks.append(("table", title, df))

    def figure(self, name: str, title: str, build):
        """Add the figure ``build()`` returns, or the reason it cannot be drawn."""
        try:
            fig = build()
        except NotApplicable as e:
            self.blocks.append(Figure(name, title, None, f"Not shown: {e}."))
            return
        except Exception as e:  # noqa: BLE001 - a broken figure must not stop the report
            self.blocks.append(Figure(name, title, None, f"This figure could not be drawn ({type(e).__name__}: {e})."))
            print(f"  warning: figure {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        self.blocks.append(Figure(name, title, buf.getvalue()))

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ---------------------------------------------------------------- HTML, Markdown, files
CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}td.t,th.t{text-align:left}th{background:#f4f4f4}
pre{background:#f7f7f7;padding:.8em;overflow:auto;max-height:28em;white-space:pre-wrap;overflow-wrap:anywhere;
font-size:.8em}img{max-width:100%}.na{background:#fff4e5;border-left:4px solid #e67e22;padding:.6em}
figure{margin:1em 0}figcaption{font-weight:600}"""


def _is_text(col: pd.Series) -> bool:
    """A column of words (left-aligned) rather than numbers (right-aligned)."""
    def number(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return True
        t = str(v).replace(",", "").replace("%", "").replace("—", "").strip()
        try:
            float(t) if t and "–" not in t else None
            return True
        except ValueError:
            return t in ("", "not reached")
    return not all(number(v) for v in col)


def _html_table(df: pd.DataFrame) -> str:
    text = [_is_text(df[c]) for c in df.columns] if len(set(df.columns)) == len(df.columns) else \
        [_is_text(df.iloc[:, i]) for i in range(df.shape[1])]
    cls = lambda t: " class='t'" if t else ""  # noqa: E731
    head = "".join(f"<th{cls(t)}>{html.escape(str(c))}</th>" for c, t in zip(df.columns, text))
    body = "".join("<tr>" + "".join(f"<td{cls(t)}>{html.escape(_cell(v))}</td>" for v, t in zip(row, text)) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v) -> str:
    if isinstance(v, float):
        if v == math.inf:
            return "not reached"
        return f"{v:,.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    text = [_is_text(df.iloc[:, i]) for i in range(df.shape[1])]
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |",
             "|" + "".join(":---|" if t else "---:|" for t in text)]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page (figures as base64 PNG data URIs)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(rep.name)} — "
             f"convergence report</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(rep.name)}: how quickly does training converge?</h1>"]
    for b in rep.blocks:
        if isinstance(b, Figure):
            if b.png is None:
                parts.append(f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                             f"<p class='na'>{html.escape(b.reason)}</p></figure>")
            else:
                data = base64.b64encode(b.png).decode("ascii")
                parts.append(f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                             f"<img alt='{html.escape(b.title)}' src='data:image/png;base64,{data}'></figure>")
        elif b[0] in ("h2", "h3"):
            parts.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p":
            parts.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "pre":
            parts.append(f"<pre>{html.escape(b[1])}</pre>")
        elif b[0] == "ul" and not b[1]:
            continue
        elif b[0] == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
        elif b[0] == "table":
            parts.append(f"<p><strong>{html.escape(b[1])}</strong></p>{_html_table(b[2])}")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(rep: Report) -> str:
    """The report as Markdown; figures are the PNG files written beside it."""
    parts = [f"# {rep.name}: how quickly does training converge?"]
    for b in rep.blocks:
        if isinstance(b, Figure):
            parts.append(f"**{b.title}**\n\n" + (f"> {b.reason}" if b.png is None else f"![{b.title}]({b.name}.png)"))
        elif b[0] == "h2":
            parts.append(f"## {b[1]}")
        elif b[0] == "h3":
            parts.append(f"### {b[1]}")
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "pre":
            parts.append(f"```toml\n{b[1].rstrip()}\n```")
        elif b[0] == "ul" and not b[1]:
            continue
        elif b[0] == "ul":
            parts.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            parts.append(f"**{b[1]}**\n\n{_md_table(b[2])}")
    return "\n\n".join(parts) + "\n"


def slug(name: str) -> str:
    """A folder name for an experiment name: one safe path component (``bpresearch.keys``)."""
    return safe_name(name)


def write(rep: Report, folder: Path) -> list[Path]:
    """Write index.html, report.md and the PNGs of one report; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # figures of an earlier build that no longer apply
        old.unlink()
    files = []
    for f in rep.figures:
        if f.png is not None:
            (folder / f"{f.name}.png").write_bytes(f.png)
            files.append(folder / f"{f.name}.png")
    (folder / "index.html").write_text(to_html(rep), encoding="utf-8")
    (folder / "report.md").write_text(to_markdown(rep), encoding="utf-8")
    return files + [folder / "index.html", folder / "report.md"]


def write_index(out: Path, entries: list[tuple[str, str, str]], uri: str):
    """``DIR/index.html``: one link per report, with its first finding."""
    items = "".join(f"<li><a href='{html.escape(slug(n))}/index.html'>{html.escape(n)}</a> — {html.escape(first)}"
                    f" <small>({html.escape(count)})</small></li>" for n, count, first in entries)
    (out / "index.html").write_text(
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>bpresearch reports</title>"
        f"<style>{CSS}</style></head><body><h1>Convergence reports</h1><p>From the MLflow store "
        f"{html.escape(uri)}, written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p><ul>{items}</ul></body></html>",
        encoding="utf-8")
