"""Settings for tests: a copy of `Settings` with some keys of one section replaced."""

from __future__ import annotations

import dataclasses
from typing import Any

from crawler.settings import Settings


def with_overrides(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy of `settings` with some keys of one section replaced."""
    current = getattr(settings, section)
    return dataclasses.replace(settings, **{section: dataclasses.replace(current, **values)})
