"""How credentials are handed to the engine."""

from dockyard.domain.containers import RegistryCredentials


def test_a_password_goes_as_username_and_password() -> None:
    assert RegistryCredentials("r.example", "me", "pw").engine_auth() == {
        "username": "me",
        "password": "pw",
        "serveraddress": "r.example",
    }


def test_an_identity_token_goes_as_one_and_never_as_a_password() -> None:
    auth = RegistryCredentials("r.example", "<token>", "s3cr3t-id").engine_auth()
    assert auth == {"identitytoken": "s3cr3t-id", "serveraddress": "r.example"}
    assert "s3cr3t-id" not in repr(RegistryCredentials("r.example", "<token>", "s3cr3t-id"))
