"""``python -m service``: validate the settings, load the models, serve until SIGTERM/SIGINT.

Configuration errors and unusable models stop startup with one line on stderr naming the
bad value or file, and a non-zero exit (2: bad setting, 1: model problem). Settings are
checked before the heavy imports, so a typo fails in a fraction of a second. SIGTERM or
SIGINT (Ctrl-C) stops accepting connections, lets in-flight requests finish, then exits 0.
"""

from __future__ import annotations

import logging
import sys

from service.logging_setup import settings_with_logging
from service.setting_values import AUTO_WORKERS


def main() -> int:
    """Run until SIGTERM/SIGINT; the process exit code."""
    settings = settings_with_logging()
    if settings is None:
        return 2
    if settings.workers == AUTO_WORKERS:
        from service.auto_workers import resolve_workers
        from service.repository import ModelSourceError

        try:
            settings = resolve_workers(settings)
        except ModelSourceError as exc:
            logging.getLogger("service").error("%s", exc)
            return 1
    # The heavy imports (onnxruntime, FastAPI) only once settings are valid, and with
    # WORKERS > 1 only in the workers: the supervisor loads no model.
    if settings.workers > 1:
        from service.workers import supervise

        return supervise(settings)
    from service.server import serve_process

    return serve_process(settings)


if __name__ == "__main__":
    sys.exit(main())
