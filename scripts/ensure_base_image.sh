#!/usr/bin/env bash
# Make sure the base image the Dockerfiles start FROM is in the local Docker engine.
#   scripts/ensure_base_image.sh IMAGE        (the Dockerfiles' ARG BASE_IMAGE default)
# Order: already local -> docker pull -> build a stand-in from Debian packages.
# The stand-in (debootstrap minbase + python3 + python3-venv + ca-certificates, imported
# under the same name) exists for machines with no container registry; its Python is
# /usr/bin/python3 (Debian 3.11.x), and the Dockerfiles work on both it and the real image.
# The Debian mirror is read from this host's apt configuration at run time.
set -euo pipefail

image=${1:?usage: ensure_base_image.sh IMAGE}
docker_bin=$(PYTHONPATH="$(dirname "$0")/../ci/src" python3 -m onnx_serving.docker_cli) ||
    { echo "ensure_base_image: no docker client found (install docker.io, or set DOCKER=...)" >&2; exit 1; }

if "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi

echo "ensure_base_image: $image is not local; trying docker pull" >&2
if timeout 60 "$docker_bin" pull -q "$image" >/dev/null 2>&1; then
    exit 0
fi

# The stand-in is Debian bookworm's Python, so only bookworm python tags make sense.
if [[ $image != python:3.11-slim-bookworm* && $image != python:3.11*bookworm* ]]; then
    echo "ensure_base_image: cannot pull '$image' and can only build a stand-in for" \
         "python:3.11-slim-bookworm (Debian bookworm ships Python 3.11)" >&2
    exit 1
fi
for tool in debootstrap tar; do
    command -v "$tool" >/dev/null || { echo "ensure_base_image: '$tool' is needed to build a stand-in for $image (apt-get install $tool)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "ensure_base_image: building the stand-in needs root (debootstrap)" >&2; exit 1; }

# The Debian mirror of the host's apt sources (deb822 files, then the one-line format): an
# entry for bookworm if there is one, else any non-security entry (a mirror carries every
# release). Override with DEBIAN_MIRROR=<url> (e.g. on a non-Debian host); APT_SOURCES_DIR
# (default /etc/apt) is where the sources are read from. Prints nothing when none is found.
apt_dir=${APT_SOURCES_DIR:-/etc/apt}
debian_mirror() {
    local want f uri
    for want in '(^| )bookworm( |$)' '.'; do
        for f in "$apt_dir"/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            uri=$(awk -v want="$want" '
                function emit() { if (u != "" && s ~ want && s !~ /security/) { print u; exit } }
                /^[[:space:]]*$/ { emit(); u = ""; s = ""; next }
                /^URIs:/ { u = $2 }
                /^Suites:/ { $1 = ""; s = $0 " " }
                END { emit() }' "$f" | head -1)
            [[ -n $uri ]] && { echo "$uri"; return; }
        done
    done
    for f in "$apt_dir"/sources.list "$apt_dir"/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {
                in_options = 0   # skip a [key=value ...] block, which may hold spaces
                for (i = 2; i <= NF; i++) {
                    if (!in_options && $i ~ /^\[/) in_options = 1
                    if (in_options) { if ($i ~ /\]$/) in_options = 0; continue }
                    print $i; exit
                } }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    return 0  # not found is no error here: the caller says so (a non-zero status under set -e
              # would end the script silently at the assignment below)
}
mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
[[ -n $mirror ]] || { echo "ensure_base_image: no Debian mirror found in $apt_dir/sources.list*; set DEBIAN_MIRROR=<url>" >&2; exit 1; }

root=$(mktemp -d /tmp/ensure-base-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "ensure_base_image: building a stand-in for $image with debootstrap (about 90 s)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 || {
    tail -20 "$root/debootstrap.log" >&2; exit 1; }

# Slim it like the official slim images: no docs, man pages, locales, apt lists or caches.
r=$root/rootfs
rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
       "$r"/usr/share/locale/* "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* \
       "$r"/var/cache/debconf/*-old "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
find "$r/usr/lib/python3.11" -name '__pycache__' -type d -prune -exec rm -rf {} +
# The official image has `python`; give the stand-in the same name.
ln -sf python3 "$r/usr/bin/python"

tar --numeric-owner -C "$r" -c . | "$docker_bin" import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["python3"]' \
    -m "stand-in for $image: debootstrap bookworm minbase + python3" \
    - "$image" >/dev/null
echo "ensure_base_image: built stand-in $image" >&2
