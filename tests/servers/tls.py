"""TLS material for the HTTPS sites: a private CA (trustme) and the PEM files a profile names."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


class TLSFiles:
    """A private CA (trustme) whose PEM files live in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, *identities: str, client_certs: bool = False) -> ssl.SSLContext:
        """A server context with a certificate for `identities` (default 127.0.0.1).

        `client_certs`: the handshake requires a client certificate issued by this CA.
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*(identities or ("127.0.0.1",))).configure_cert(context)
        if client_certs:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context

    def client_files(
        self, identity: str = "client@example", password: str | None = None
    ) -> tuple[Path, Path]:
        """PEM files (certificate chain, private key) of a client certificate.

        With `password` the key is written encrypted (PKCS#8, best available encryption).
        """
        cert = self.ca.issue_cert(identity)
        cert_file = self.folder / f"{identity}.pem"
        key_file = self.folder / f"{identity}{'-encrypted' if password else ''}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key = cert.private_key_pem.bytes()
        if password is not None:
            loaded = serialization.load_pem_private_key(key, password=None)
            key = loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            )
        key_file.write_bytes(key)
        return cert_file, key_file
