"""The ``imapscope`` command line: thin commands over the library's pieces."""

from __future__ import annotations

import typer
from rich.console import Console

from imapscope import __version__

app = typer.Typer(
    name="imapscope",
    help=(
        "Diagnose, monitor and sandbox IMAP mailboxes: which layer broke "
        "(DNS, port, TLS, certificate, password, mailbox, push) and what to do about it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _print_version(value: bool) -> None:
    if value:
        console.print(f"imapscope {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Diagnose, monitor and sandbox IMAP mailboxes."""


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"imapscope {__version__}")


def main() -> None:
    """Console-script entry point."""
    app()
