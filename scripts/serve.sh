#!/usr/bin/env bash
# The earlier name of ./scripts/run-local.sh (the main job), kept for existing users.
exec "$(dirname "$0")/run-local.sh" "$@"
