# shellcheck shell=bash
# Shared by scripts/demo and scripts/test (sourced, not run).
#
# bootstrap_venv: make sure .venv in the checkout exists and has
# `pip install -e '.[test]'` done.  Idempotent and fast on re-runs: a stamp file
# in .venv records what was installed (hash of pyproject.toml, the Python, the
# checkout path); while it matches and the imports work, pip is not run again.
# ensure_system_packages: nginx and caddy for the interop tests, from apt,
# best-effort (root only; a clear note instead of a failure when apt can't).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
EXTRAS="test"
STAMP="$VENV/.httpstream-installed"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive

say() { printf '==> %s\n' "$*"; }
note() { printf 'NOTE: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Serialise bootstraps (scripts/demo and scripts/test run at once must not both
# build .venv).  The lock lives outside the checkout so it leaves no file behind.
_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    local key
    key="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    exec 9>"${TMPDIR:-/tmp}/httpstream-bootstrap-$key.lock"
    flock 9
}

_unlock() {
    command -v flock >/dev/null 2>&1 || return 0
    flock -u 9
    exec 9>&-
}

_stamp_key() {
    local hash
    hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    printf 'pyproject=%s extras=%s python=%s root=%s\n' "$hash" "$EXTRAS" "$("$PY" -VV 2>&1 | head -n1)" "$ROOT"
}

_venv_works() {
    [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        && "$PY" -m pip --version >/dev/null 2>&1
}

_make_venv() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "$PYTHON is missing or older than 3.11 (set PYTHON=/path/to/python3.11+)"
    say "creating the virtualenv $VENV"
    if "$PYTHON" -m venv --clear "$VENV" 2>/dev/null && _venv_works; then
        return 0
    fi
    # Debian without python3-venv has no ensurepip: make the venv without pip and
    # let the system pip install pip into it.
    note "'$PYTHON -m venv' could not install pip into the venv; trying the system pip"
    if "$PYTHON" -m venv --clear --without-pip "$VENV" \
        && "$PYTHON" -m pip --python "$PY" install -q pip 2>/dev/null && _venv_works; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        local minor
        minor="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        note "installing python3-venv with apt"
        { apt-get update -qq && apt-get install -y -qq python3-venv "python$minor-venv"; } </dev/null || true
        if "$PYTHON" -m venv --clear "$VENV" && _venv_works; then
            return 0
        fi
    fi
    die "cannot create a virtualenv with pip: install python3-venv (Debian/Ubuntu) or virtualenv"
}

bootstrap_venv() {
    _lock
    if ! _venv_works; then
        _make_venv
    fi
    local key
    key="$(_stamp_key)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
        && "$PY" -c 'import httpstream, hypercorn, trustme, pytest' >/dev/null 2>&1; then
        _unlock
        return 0
    fi
    say "installing httpstream and its [$EXTRAS] extra into .venv (pip install -e '.[$EXTRAS]')"
    rm -f "$STAMP"
    (cd "$ROOT" && "$PY" -m pip install -q -e ".[$EXTRAS]" </dev/null) || die "pip install -e '.[$EXTRAS]' failed"
    printf '%s\n' "$key" >"$STAMP"
    _unlock
}

_have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

ensure_system_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        _have "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ -n "${HTTPSTREAM_SKIP_APT:-}" ]; then
        note "missing ${missing[*]}; HTTPSTREAM_SKIP_APT is set, not installing (tests that need them skip)"
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        note "missing ${missing[*]}: install them (e.g. 'sudo apt-get install -y ${missing[*]}');" \
            "until then the tests that need them skip"
        return 0
    fi
    say "installing ${missing[*]} with apt-get (for the interop tests)"
    local apt_opts=(-o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)
    if apt-get "${apt_opts[@]}" update -qq </dev/null \
        && apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" </dev/null >/dev/null; then
        say "installed ${missing[*]}"
    else
        note "apt-get could not install ${missing[*]} (no network or no such package?);" \
            "carrying on: the tests that need them skip"
    fi
}
