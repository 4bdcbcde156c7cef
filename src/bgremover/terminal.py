"""Progress rows on a terminal, shared by ``bgremover remove`` and ``bgremover watch``."""

from __future__ import annotations

from rich.progress import TextColumn


def label_columns() -> tuple[TextColumn, TextColumn]:
    """A row's name and stage, printed as they are. Neither is Rich markup: a file "b].jpg"
    in a folder "x[" is the row "x[/b].jpg", which Rich read as a closing tag and stopped
    the command with MarkupError (and a server names the stages a watch shows)."""
    return (
        TextColumn("{task.description}", style="bold", markup=False),
        TextColumn("{task.fields[stage]:<13}", style="cyan", markup=False),
    )
