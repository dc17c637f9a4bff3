"""Event type → decoder function table."""

from __future__ import annotations

DECODERS: dict = {}
