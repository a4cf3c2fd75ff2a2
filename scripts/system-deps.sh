#!/usr/bin/env bash
# Installs what the tests need from the distribution when it is missing (root on Debian/Ubuntu).
# PostgreSQL + PostGIS are installed by app/core/cluster.py on demand; this covers the rest.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  missing+=("postgresql-${ver:-15}-postgis-3")
fi
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${missing[*]}. Install them (e.g. sudo apt-get install ${missing[*]})." >&2
  exit 1
fi
echo "Installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "${missing[@]}" >/dev/null
