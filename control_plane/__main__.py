"""`python -m control_plane`: serve the API with uvicorn on $PORT, as Cloud Run does."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "control_plane.app:create_app",
        factory=True,
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8080")),
        log_level=os.environ.get("LOG_LEVEL", "warning"),
    )


if __name__ == "__main__":
    main()
