"""`colorize readme-results`: the README's Results section rewritten from an evaluation report."""

from __future__ import annotations

import os
from pathlib import Path

from .files import atomic_write_text

RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme_results(readme_path: str | os.PathLike, results_md_path: str | os.PathLike,
                          source_note: str) -> Path:
    """Replace the README text between `<!-- results:start -->` and `<!-- results:end -->` with results.md.

    `source_note` says where the numbers come from (data, protocol, the command that made them); it
    is added under the table as "Source: ...". Refuses if the markers are missing or out of order.
    """
    readme = Path(readme_path)
    text = readme.read_text()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if text.count(RESULTS_START) != 1 or text.count(RESULTS_END) != 1 or start > end:
        raise ValueError(f"{readme} needs one {RESULTS_START} line and, after it, one {RESULTS_END} line "
                         "around its results section: add them where the table belongs and run again")
    table = Path(results_md_path).read_text().strip()
    block = f"{RESULTS_START}\n{table}\n\nSource: {source_note.strip()}\n{RESULTS_END}"
    atomic_write_text(readme, text[:start] + block + text[end + len(RESULTS_END):])
    return readme
