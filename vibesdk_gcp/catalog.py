"""The template catalog (VibSDK's format): `template_catalog.json` beside the bundles in the templates bucket."""

from __future__ import annotations

import json
from typing import Any

from vibesdk_gcp.errors import NotFound
from vibesdk_gcp.names import TEMPLATE_CATALOG_OBJECT, TEMPLATES_BUCKET
from vibesdk_gcp.storage import Storage


def template_catalog(storage: Storage) -> list[dict[str, Any]]:
    """The catalog's entries, one a template; none before the templates are uploaded."""
    try:
        return list(json.loads(storage.read(TEMPLATES_BUCKET, TEMPLATE_CATALOG_OBJECT)))
    except NotFound:
        return []
