"""A report as a list of blocks, and how it is written: one HTML page, Markdown, PNGs.

For each experiment: ``DIR/<experiment>/index.html`` (one self-contained file, figures
embedded as base64 PNG, no scripts, no external files), ``details.html`` and ``report.md``
with the PNGs beside them (``analysis.pages`` decides which block goes on which page), and
``DIR/index.html`` linking them all.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

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


class Link(NamedTuple):
    """A table cell that links elsewhere (a run in the MLflow UI: ``analysis.links``)."""
    text: str
    href: str

    def __str__(self):
        return self.text


@dataclass
class Report:
    """An experiment's report: a list of blocks, rendered to HTML and Markdown."""
    name: str
    blocks: list = field(default_factory=list)   # ("h2"|"h3"|"p"|"pre"|"ul", payload) | Figure | ("table", title, df)
    summary: dict = field(default_factory=dict)  # this report's entry of summary.json (``analysis.summary``)
    fold_from: int | None = None  # blocks from here on: each h2 opens a collapsed section (HTML <details>)
    elsewhere: list = field(default_factory=list)  # (title, href): sections on another page, in the contents line
    title_url: str = ""           # where the title links (the experiment in the MLflow UI); "" no link

    def h2(self, text): self.blocks.append(("h2", text))
    def h3(self, text): self.blocks.append(("h3", text))
    def p(self, text): self.blocks.append(("p", text))
    def pre(self, text): self.blocks.append(("pre", text))
    def ul(self, items): self.blocks.append(("ul", items))  # kept by reference: findings fill in later
    def table(self, title, df, ident=""): self.blocks.append(("table", title, df, ident))
    def terms(self, pairs): self.blocks.append(("terms", list(pairs)))  # a glossary: (term, meaning)

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
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)  # no clipped labels
        plt.close(fig)
        self.blocks.append(Figure(name, title, buf.getvalue()))

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ---------------------------------------------------------------- HTML, Markdown, files
CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:1.2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.45em;margin:.2em 0 .3em}h2{border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.4em}table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px
solid #ccc;padding:.2em .5em;text-align:right}td.t,th.t{text-align:left}th{background:#f4f4f4}
.wide{overflow-x:auto;max-width:100%}
pre{background:#f7f7f7;padding:.8em;overflow:auto;max-height:28em;white-space:pre-wrap;overflow-wrap:anywhere;
font-size:.8em}img{max-width:100%;height:auto}.na{color:#666;font-size:.9em}li{overflow-wrap:anywhere}
figure{margin:1em 0}figcaption{font-weight:600}details{border:1px solid #ddd;border-radius:4px;margin:.5em 0;
padding:.2em .8em}details>summary{cursor:pointer;font-weight:600;font-size:1.1em;padding:.3em 0}
.lead{font-size:.9em;color:#555;margin:0 0 .4em}.terms{font-size:.85em;color:#444}.terms dt{font-weight:600;
display:inline}.terms dd{display:inline;margin:0 .8em 0 .3em}nav{font-size:.9em}
#recommendations{font-size:.8em}#recommendations td{white-space:nowrap}"""  # one line per row: more rows on the first screen

MAX_BULLET = 300   # characters: a longer finding is split at its sentences, then at its clauses


def bullets(text: str, limit: int = MAX_BULLET) -> list[str]:
    """A finding as one or more bullets of at most about ``limit`` characters.

    Split first at sentence ends, then a sentence still too long at "; " (its clauses), the
    continuation marked with "…"; a clause longer than ``limit`` stays whole.
    """
    if len(text) <= limit:
        return [text]
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text):
        if len(sentence) <= limit:
            out.append(sentence)
            continue
        cur = ""
        for clause in sentence.split("; "):
            if cur and len(cur) + len(clause) + 2 > limit:
                out.append(cur + ";")
                cur = "… " + clause
            else:
                cur = f"{cur}; {clause}" if cur else clause
        out.append(cur)
    return out


