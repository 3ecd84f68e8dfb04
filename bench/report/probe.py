"""`bench probe`'s console output: the server's dialect and what bench will measure on it."""

from __future__ import annotations

import os

from bench.target.probe import ProbeReport

__all__ = ["print_probe_report"]


def print_probe_report(report: ProbeReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, 140)  # a file or pipe has no width to fit, unless told
    console.print(Text(f"{report.target}: {report.base_url}, model {report.model}"))
    for title, rows in (("server dialect", report.dialect), ("what bench will measure", report.measures)):
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for finding in rows:  # Text: "[DONE]" is not rich markup
            table.add_row(Text(finding.label), Text(finding.summary))
        console.print(table)
