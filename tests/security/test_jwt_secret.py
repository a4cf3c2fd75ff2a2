"""Issue 18, finding 2: no constant JWT secret in any environment.

Before the fix an unset `HEREABOUTS_JWT_SECRET` meant the published placeholder
`dev-only-insecure-secret` in development (the default environment), so anyone could sign an
admin token for any organisation.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRETS, Environment, Settings
from app.core.security import InvalidToken, StaffClaims, decode_staff_token, issue_staff_token


@pytest.fixture(autouse=True)
def _no_secret_in_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HEREABOUTS_JWT_SECRET", raising=False)
    monkeypatch.delenv("HEREABOUTS_JWT_PREVIOUS_SECRETS", raising=False)
    monkeypatch.delenv("HEREABOUTS_ENVIRONMENT", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize("environment", [Environment.development, Environment.test])
def test_unset_secret_is_generated_once_into_the_data_dir(
    tmp_path: Path, environment: Environment
) -> None:
    first = Settings(environment=environment, data_dir=tmp_path / "data")
    assert first.jwt_secret.lower() not in PLACEHOLDER_SECRETS
    assert len(first.jwt_secret) >= 32
    key_file = tmp_path / "data" / "jwt_secret"
    assert key_file.read_text().strip() == first.jwt_secret
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the next start (another process, a restart) uses the same key: tokens stay valid
    again = Settings(environment=environment, data_dir=tmp_path / "data")
    assert again.jwt_secret == first.jwt_secret
    # another data directory (another deployment) gets another key
    other = Settings(environment=environment, data_dir=tmp_path / "other")
    assert other.jwt_secret != first.jwt_secret


# the forger signs with the old 24-byte placeholder on purpose; PyJWT warns about its length
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_token_signed_with_the_old_placeholder_is_refused_by_a_default_setup(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.environment is Environment.development
    forged = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "org": str(uuid.uuid4()),
            "role": "admin",
            "typ": "staff",
            "iat": 1,
            "exp": 4_102_444_800,
        },
        "dev-only-insecure-secret",
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        decode_staff_token(settings, forged)
    own = issue_staff_token(settings, StaffClaims(uuid.uuid4(), uuid.uuid4(), "admin"))
    assert decode_staff_token(settings, own).role == "admin"


@pytest.mark.parametrize("environment", list(Environment))
@pytest.mark.parametrize("placeholder", ["dev-only-insecure-secret", "changethis", "CHANGEME"])
def test_a_known_placeholder_is_refused_in_every_environment(
    tmp_path: Path, environment: Environment, placeholder: str
) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment=environment, data_dir=tmp_path, jwt_secret=placeholder)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(
            environment=environment,
            data_dir=tmp_path,
            jwt_secret="r" * 48,
            jwt_previous_secrets=[placeholder],
        )


def test_production_needs_an_explicit_secret_and_generates_none(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment=Environment.production, data_dir=tmp_path)
    assert not (tmp_path / "jwt_secret").exists()
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment=Environment.production, data_dir=tmp_path, jwt_secret="short")


def test_an_unusable_key_file_is_an_error_not_a_weak_key(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("tiny\n")
    with pytest.raises(ValidationError, match="jwt_secret"):
        Settings(data_dir=tmp_path)
