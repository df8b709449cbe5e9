"""``python -m service``: validate the settings, load the models, serve until SIGTERM/SIGINT.

Configuration errors and unusable models stop startup with one line on stderr naming the
bad value or file, and a non-zero exit (2: bad setting, 1: model problem). Settings are
checked before the heavy imports, so a typo fails in a fraction of a second. SIGTERM or
SIGINT (Ctrl-C) stops accepting connections, lets in-flight requests finish, then exits 0.
"""

from __future__ import annotations

import os
import sys

from service.logging_setup import configure_logging
from service.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from service.server import serve  # onnxruntime, FastAPI: only once settings are valid

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
