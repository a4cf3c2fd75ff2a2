#!/usr/bin/env bash
# Re-creates app/web/static/vendor/ from the npm registry (the committed files are its output, so
# neither a build step nor the network is needed to run the service). Pinned versions and sha256 of
# the package tarballs: a changed tarball fails loudly instead of silently shipping different code.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=app/web/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent leaflet@1.9.4 @geoman-io/leaflet-geoman-free@2.20.2 >/dev/null)
(cd "$tmp" && sha256sum -c - <<SUMS
84c65a256e50657896f54c33bd857b6849ebe94c817803be818bf32a3dde0b77  leaflet-1.9.4.tgz
1688a81159de5610fcb7af59f7d76a5133aa5fe58d1840aa43b5915a0c1699a0  geoman-io-leaflet-geoman-free-2.20.2.tgz
SUMS
)
mkdir -p "$tmp/l" "$tmp/g"
tar xzf "$tmp/leaflet-1.9.4.tgz" -C "$tmp/l"
tar xzf "$tmp/geoman-io-leaflet-geoman-free-2.20.2.tgz" -C "$tmp/g"
rm -rf "$dest/leaflet" "$dest/leaflet-geoman"
mkdir -p "$dest/leaflet" "$dest/leaflet-geoman"
cp -r "$tmp/l/package/dist/leaflet.js" "$tmp/l/package/dist/leaflet.css" \
  "$tmp/l/package/dist/images" "$tmp/l/package/LICENSE" "$dest/leaflet/"
cp "$tmp/g/package/dist/leaflet-geoman.min.js" "$tmp/g/package/dist/leaflet-geoman.css" \
  "$tmp/g/package/LICENSE" "$dest/leaflet-geoman/"
echo "vendored into $dest"
