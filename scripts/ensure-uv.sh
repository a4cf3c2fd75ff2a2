#!/usr/bin/env bash
# Prints the path of a working `uv`, installing it from PyPI first if needed (no other downloads).
set -euo pipefail
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
for candidate in "$HOME/.local/bin/uv" /usr/local/bin/uv; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
{
  python3 -m pip install --quiet --user uv 2>/dev/null ||
  python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null ||
  python3 -m pip install --quiet uv 2>/dev/null ||
  python3 -m pip install --quiet --break-system-packages uv
} >&2
python3 - <<'PY'
import os, shutil, sysconfig, site
for d in (os.path.expanduser("~/.local/bin"), sysconfig.get_path("scripts"), "/usr/local/bin"):
    p = os.path.join(d, "uv")
    if os.access(p, os.X_OK):
        print(p)
        break
else:
    print(shutil.which("uv") or "uv")
PY
