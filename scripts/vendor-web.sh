#!/usr/bin/env bash
# Re-creates app/web/static/vendor/ from the npm registry (the committed files are its output, so
# neither a build step nor the network is needed to run the service). Pinned versions and sha256 of
# the package tarballs: a changed tarball fails loudly instead of silently shipping different code.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=app/web/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent leaflet@1.9.4 @geoman-io/leaflet-geoman-free@2.20.2 axe-core@4.10.3 >/dev/null)
(cd "$tmp" && sha256sum -c - <<SUMS
84c65a256e50657896f54c33bd857b6849ebe94c817803be818bf32a3dde0b77  leaflet-1.9.4.tgz
1688a81159de5610fcb7af59f7d76a5133aa5fe58d1840aa43b5915a0c1699a0  geoman-io-leaflet-geoman-free-2.20.2.tgz
0f2b4d7dcdf7d1219df8d1959ad68e565f51d14c3f0d88bb71cd59abeb956292  axe-core-4.10.3.tgz
SUMS
)
mkdir -p "$tmp/l" "$tmp/g" "$tmp/a"
tar xzf "$tmp/leaflet-1.9.4.tgz" -C "$tmp/l"
tar xzf "$tmp/geoman-io-leaflet-geoman-free-2.20.2.tgz" -C "$tmp/g"
tar xzf "$tmp/axe-core-4.10.3.tgz" -C "$tmp/a"
rm -rf "$dest/leaflet" "$dest/leaflet-geoman" "$dest/axe-core"
mkdir -p "$dest/leaflet" "$dest/leaflet-geoman" "$dest/axe-core"
cp -r "$tmp/l/package/dist/leaflet.js" "$tmp/l/package/dist/leaflet.css" \
  "$tmp/l/package/dist/images" "$tmp/l/package/LICENSE" "$dest/leaflet/"
cp "$tmp/g/package/dist/leaflet-geoman.min.js" "$tmp/g/package/dist/leaflet-geoman.css" \
  "$tmp/g/package/LICENSE" "$dest/leaflet-geoman/"
# axe-core: the accessibility checker the browser tests run in the pages (tests/web)
cp "$tmp/a/package/axe.min.js" "$tmp/a/package/LICENSE" "$dest/axe-core/"
echo "vendored into $dest"
