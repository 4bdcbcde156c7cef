"""Printing for the benchmarks: sections, aligned label/value rows and notes."""

from __future__ import annotations

LABEL_WIDTH = 60


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def row(label: str, value: str) -> None:
    print(f"  {label:<{LABEL_WIDTH}} {value}", flush=True)


def note(text: str) -> None:
    print(f"  · {text}", flush=True)
