#!/usr/bin/env bash
# Builds and installs Citus 13.2.2 (the distributed PostgreSQL engine `make test-citus` runs on)
# into this machine's PostgreSQL 15-17, from the upstream source in third_party/citus (the v13.2.2
# tag's tarball, tests left out; its sha256 in third_party/citus/SHA256SUMS). Citus is not in
# Debian's archive and test machines may reach no package source that has it; production nodes
# install Citus from Citus's own packages instead (docs/scaling.md).
# Idempotent: does nothing when the installed citus.so is this build. Root on Debian/Ubuntu
# (apt-get for the build dependencies, `make install` into PostgreSQL's pkglibdir); ~3 min on 2
# cores. Prints the pkglibdir it installed into.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=13.2.2
TARBALL="$ROOT/third_party/citus/citus-$VERSION.tar.gz"
PG_CONFIG=${PG_CONFIG:-$(ls /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1)}
if [ ! -x "${PG_CONFIG:-}" ]; then
  # no PostgreSQL yet: the server first (what app/core/cluster.py would install on demand)
  bash "$ROOT/scripts/system-deps.sh"
  PG_CONFIG=$(ls /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1)
fi
MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
case "$MAJOR" in 15|16|17) ;; *) echo "Citus $VERSION supports PostgreSQL 15-17, found $MAJOR" >&2; exit 1;; esac
LIBDIR=$("$PG_CONFIG" --pkglibdir)
# DESTDIR (optional): stage the files under it instead (a package build, or a trial build)
DESTDIR=${DESTDIR:-}
STAMP="$DESTDIR$LIBDIR/citus.hereabouts-build"
if [ -f "$DESTDIR$LIBDIR/citus.so" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then
  echo "$DESTDIR$LIBDIR"; exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Citus is not installed: run 'sudo bash scripts/install-citus.sh' (Debian/Ubuntu), or" \
       "install Citus $VERSION from Citus's packages (docs/scaling.md)." >&2
  exit 1
fi
(cd "$ROOT/third_party/citus" && sha256sum --quiet -c SHA256SUMS)
need=()
for p in "postgresql-server-dev-$MAJOR" liblz4-dev libzstd-dev libkrb5-dev libssl-dev make gcc; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing Citus's build dependencies: ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
WORK=${CITUS_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hereabouts-citus}
rm -rf "$WORK/citus-$VERSION"
mkdir -p "$WORK"
tar xzf "$TARBALL" -C "$WORK"
cd "$WORK/citus-$VERSION"
# PostgreSQL 15.20 started exporting have_createdb_privilege(); Citus 13.2.2 still defines its
# own copy for 15, which then no longer compiles: drop the copy when the server headers declare it.
if grep -q "have_createdb_privilege" "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h"; then
  python3 - <<'PY'
p = "src/include/pg_version_compat.h"
s = open(p).read()
start = s.find("static inline bool\nhave_createdb_privilege(void)")
if start >= 0:
    end = s.index("}\n", s.index("return result;", start)) + 2
    s = s[:start] + "/* declared by the server headers (PostgreSQL 15.20+) */\n" + s[end:]
    open(p, "w").write(s)
PY
fi
echo "Building Citus $VERSION for PostgreSQL $MAJOR (about 3 minutes on 2 cores)" >&2
./configure --without-libcurl PG_CONFIG="$PG_CONFIG" >build.log 2>&1 || { tail -20 build.log >&2; exit 1; }
make -j"$(nproc)" >>build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
make install DESTDIR="$DESTDIR" >>build.log 2>&1 || { tail -20 build.log >&2; exit 1; }
echo "$VERSION" > "$STAMP"
echo "$DESTDIR$LIBDIR"
