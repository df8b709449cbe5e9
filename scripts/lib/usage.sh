# shellcheck shell=bash
# Sourced by the scripts in scripts/ before any set-up (apt, dockerd, .venv): `help_first "$@"`
# prints the calling script's usage under its own name (its header comment) and exits 0 when
# an argument before any `--` is -h or --help. Scripts that hand their arguments on to another
# tool (pytest, the pipeline's functions) pass only their first one. With HELP_MODULE set
# (`HELP_MODULE="onnx_serving.local build" help_first "$@"`), the arguments and options of that
# module's argparse parser follow; it imports only the standard library, so this needs no
# set-up either (and is left out if it cannot run).
help_first() {
    local arg
    for arg in "$@"; do
        case $arg in
            --) return 0 ;;
            -h | --help) script_usage; exit 0 ;;
        esac
    done
    return 0
}

script_usage() {
    local repo module
    repo=$(cd "$(dirname "$0")/.." && pwd)
    echo "usage: scripts/$(basename "$0")"
    echo
    # The header: the comment lines after the shebang, up to the first line of code.
    sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p;}}' "$0"
    if [[ -n ${HELP_MODULE:-} ]]; then
        read -ra module <<<"$HELP_MODULE"
        PYTHONPATH="$repo/ci/src:$repo" python3 -m "${module[@]}" --help 2>/dev/null |
            sed -n '/^\(positional arguments\|options\):/,$p' | sed '1s/^/\n/' || true
    fi
}
