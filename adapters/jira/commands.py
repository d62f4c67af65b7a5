"""Commands this part of the service adds to `tierup` (registered by integration.cli)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add this module's subcommands to the `tierup` parser."""
