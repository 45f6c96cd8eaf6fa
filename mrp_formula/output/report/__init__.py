"""The HTML report of a run folder: :class:`RunView` (the folder read back), ``render`` (one
self-contained page) and ``write_report`` (``report.html`` in the folder)."""

from mrp_formula.output.report.document import REPORT, render, report_note, summary, write_report
from mrp_formula.output.report.view import RunView

__all__ = ["REPORT", "RunView", "render", "report_note", "summary", "write_report"]
