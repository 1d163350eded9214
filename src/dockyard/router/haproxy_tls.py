"""HAProxy's HTTPS: the TLS bind, certificates changed at run time, HTTP-01 answers, redirects.

The HTTPS listener is one more ``bind`` of the one frontend, with a default
certificate (the local CA's ``*.<domain>``) and an ``ssl crt-list`` of one
file per name. A certificate is written to ``certs/`` (mode 0600: the one
place a key is in clear, because HAProxy reads it there after a restart)
and then put into the running HAProxy with ``new ssl cert`` / ``set ssl
cert`` / ``commit ssl cert`` and ``add ssl crt-list``: never a reload.

HTTP-01 challenges are a map, token → key authorization, answered by
HAProxy itself with ``http-request return`` on the HTTP port. Apps that
force HTTPS are a map of their backends, redirected with a 308.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.router.supervision import write_private

CHALLENGE_PATH = "/.well-known/acme-challenge/"


class Tls:
    """The files and runtime commands of HTTPS; ``HAProxyRouter`` sends the commands."""

    def __init__(self, directory: Path, https_listen: str) -> None:
        self.https_listen = https_listen
        self.certs = directory / "certs"
        self.crt_list = directory / "crt-list.txt"
        self.default = self.certs / "default.pem"
        self.challenges = directory / "acme.map"
        self.forced = directory / "https.map"

    @property
    def port(self) -> int:
        return int(self.https_listen.rpartition(":")[2])

    def file_of(self, name: str) -> Path:
        """The file of one name's certificate (``*.`` spelled ``_.``)."""
        return self.certs / (name.lower().replace("*", "_") + ".pem")

    # configuration

    def bind(self, host: str) -> str:
        return (
            f"    bind {host or '0.0.0.0'}:{self.port} ssl crt {self.default}"
            f" crt-list {self.crt_list} alpn http/1.1"
        )

    def rules(self, exact: Path, wildcards: Path) -> list[str]:
        """The frontend's HTTPS rules, before it picks a backend."""
        token = f"path,field(4,/),map({self.challenges})"
        port = "" if self.port == 443 else f":{self.port}"
        return [
            "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
            # The ACME CA asks over plain HTTP, for any name: HAProxy answers.
            f'    http-request return status 200 content-type text/plain lf-string "%[{token}]"'
            f" if {{ path_beg {CHALLENGE_PATH} }} {{ {token} -m found }}",
            "    http-request set-var(txn.backend) req.hdr(host),lower,word(1,:),"
            f"map({exact}) if {{ req.hdr(host),lower,word(1,:),map({exact}) -m found }}",
            "    http-request set-var(txn.backend) req.hdr(host),lower,word(1,:),"
            f"field(2,.,0),map({wildcards}) unless {{ var(txn.backend) -m found }}",
            f"    http-request redirect code 308 location https://%[req.hdr(host),lower,word(1,:)]"
            f"{port}%[url] if !{{ ssl_fc }} {{ var(txn.backend),map({self.forced}) -m found }}",
        ]

    # files: written before HAProxy is told, so a restart serves the same

    def prepare(self, default_pem: str | None) -> None:
        self.certs.mkdir(mode=0o700, exist_ok=True)
        if default_pem is not None:
            write_private(self.default, default_pem)
        for path in (self.crt_list, self.challenges, self.forced):
            if not path.exists():
                write_private(path, "")
        # A challenge is answered once: none survives a restart of the server.
        write_private(self.challenges, "")

    def listed(self) -> list[str]:
        try:
            return [line.strip() for line in self.crt_list.read_text().splitlines() if line]
        except OSError:
            return []

    def write_certificate(self, name: str, pem: str) -> bool:
        """Write the file and list it; whether it is new to the list."""
        path = self.file_of(name)
        write_private(path, pem)
        listed = self.listed()
        if str(path) in listed:
            return False
        write_private(self.crt_list, "".join(f"{line}\n" for line in [*listed, str(path)]))
        return True

    def forget_certificate(self, name: str) -> Path:
        path = self.file_of(name)
        listed = [line for line in self.listed() if line != str(path)]
        write_private(self.crt_list, "".join(f"{line}\n" for line in listed))
        path.unlink(missing_ok=True)
        return path

    def write_forced(self, backends: list[str]) -> None:
        write_private(self.forced, "".join(f"{b} 1\n" for b in sorted(backends)))


def pem_of(chain_pem: str, key_pem: str) -> str:
    """One file as HAProxy takes it: the chain, then the key; no empty line (it would end
    the runtime API's payload)."""
    text = chain_pem.strip() + "\n" + key_pem.strip() + "\n"
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


def tls_accepted(command: str, answer: str) -> bool:
    text = answer.strip()
    if command.startswith("new ssl cert"):
        return "New empty certificate store" in text or "already exists" in text
    if command.startswith("set ssl cert"):
        return "Transaction created" in text or "Transaction updated" in text
    if command.startswith(("commit ssl cert", "add ssl crt-list")):
        return "Success!" in text
    if command.startswith(("del ssl cert", "del ssl crt-list")):  # gone already is done
        return "deleted" in text or "doesn't exist" in text or "does not exist" in text
    return text == ""
