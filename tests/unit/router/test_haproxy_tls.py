"""HAProxy's HTTPS pieces: the PEM it is given, the answers it accepts, the rules it reads."""

from __future__ import annotations

from pathlib import Path

from dockyard.router.haproxy import render_main
from dockyard.router.haproxy_tls import Tls, pem_of, tls_accepted


def test_pem_has_no_empty_line_to_end_the_payload() -> None:
    pem = pem_of("-----BEGIN CERTIFICATE-----\nA\n\n-----END CERTIFICATE-----\n\n", "K\n")
    assert "\n\n" not in pem and pem.endswith("K\n")


def test_answers() -> None:
    assert tls_accepted("new ssl cert /c.pem", "Certificate '/c.pem' already exists!")
    assert tls_accepted("set ssl cert /c.pem <<\n...", "Transaction updated for certificate")
    assert tls_accepted("commit ssl cert /c.pem", "Committing /c.pem.\nSuccess!")
    assert not tls_accepted("commit ssl cert /c.pem", "No ongoing transaction!")
    assert tls_accepted("del ssl cert /c.pem", "Can't remove: certificate '/c.pem' doesn't exist!")


def test_the_https_frontend(tmp_path: Path) -> None:
    tls = Tls(tmp_path, "127.0.0.1:8443")
    assert tls.file_of("*.Shop.example").name == "_.shop.example.pem"
    text = render_main(listen="127.0.0.1:8080", directory=tmp_path, tls=tls)
    assert f"bind 127.0.0.1:8443 ssl crt {tls.default} crt-list {tls.crt_list}" in text
    assert "/.well-known/acme-challenge/" in text and str(tls.challenges) in text
    assert "redirect code 308 location https://" in text and ":8443%[url]" in text
    assert "bind 127.0.0.1:8443" not in render_main(listen="127.0.0.1:8080", directory=tmp_path)


def test_crt_list_file(tmp_path: Path) -> None:
    tls = Tls(tmp_path, "127.0.0.1:443")
    tls.prepare("DEFAULT\n")
    assert tls.write_certificate("www.example.com", "PEM\n")
    assert not tls.write_certificate("www.example.com", "PEM2\n")
    assert tls.listed() == [str(tls.file_of("www.example.com"))]
    assert tls.file_of("www.example.com").stat().st_mode & 0o077 == 0
    tls.forget_certificate("www.example.com")
    assert tls.listed() == [] and not tls.file_of("www.example.com").exists()