def anchor(title: str) -> str:
    """An HTML id for a section title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


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
            return t in ("", "not reached", "not run")
    return not all(number(v) for v in col)


def _html_table(df: pd.DataFrame, cls_name: str = "") -> str:
    text = [_is_text(df.iloc[:, i]) for i in range(df.shape[1])]
    cls = lambda t: " class='t'" if t else ""  # noqa: E731
    head = "".join(f"<th{cls(t)}>{html.escape(str(c))}</th>" for c, t in zip(df.columns, text))
    body = "".join("<tr>" + "".join(f"<td{cls(t)}>{_html_cell(v)}</td>" for v, t in zip(row, text)) + "</tr>"
                   for row in df.itertuples(index=False))
    idattr = f" id='{cls_name}'" if cls_name else ""
    return f"<div class='wide'><table{idattr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _html_cell(v) -> str:
    if isinstance(v, Link):
        return f"<a href='{html.escape(v.href)}'>{html.escape(v.text)}</a>"
    return html.escape(_cell(v))


def _cell(v) -> str:
    """A table cell: ∞ is "not reached"; NaN, None and "nan" (a cell not run) are "—"."""
    if isinstance(v, Link):
        return v.text
    if v is None or v is pd.NA or (isinstance(v, str) and v.strip().lower() == "nan"):
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if v == math.inf:
            return "not reached"
        return f"{v:,.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    text = [_is_text(df.iloc[:, i]) for i in range(df.shape[1])]
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |",
             "|" + "".join(":---|" if t else "---:|" for t in text)]
    md = lambda v: f"[{esc(v.text)}]({v.href})" if isinstance(v, Link) else esc(_cell(v))  # noqa: E731
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _folds(rep: Report) -> list[str]:
    """The titles of the collapsed sections, in order."""
    if rep.fold_from is None:
        return []
    return [b[1] for b in rep.blocks[rep.fold_from:] if not isinstance(b, Figure) and b[0] == "h2"]


def _html_block(b) -> str:
    if isinstance(b, Figure):
        if b.png is None:  # nothing to show: one line saying why, no empty frame
            return f"<p class='na'>{html.escape(b.title)}: {html.escape(b.reason)}</p>"
        data = base64.b64encode(b.png).decode("ascii")
        return (f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                f"<img alt='{html.escape(b.title)}' src='data:image/png;base64,{data}'></figure>")
    kind = b[0]
    if kind in ("h2", "h3"):
        return f"<{kind}>{html.escape(b[1])}</{kind}>"
    if kind == "p":
        return f"<p>{html.escape(b[1])}</p>"
    if kind == "pre":
        return f"<pre>{html.escape(b[1])}</pre>"
    if kind == "ul":
        items = [x for item in b[1] for x in bullets(item)]
        return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in items) + "</ul>" if items else ""
    if kind == "terms":
        return "<dl class='terms'>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(m)}</dd>"
                                              for t, m in b[1]) + "</dl>"
    if kind == "table":
        title = f"<p><strong>{html.escape(b[1])}</strong></p>" if b[1] else ""
        return title + _html_table(b[2], b[3] if len(b) > 3 else "")
    if kind == "html":
        return b[1]
    return ""


def contents(folds: list[str], elsewhere: list[tuple[str, str]]) -> str:
    """The contents line under the answer: the folded sections here, then those on another page."""
    here = " · ".join(f"<a href='#{anchor(t)}'>{html.escape(t)}</a>" for t in folds)
    there = " · ".join(f"<a href='{html.escape(h)}'>{html.escape(t)}</a>" for t, h in elsewhere)
    return "".join([f"<nav>Figures (click to open): {here}</nav>" if here else "",
                    f"<nav>On the details page: {there}</nav>" if there else ""])


def _title(rep: Report) -> str:
    name = html.escape(rep.name)
    return f"<a href='{html.escape(rep.title_url)}'>{name}</a>" if rep.title_url else name


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page (figures as base64 PNG data URIs).

    Blocks before ``rep.fold_from`` are the answer, shown as they are; from there each
    ``h2`` opens a collapsed ``<details>`` section, listed in a contents line under the answer.
    """
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
             f"content='width=device-width, initial-scale=1'><title>{html.escape(rep.name)} — convergence report"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>{_title(rep)}: how quickly does training converge?</h1>"]
    folds, open_fold = _folds(rep), False
    for i, b in enumerate(rep.blocks):
        if i == rep.fold_from:
            parts.append(contents(folds, rep.elsewhere))
        if rep.fold_from is not None and i >= rep.fold_from and not isinstance(b, Figure) and b[0] == "h2":
            parts.append(("</details>" if open_fold else "") +
                         f"<details id='{anchor(b[1])}'><summary>{html.escape(b[1])}</summary>")
            open_fold = True
            continue
        parts.append(_html_block(b))
    if open_fold:
        parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def to_markdown(rep: Report) -> str:
    """The report as Markdown; figures are the PNG files written beside it."""
    name = f"[{rep.name}]({rep.title_url})" if rep.title_url else rep.name
    parts = [f"# {name}: how quickly does training converge?"]
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
        elif b[0] == "ul" and b[1]:
            parts.append("\n".join(f"- {x}" for item in b[1] for x in bullets(item)))
        elif b[0] == "terms":
            parts.append("\n".join(f"- **{t}**: {m}" for t, m in b[1]))
        elif b[0] == "table":
            parts.append((f"**{b[1]}**\n\n" if b[1] else "") + _md_table(b[2]))
    return "\n\n".join(parts) + "\n"


