# Sourced by the scripts in this folder. `install_missing CMD PACKAGE [CMD PACKAGE ...]`
# installs, from Debian's packages, the package of every command that is not on PATH (nor in
# the sbin folders, where nginx lives and which are not on every user's PATH).
# Elsewhere it says what to install and stops.
installed() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

install_missing() {
    local packages=()
    while [ $# -gt 0 ]; do
        installed "$1" || packages+=("$2")
        shift 2
    done
    [ ${#packages[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "Missing: ${packages[*]}. Install them with your system's package manager." >&2
        exit 1
    fi
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "Installing ${packages[*]} from the system's packages..." >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
}
