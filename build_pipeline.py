"""The job behind /invoke: source from OSS, install and build with Node.js, deploy to OSS."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from build_request import parse_job
from context import FcContext
from errors import NotAvailable
from settings import PipelineSettings

logger = logging.getLogger(__name__)


def prepare_instance(settings: PipelineSettings, *, log: logging.LoggerAdapter | logging.Logger = logger) -> None:
    """Once per instance: the workspace root exists and is writable."""
    os.makedirs(settings.workspace_root, exist_ok=True)
    log.info("workspace root %s ready", settings.workspace_root)


def handle_invoke(
    ctx: FcContext, event: Mapping[str, Any], *, settings: PipelineSettings, children: Any, log: Any
) -> dict[str, Any]:
    job = parse_job(event)
    raise NotAvailable(f"the build step is not available in this version (request for {job.source.url()} is valid)")
