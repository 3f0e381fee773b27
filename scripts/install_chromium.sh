#!/usr/bin/env bash
# Debian's Chromium for the web demo's browser test (tests/test_app.py drives it with playwright), installed
# when missing: as root with apt-get (about 40 s, `make test` runs this). Elsewhere it says what to do and
# the browser test skips with that reason; a failed install does not stop the other tests either.
set -uo pipefail
[[ -x /usr/bin/chromium ]] && exit 0
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "note: no /usr/bin/chromium, the browser test will skip (as root: apt-get install chromium)"
    exit 0
fi
echo "installing Debian's chromium for the browser test (about 40 s)"
log=$(mktemp /tmp/chromium-install.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get install -y -q --no-install-recommends chromium)
if ! "${apt[@]}" >"$log" 2>&1; then
    apt-get update -q >>"$log" 2>&1 && "${apt[@]}" >>"$log" 2>&1 ||
        echo "warning: apt-get install chromium failed (see $log); the browser test will skip"
fi
exit 0
