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
    #: A server context with a certificate for 127.0.0.1 and localhost issued by the CA.
    server: ssl.SSLContext

    def client(self) -> ssl.SSLContext:
        """A client context that trusts this CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def private_ca(folder: Path) -> PrivateCA:
    """A fresh CA, its PEM written into `folder`."""
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    return PrivateCA(ca_file, server)
