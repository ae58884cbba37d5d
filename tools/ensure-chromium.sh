#!/usr/bin/env bash
# Headless Chromium drives the gallery page in the browser test. Install Debian's package when we
# can (root with apt-get, as on CI); otherwise say so: that test then skips and reports why.
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing chromium (Debian package) for the gallery browser test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    && exit 0
fi
echo "chromium is not installed and could not be installed here: the gallery browser test will skip." >&2
exit 0