def slug(name: str) -> str:
    """A folder name for an experiment name: one safe path component (``bpresearch.keys``)."""
    return safe_name(name)


def _entry(folder: Path) -> dict | None:
    """One report found in the output folder: what its ``summary.json`` says, or None."""
    import json

    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    variants = summary.get("variants") or []
    first = next((v for v in variants if v.get("base")), variants[0] if variants else {})
    answer = first.get("answer") or first.get("headlines") or [""]
    written = summary.get("written") or time.strftime("%Y-%m-%d %H:%M", time.localtime(
        (folder / "summary.json").stat().st_mtime))
    return {"name": summary.get("experiment", folder.name), "folder": folder.name, "written": written,
            "runs": sum(int(v.get("runs") or 0) for v in variants), "variants": len(variants),
            "labels": [v.get("label", "") for v in variants if not v.get("base")],
            "first": answer[0] if answer else ""}


def write_index(out: Path, uri: str) -> list[dict]:
    """``DIR/index.html``: every report present in ``out`` (each folder with a ``summary.json``).

    Whichever experiments the last command wrote, the index lists them all: name, date
    written, runs, variants and the report's first sentence. Returns the entries.
    """
    entries = [e for f in sorted(out.iterdir()) if f.is_dir() and (e := _entry(f)) is not None]
    head = "<tr><th class='t'>experiment</th><th class='t'>written</th><th>runs</th><th class='t'>variants</th>" \
           "<th class='t'>first finding</th></tr>"
    rows = "".join(
        f"<tr><td class='t'><a href='{html.escape(e['folder'])}/index.html'>{html.escape(e['name'])}</a></td>"
        f"<td class='t'>{html.escape(e['written'])}</td><td>{e['runs']:,}</td>"
        f"<td class='t'>{e['variants']}{(': base; ' + html.escape('; '.join(e['labels']))) if e['labels'] else ''}"
        f"</td><td class='t'>{html.escape(e['first'])}</td></tr>" for e in entries)
    (out / "index.html").write_text(
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>bpresearch reports</title>"
        f"<style>{CSS}</style></head><body><h1>Convergence reports</h1><p>{len(entries)} report(s) in this folder; "
        f"index written {time.strftime('%Y-%m-%d %H:%M:%S')} from the MLflow store {html.escape(uri)}.</p>"
        f"<div class='wide'><table id='reports'><thead>{head}</thead><tbody>{rows}</tbody></table></div>"
        f"</body></html>", encoding="utf-8")
    return entries
