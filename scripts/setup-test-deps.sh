#!/usr/bin/env bash
# Installs what the tests need beyond Rust: headless Chromium and chromedriver (Debian's
# chromium and chromium-driver) for the web UI's browser test (tests/ui_browser.rs), and a
# Python venv at .venv-interop with py-libp2p, which the Waku interop test
# (crates/transport/tests/interop_py.rs) runs as an independent relay peer. Idempotent and
# quiet when already done; scripts/test.sh calls it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup-test-deps: installing Debian packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
  else
    echo "setup-test-deps: warning: no apt-get; cannot install: $*" >&2
    return 1
  fi
}

# The browser test: only when missing.
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  apt_install chromium chromium-driver ||
    echo "setup-test-deps: warning: Chromium not installed; tests/ui_browser.rs fails under CI=true" >&2
fi
venv="$root/.venv-interop"
# Pinned: the harness monkeypatches this version's internals (tests/interop/py_waku_peer.py).
pkg="libp2p==0.8.1"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m, libp2p  # noqa: F401
raise SystemExit(m.version("libp2p") != "0.8.1")
EOF
then
  exit 0
fi

# fastecdsa (a libp2p dependency) has no wheel for every Python: pip builds it from
# source, which needs a C compiler and GMP's headers.
missing=()
for p in libgmp-dev gcc; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}" ||
    echo "setup-test-deps: warning: pip may fail to build fastecdsa without: ${missing[*]}" >&2
fi

echo "setup-test-deps: creating $venv with $pkg"
rm -rf "$venv"
python3 -m venv "$venv"
if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$pkg"; then
  echo "setup-test-deps: ERROR: 'pip install $pkg' into $venv failed (see above)." >&2
  echo "setup-test-deps: the py-libp2p interop test would be skipped; fix the install and rerun." >&2
  rm -rf "$venv"
  exit 1
fi
"$venv/bin/python" -c 'import libp2p' || {
  echo "setup-test-deps: ERROR: libp2p installed but does not import" >&2
  rm -rf "$venv"
  exit 1
}
echo "setup-test-deps: done"
