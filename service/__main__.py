"""``python -m service``: validate the settings, load the models, serve until SIGTERM/SIGINT.

Configuration errors and unusable models stop startup with one line on stderr naming the
bad value or file, and a non-zero exit (2: bad setting, 1: model problem). Settings are
checked before the heavy imports, so a typo fails in a fraction of a second. SIGTERM or
SIGINT (Ctrl-C) stops accepting connections, lets in-flight requests finish, then exits 0.
"""

from __future__ import annotations

import sys

from service.logging_setup import settings_with_logging


def main() -> int:
    settings = settings_with_logging()
    if settings is None:
        return 2
    from service.server import serve  # onnxruntime, FastAPI: only once settings are valid

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
