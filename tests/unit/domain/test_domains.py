"""Which names an app may have."""

import pytest

from dockyard.domain.domains import InvalidDomain, parse_domain

PLATFORM = "dockyard.localhost"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("WWW.Example.COM.", "www.example.com"),
        ("*.shop.example", "*.shop.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost.dockyard", "localhost.dockyard"),  # not under the platform's domain
    ],
)
def test_names_stored_as_written_in_lower_case(text: str, stored: str) -> None:
    assert parse_domain(text, PLATFORM) == stored


@pytest.mark.parametrize(
    "text",
    ["", "example", "*.example", "a..example", "a_b.example", "*x.example", "1.2.3.4",
     "dockyard.localhost", "app.dockyard.localhost", "*.dockyard.localhost",
     "a" * 250 + ".example"],
)  # fmt: skip
def test_bad_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidDomain):
        parse_domain(text, PLATFORM)
