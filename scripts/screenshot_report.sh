#!/usr/bin/env bash
# Screenshot a report.html (or compare.html) in headless Chromium with no network access,
# to check that the file is self-contained and every embedded image renders.
#
#   scripts/screenshot_report.sh RUN_DIR/report.html [OUT.png]
#
# Install Chromium first if needed: apt-get install -y chromium
# Network is cut off twice: Chromium's own background traffic is disabled by flags, and
# --host-resolver-rules makes every host name unresolvable, so a remote src/href would fail.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 REPORT.html [OUT.png]" >&2
    exit 2
fi
html=$(realpath "$1")
out=${2:-${html%.html}.png}
if [[ ! -f "$html" ]]; then
    echo "$0: $html: no such file" >&2
    exit 2
fi
browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
if [[ -z "$browser" ]]; then
    echo "$0: Chromium not found; install it with: apt-get install -y chromium" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-default-apps \
    --host-resolver-rules="MAP * ~NOTFOUND" --hide-scrollbars \
    --user-data-dir="$profile" --screenshot="$(realpath -m "$out")" --window-size=1400,5000 \
    "file://$html" >/dev/null 2>&1
echo "$out"
