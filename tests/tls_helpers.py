"""A private certificate authority for the TLS tests: the simulator serves wss:// and https://
with a certificate it issued for 127.0.0.1, and a client trusts it through its PEM file only."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class PrivateCA:
    #: The CA's certificate (PEM), for `ca_file`.
    ca_file: Path
    #: The server's certificate chain and key (PEM), for `--tls-cert` and `--tls-key`.
    cert_file: Path
    key_file: Path

    @property
    def server(self) -> ssl.SSLContext:
        """A server context with the certificate for 127.0.0.1 and localhost."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client(self) -> ssl.SSLContext:
        """A client context that trusts this CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def private_ca(folder: Path) -> PrivateCA:
    """A fresh CA and a certificate it issued, as PEM files in `folder`."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = PrivateCA(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key_file))
    return files
