"""``python -m service``: validate the settings, load the models, serve until SIGTERM/SIGINT.

Configuration errors and unusable models stop startup with one line on stderr naming the
bad value or file, and a non-zero exit (2: bad setting, 1: model problem). Settings are
checked before the heavy imports, so a typo fails in a fraction of a second. SIGTERM or
SIGINT (Ctrl-C) stops accepting connections, lets in-flight requests finish, then exits 0.
Every setting is an environment variable: ``--help`` lists them and exits 0 before anything
is loaded or bound; any other argument is an error (exit 2).
"""

from __future__ import annotations

import logging
import sys

from service.logging_setup import settings_with_logging
from service.setting_values import AUTO_WORKERS

PROGRAM = "python -m service"


def check_arguments(argv: list[str]) -> int | None:
    """None to go on serving; else the exit code after ``--help`` or a bad argument."""
    if not argv:
        return None
    if argv[0] in ("-h", "--help"):
        from service.settings import settings_help

        sys.stdout.write(settings_help(PROGRAM))
        return 0
    # Settings are environment variables only: a stray argument is a mistake, not a wish.
    print(
        f"error: unknown argument {argv[0]!r} ({PROGRAM} takes only --help; "
        "settings are environment variables)",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; the process exit code. `argv`: the command's arguments."""
    code = check_arguments(argv or [])
    if code is not None:
        return code
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
    sys.exit(main(sys.argv[1:]))
