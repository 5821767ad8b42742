"""jindr_nb: a notebook-first manager for a private Docker/OCI registry on your own machine.

`%load_ext jindr_nb` registers the `%jindr` line magic; `jindr` is the same as a console script.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.10.1"
__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register `%jindr` (IPython calls this on `%load_ext jindr_nb`)."""
    from .magics import JindrMagics

    ipython.register_magics(JindrMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove `%jindr` and what it added to the shell (IPython calls this on `%unload_ext jindr_nb`,
    and on `%reload_ext jindr_nb` before loading it again)."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
