"""``python -m service.healthcheck``: exit 0 iff the local server answers ready (stdlib only).

Used by the images' HEALTHCHECK, which have no curl. Reads the port the way the server does.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from service.settings import SettingsError, load_settings

TIMEOUT_SECONDS = 3.0


def is_ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    try:
        port = load_settings(os.environ).port
    except SettingsError:  # the server refuses to start with it, so it cannot be ready
        return 1
    return 0 if is_ready(port) else 1


if __name__ == "__main__":
    sys.exit(main())
