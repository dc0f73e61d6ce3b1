#!/usr/bin/env bash
# Installs what lull's tests need beyond a Rust toolchain, on Debian/Ubuntu,
# only when it is missing: a C compiler (aws-lc), Python 3 (example data),
# a real SMTP server for the alert tests (Debian's aiosmtpd, used through
# /usr/bin/python3), base64 (coreutils), and systemd-analyze and kill
# (systemd, procps) for the checks of the unit in deploy/, mount, prlimit,
# gzip and tar for the fault suite (tests/faults.rs mounts a tmpfs: run the
# tests as root, as CI does), and Debian's headless-capable chromium with
# chromium-driver (WebDriver) for the console's browser tests
# (tests/console_browser.rs). Idempotent: with everything
# present it does nothing and needs no privileges.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
command -v base64 >/dev/null || need+=(coreutils)
/usr/bin/python3 -c "import aiosmtpd" 2>/dev/null || need+=(python3-aiosmtpd)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ -x /bin/kill ] || need+=(procps)
# The fault suite: mount/umount a tmpfs, prlimit, gzip and tar.
command -v mount >/dev/null || need+=(mount)
command -v prlimit >/dev/null || need+=(util-linux)
command -v gzip >/dev/null || need+=(gzip)
command -v tar >/dev/null || need+=(tar)
# The console in a real browser.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
updated=
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  "${sudo[@]}" apt-get update -q && updated=1
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need[@]}"
fi

# promtool, to check deploy/prometheus-rules.yml: taken out of Debian's
# `prometheus` package without installing it (no server is set up or
# started), into tests/.tools/.
tools="$(dirname "$0")/.tools"
if [ ! -x "$tools/promtool" ]; then
  echo "fetching promtool (Debian package prometheus) into $tools" >&2
  [ -n "$updated" ] || "${sudo[@]}" apt-get update -q
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q prometheus 2>/dev/null && dpkg -x prometheus_*.deb x)
  mkdir -p "$tools"
  cp "$tmp/x/usr/bin/promtool" "$tools/promtool"
  rm -rf "$tmp"
fi
