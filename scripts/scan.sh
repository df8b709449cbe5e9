#!/usr/bin/env bash
# One command per security scan, with the pinned scanners of .venv (./scripts/dev_env.sh) and
# the same command lines and gate as `dagger call scan|sbom|lint` and tests/security.
#
#   scripts/scan.sh fs                  # Trivy misconfig+secret+license on the repo, gated
#   scripts/scan.sh image TAG           # the same on a local image (docker save), gated
#   scripts/scan.sh sbom TAG [OUT]      # CycloneDX SBOM of a local image (default TAG.cdx.json)
#   scripts/scan.sh dockerfiles         # hadolint on every Dockerfile (variants.ALL_DOCKERFILES)
#   scripts/scan.sh workflows           # zizmor --offline on .github (workflows, dependabot)
#
# Gate options (env; the defaults are the pipeline's, gate.DEFAULT_SEVERITIES and trivy.OFFLINE_SCANNERS):
# SEVERITY (e.g. MEDIUM,HIGH,CRITICAL), IGNORE_UNFIXED=1, SCANNERS (add vuln where a Trivy DB
# is in TRIVY_CACHE_DIR). Reports land in $SCAN_OUT (default $TMPDIR/onnx-serving-scan).
# Exit: 0 pass, 1 findings, 2 bad usage or input.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
py="$venv/bin/python"
out=${SCAN_OUT:-${TMPDIR:-/tmp}/onnx-serving-scan}
cache=${TRIVY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/onnx-serving-trivy}
export PYTHONPATH="ci/src${PYTHONPATH:+:$PYTHONPATH}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ -x $py ]] || { echo "scan: $py not found: run ./scripts/dev_env.sh first" >&2; exit 2; }
mkdir -p "$out" "$cache"

# Print a command line built by ci/src/onnx_serving (trivy.py / commands.py), one argument per
# line. $1 is a fixed Python expression of this script; values reach it only through env (E).
cmdline() {
    "$py" -c "import os
from onnx_serving import commands, docker_cli, trivy, variants
E = os.environ
print('\n'.join($1))"
}

# Set the caller's array `args` to cmdline's command line for EXPR; exit 2 when the helper
# fails or prints nothing (an empty `args` would run nothing and report success).
command_args() {  # EXPR
    local text
    text=$(cmdline "$1") || { echo "scan: could not build the command line: $1" >&2; exit 2; }
    [[ -n $text ]] || { echo "scan: could not build the command line (empty): $1" >&2; exit 2; }
    mapfile -t args <<<"$text"
}

# Run a Trivy JSON scan of TARGET into REPORT, then the gate on the report.
trivy_gated() {  # FUNC TARGET REPORT
    local args=() gate=(--ignorefile .trivyignore.yaml)
    rm -f "$3"  # the gate must never judge a report of an earlier run
    TARGET=$2 REPORT=$3 TRIVY="$venv/bin/trivy" CACHE=$cache SCANNERS=${SCANNERS:-} command_args \
        "trivy.$1(E['TARGET'], E['REPORT'], scanners=E['SCANNERS'].split(',') if E['SCANNERS'] else trivy.OFFLINE_SCANNERS, trivy=E['TRIVY'], cache_dir=E['CACHE'])"
    "${args[@]}"
    [[ -n ${SEVERITY:-} ]] && gate+=(--severity "$SEVERITY")
    [[ ${IGNORE_UNFIXED:-0} == 1 ]] && gate+=(--ignore-unfixed)
    "$py" -m onnx_serving.gate "$3" "${gate[@]}"
}

save_image() {  # TAG TARBALL: `docker save` TAG to TARBALL
    local args=()
    command_args "[docker_cli.docker_binary() or 'docker']"
    local docker_bin=${args[0]} tarball=$2
    "$docker_bin" image inspect "$1" >/dev/null 2>&1 \
        || { echo "scan: no local image '$1' (build it first)" >&2; exit 2; }
    "$docker_bin" save -o "$tarball" "$1"
}

case ${1:-} in
    fs)
        # What git would commit (tracked + untracked, not ignored): the repo as a fresh clone
        # sees it, without local caches, virtualenvs and downloads.
        tree="$out/repo"
        rm -rf "$tree" && mkdir -p "$tree"
        { if [[ -e .git ]]; then git ls-files -z --cached --others --exclude-standard
          else find . -type f -not -path './.venv/*' -printf '%P\0'; fi; } \
            | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -C "$tree" -xf -
        trivy_gated fs_scan_command "$tree" "$out/repo.trivy.json" ;;
    image)
        [[ -n ${2:-} ]] || usage
        tarball="$out/$(tr '/:@' '___' <<<"$2").tar"
        report="${tarball%.tar}.trivy.json"
        rm -f "$report"  # the gate must never judge a report of an earlier run
        trap 'rm -f "$tarball"' EXIT
        save_image "$2" "$tarball"
        trivy_gated image_scan_command "$tarball" "$report" ;;
    sbom)
        [[ -n ${2:-} ]] || usage
        tarball="$out/$(tr '/:@' '___' <<<"$2").tar"
        sbom=${3:-${tarball%.tar}.cdx.json}
        rm -f "$sbom"
        trap 'rm -f "$tarball"' EXIT
        save_image "$2" "$tarball"
        TARBALL=$tarball SBOM=$sbom TRIVY="$venv/bin/trivy" CACHE=$cache \
            command_args "trivy.sbom_command(E['TARBALL'], E['SBOM'], trivy=E['TRIVY'], cache_dir=E['CACHE'])"
        "${args[@]}"
        [[ -s $sbom ]] || { echo "scan: trivy wrote no SBOM to $sbom" >&2; exit 2; }
        echo "scan: CycloneDX SBOM of $2 written to $sbom" ;;
    dockerfiles)
        HADOLINT="$venv/bin/hadolint" command_args \
            "commands.hadolint_command(list(variants.ALL_DOCKERFILES), hadolint=E['HADOLINT'])"
        "${args[@]}" && echo "scan: hadolint clean on the Dockerfiles" ;;
    workflows)
        ZIZMOR="$venv/bin/zizmor" command_args "commands.zizmor_command(zizmor=E['ZIZMOR'])"
        "${args[@]}" ;;
    *)
        usage ;;
esac
