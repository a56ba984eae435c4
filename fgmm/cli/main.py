"""The ``fgmm`` command line."""

import typer

app = typer.Typer(help="fgmm: multi-modal fine-grained recognition.", no_args_is_help=True)
