"""Settings for a command from its arguments: config file, ``--redis-url``, ``--database-url``."""

from __future__ import annotations

import argparse
from typing import Any

from server.logs import configure_logging
from server.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace, **server_overrides: Any) -> Settings:
    """The settings a command runs with (its flags over env over config.yaml); logging configured."""
    overrides: dict[str, dict[str, Any]] = {}
    if server_overrides:
        overrides["server"] = {k: v for k, v in server_overrides.items() if v is not None}
    if getattr(args, "redis_url", None):
        overrides["redis"] = {"url": args.redis_url}
    if getattr(args, "database_url", None):
        overrides["database"] = {"url": args.database_url}
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings
