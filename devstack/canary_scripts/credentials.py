"""Run inside a sandbox by the canary (devstack/canary.py): is there any Google credential to take?

Exit 0, printing `ESCAPED: …` with the names (never the values), when a variable or a file that
Google's client libraries or the Cloud SDK would read is there; otherwise exit 1.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# What google.auth.default() and gcloud read, besides the metadata server (fetch.py tries that).
SECRET_NAMES = re.compile(r"CREDENTIAL|TOKEN|SECRET|PASSWORD|KEY|^GOOGLE_|^CLOUDSDK_|^GCE_", re.IGNORECASE)
FILES = (
    "~/.config/gcloud/application_default_credentials.json",
    "~/.config/gcloud/credentials.db",
    "/root/.config/gcloud/application_default_credentials.json",
    "/root/.config/gcloud/credentials.db",
    "/etc/google/auth/application_default_credentials.json",
    "/var/run/secrets",
    "/run/secrets",
)


def main() -> int:
    found = [f"variable {name}" for name in sorted(os.environ) if SECRET_NAMES.search(name)]
    for name in FILES:
        path = Path(name).expanduser()
        try:
            if path.is_dir() and any(path.iterdir()) or path.is_file() and path.read_bytes():
                found.append(f"file {path}")
        except OSError:
            pass  # unreadable is what the probe hopes for
    if found:
        print(f"ESCAPED: credentials to take: {', '.join(found)}")
        return 0
    print("no credential: no Google variable, no credentials file")
    return 1


if __name__ == "__main__":
    sys.exit(main())
