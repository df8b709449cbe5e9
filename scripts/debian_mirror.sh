# shellcheck shell=bash
# Sourced by the script that builds stand-ins from Debian packages (ensure_image.sh).
# `debian_mirror` prints the Debian mirror of this host's apt
# sources, read at run time so that no mirror is written into the repository (deb822 files,
# then the one-line format): an entry for bookworm if there is one, else any non-security
# entry (a mirror carries every release). Callers let DEBIAN_MIRROR=<url> override it (e.g. on
# a non-Debian host); APT_SOURCES_DIR (default /etc/apt) is where the sources are read from.
# Prints nothing when none is found.
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
              # would end the script silently at the caller's assignment)
}
