"""Which block of a report goes on which page: the answer and the figures on ``index.html``, the words
on ``details.html``.

A report (``render.Report``) is the answer (blocks before ``fold_from``) and then sections, each
opened by an ``h2``. The main page keeps the answer as it is and, per section, only its figures,
folded in a ``<details>`` block that ends in a link to the section's findings; a section without
a figure is only a link in the contents line. The details page holds every section whole, open,
in order: findings, tables, predictions against measurements, outcomes of every run, the
resolved configuration (folded: it is long and read rarely), with the figures as the PNG files written beside it (the main page
embeds its own, so it still opens alone).
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

from .render import CSS, Figure, Report, _html_block, anchor, to_html, to_markdown

DETAILS = "details.html"   # beside index.html
GROUPS_COMPARED = "groups-"  # the id of each target's table of facet groups side by side: under the answer too


def sections(rep: Report) -> list[tuple[str, list]]:
    """The report's sections after the answer: (title, blocks under its ``h2``)."""
    out: list[tuple[str, list]] = []
    for b in rep.blocks[rep.fold_from or 0:] if rep.fold_from is not None else []:
        if not isinstance(b, Figure) and b[0] == "h2":
            out.append((b[1], []))
        elif out:
            out[-1][1].append(b)
    return out


def _figures_only(blocks: list) -> list:
    """A section's drawn figures, each under the ``h3`` (its group) it stood under."""
    out, heading = [], None
    for b in blocks:
        if isinstance(b, Figure):
            if b.png is None:
                continue
            if heading is not None:
                out.append(heading)
                heading = None
            out.append(b)
        elif b[0] == "h3":
            heading = b
    return out


def main_page(rep: Report) -> Report:
    """The page a researcher opens: the answer (with the facet groups compared, when there are several), then
    each section's figures folded, the words one link away."""
    if rep.fold_from is None:
        return rep
    blocks = list(rep.blocks[:rep.fold_from])
    link = f"<a href='{DETAILS}'>the details page</a>"
    blocks.insert(1 if blocks else 0, ("html", f"<p class='lead'>Findings, tables, predictions against "
                                               f"measurements and the configuration: {link}.</p>"))
    compared = [b for _, body in sections(rep) for b in body
                if not isinstance(b, Figure) and b[0] == "table"
                and len(b) > 3 and str(b[3]).startswith(GROUPS_COMPARED)]
    if compared:   # several facet groups: their comparison, one table per target, belongs to the answer
        at = next((i + 1 for i, b in enumerate(blocks) if not isinstance(b, Figure) and b[0] == "terms"), len(blocks))
        blocks[at:at] = [("h2", "Groups compared"), *compared]
    fold_from, elsewhere = len(blocks), []
    for title, body in sections(rep):
        figures = _figures_only(body)
        if not figures:
            elsewhere.append((title, f"{DETAILS}#{anchor(title)}"))
            continue
        blocks += [("h2", title), *figures,
                   ("html", f"<p class='na'>Findings and tables: <a href='{DETAILS}#{anchor(title)}'>"
                            f"{html.escape(title)} on the details page</a>.</p>")]
    return replace(rep, blocks=blocks, fold_from=fold_from, elsewhere=elsewhere)


# "model.activation=tanh, optimizer=adam: …": a finding about one facet group (``groups.Group.prefix``)
GROUP_PREFIX = re.compile(r"^((?:[\w.]+=(?:\[[^\]]*\]|[^,:\[]+))(?:, [\w.]+=(?:\[[^\]]*\]|[^,:\[]+))*): (.+)$", re.S)


def by_group(items: list[str]) -> list[tuple[str, list[str]]]:
    """Findings as (group, its findings without the group's name); a finding without a name stays with the one
    before it (its continuation). One ("", items) when no finding names a group."""
    out: list[tuple[str, list[str]]] = []
    for item in items:
        m = GROUP_PREFIX.match(item)
        label, text = (m.group(1), m.group(2)) if m else (out[-1][0] if out else "", item)
        if out and out[-1][0] == label:
            out[-1][1].append(text[:1].upper() + text[1:] if m else text)
        else:
            out.append((label, [text[:1].upper() + text[1:] if m else text]))
    return out


def _findings_html(items: list[str]) -> str:
    """A list of findings; those about facet groups under one heading per group instead of a prefix on each."""
    groups = by_group(items)
    if len(groups) <= 1 and not (groups and groups[0][0]):
        return _html_block(("ul", items))
    return "".join((f"<h3>{html.escape(label)}</h3>" if label else "") + _html_block(("ul", found))
                   for label, found in groups)


def details_html(rep: Report) -> str:
    """The details page: every section open, in order, under a contents line; figures from the PNG files."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
             f"content='width=device-width, initial-scale=1'><title>{html.escape(rep.name)} — details</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(rep.name)}: findings, tables and configuration</h1>",
             "<p class='lead'>The answer (best learning rate per target and batch size) and the figures: "
             "<a href='index.html'>the report's main page</a>.</p>"]
    secs = sections(rep)
    # the figure the answer shows (moved up by ``build``) is drawn again where its section left a pointer
    moved = {f"({f.title}:": f for f in rep.blocks[:rep.fold_from or 0] if isinstance(f, Figure) and f.png}
    parts.append("<nav>Sections: " + " · ".join(f"<a href='#{anchor(t)}'>{html.escape(t)}</a>" for t, _ in secs)
                 + "</nav>")
    for title, body in secs:
        parts.append(f"<h2 id='{anchor(title)}'>{html.escape(title)}</h2>")
        for b in body:
            if not isinstance(b, Figure) and b[0] == "p":
                b = next((f for k, f in moved.items() if b[1].startswith(k)), b)
            if isinstance(b, Figure) and b.png is not None:
                parts.append(f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                             f"<img alt='{html.escape(b.title)}' src='{html.escape(b.name)}.png'></figure>")
            elif not isinstance(b, Figure) and b[0] == "ul":
                parts.append(_findings_html(b[1]))
            elif not isinstance(b, Figure) and b[0] == "pre":   # the resolved configuration: long, read rarely
                parts.append(f"<details><summary>Show the file</summary>{_html_block(b)}</details>")
            else:
                parts.append(_html_block(b))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write(rep: Report, folder: Path) -> list[Path]:
    """Write index.html, details.html, report.md and the PNGs of one report; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # figures of an earlier build that no longer apply
        old.unlink()
    files = []
    for f in rep.figures:
        if f.png is not None:
            (folder / f"{f.name}.png").write_bytes(f.png)
            files.append(folder / f"{f.name}.png")
    pages = {"index.html": to_html(main_page(rep)), "report.md": to_markdown(rep)}
    if sections(rep):
        pages[DETAILS] = details_html(rep)
    elif (folder / DETAILS).exists():
        (folder / DETAILS).unlink()   # an earlier build's
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    return files + [folder / name for name in pages]
