"""The vendored Citus source that `make test-citus` builds on a machine without Citus.

scripts/install-citus.sh builds the tarball in third_party/citus; a tarball that was replaced,
truncated or stored as a Git LFS pointer would only show when a fresh machine builds it.
"""

from __future__ import annotations

import hashlib
import re
import tarfile

from app.core.config import PROJECT_ROOT

VENDOR = PROJECT_ROOT / "third_party" / "citus"
SCRIPT = PROJECT_ROOT / "scripts" / "install-citus.sh"


def test_the_vendored_tarball_is_the_one_the_script_builds_and_its_checksum_holds() -> None:
    version = re.search(r"^VERSION=(\S+)$", SCRIPT.read_text(), re.MULTILINE)
    assert version is not None
    tarball = VENDOR / f"citus-{version.group(1)}.tar.gz"
    sums: dict[str, str] = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == sums[tarball.name]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    top = f"citus-{version.group(1)}"
    # what the script runs and what the licence requires to travel with the source
    assert {f"{top}/configure", f"{top}/LICENSE", f"{top}/src/include/pg_version_compat.h"} <= names
