"""gradguard.report: the JSON written by `gradguard bench`, `audit`, `audit-peft`, `gate` and the GPU check, turned
into one Markdown file and one self-contained HTML page (inline CSS and SVG plots, nothing fetched).

    from gradguard.report import build_report
    md_path, html_path = build_report(["bench-cpu.json", "report.json"], "reports/latest/summary")

Installed from reports/generator/ in the source tree (CMake: install(DIRECTORY ... gradguard/report)); the plots need
matplotlib, the Markdown does not."""
from .build import build_report
from .load import ReportInputError

__all__ = ["build_report", "ReportInputError"]
