"""`python -m control_plane`: serve the API with uvicorn on $PORT, as Cloud Run does."""

from __future__ import annotations

import os

import uvicorn

from vibesdk_gcp import logs


def main() -> None:
    logs.setup(os.environ.get("K_SERVICE") or os.environ.get("VIBESDK_UNIT") or "control-plane")
    uvicorn.run(
        "control_plane.app:create_app",
        factory=True,
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8080")),
        log_config=None,  # keep the JSON lines set up above
        access_log=False,
    )


if __name__ == "__main__":
    main()
