"""Host-key verification for paramiko: strict (console fingerprints), tofu, insecure.

The policies never load keys into the `SSHClient`: paramiko only consults its
missing-host-key policy when a key is *not* in the client's host keys, so leaving those
empty makes the policy decide on every connection.

TOFU entries are keyed by instance id, not address: AWS hands a released public IP to the
next instance, and a host key recorded against the address would then look "changed" (or,
worse, a different host would be trusted under an old entry).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import paramiko

from tasks.errors import FleetError

_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
_END = "-----END SSH HOST KEY FINGERPRINTS-----"
_FP = re.compile(r"SHA256:[A-Za-z0-9+/]+=*")

POLICIES = ("strict", "tofu", "insecure")


class HostKeyRejected(FleetError, paramiko.SSHException):
    """The server's host key failed verification; never retry the connection."""


def parse_console_fingerprints(console_text: str) -> list[str]:
    """SHA256 fingerprints from cloud-init's block in an instance's console output.

    Lines may carry an `ec2: ` prefix (or a kernel timestamp); padding `=` is stripped.
    Duplicates are dropped, order kept.
    """
    found: list[str] = []
    inside = False
    for line in console_text.splitlines():
        if _BEGIN in line:
            inside = True
            continue
        if _END in line:
            inside = False
            continue
        if inside:
            for fp in _FP.findall(line):
                fp = fp.rstrip("=")
                if fp not in found:
                    found.append(fp)
    return found


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key: `SHA256:<unpadded base64>`."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Accept only a key whose fingerprint the instance printed to its console."""

    def __init__(self, instance_id: str, expected: list[str] | None) -> None:
        self.instance_id = instance_id
        self.expected = {fp.strip().rstrip("=") for fp in expected or [] if fp.strip()}

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.expected:
            raise HostKeyRejected(
                f"no host key fingerprints for {self.instance_id} in its console output yet"
            )
        got = fingerprint(key)
        if got not in self.expected:
            raise HostKeyRejected(
                f"host key of {self.instance_id} ({hostname}) is {key.get_name()} {got}, "
                f"not one of the {len(self.expected)} fingerprint(s) in its console output: "
                "refusing to connect"
            )


class TofuPolicy(paramiko.MissingHostKeyPolicy):
    """Trust on first use, one known_hosts file per deployment, keyed by instance id.

    Appends happen under an exclusive `flock` on `<path>.lock` (several processes and
    threads record keys at once); reads take the shared lock so they never see half a line.
    """

    def __init__(self, instance_id: str, known_hosts_path: str) -> None:
        self.instance_id = instance_id
        self.path = Path(known_hosts_path)
        self.lock_path = Path(f"{known_hosts_path}.lock")

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _entries(self, text: str) -> list[tuple[str, str]]:
        """(keytype, base64) recorded for this instance."""
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and not parts[0].startswith("#") and parts[0] == self.instance_id:
                out.append((parts[1], parts[2]))
        return out

    def _check(self, entries: list[tuple[str, str]], key: paramiko.PKey) -> bool:
        """True: known and equal. False: not recorded yet. Raises when it changed."""
        if not entries:
            return False
        if (key.get_name(), key.get_base64()) in entries:
            return True
        raise HostKeyRejected(
            f"host key for {self.instance_id} changed (known_hosts {self.path}): "
            "refusing to connect; if the instance was replaced, remove its line "
            f"(server now offers {key.get_name()} {fingerprint(key)})"
        )

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        with self._locked(fcntl.LOCK_SH):
            if self._check(self._entries(self._read()), key):
                return
        with self._locked(fcntl.LOCK_EX):
            text = self._read()  # someone may have recorded it since the shared read
            if self._check(self._entries(text), key):
                return
            line = f"{self.instance_id} {key.get_name()} {key.get_base64()}\n"
            if text and not text.endswith("\n"):
                line = "\n" + line
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)


class InsecurePolicy(paramiko.MissingHostKeyPolicy):
    """Accept any key (the caller warns)."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        return None


def make_policy(
    policy: str, *, instance_id: str, expected: list[str] | None, known_hosts_path: str
) -> paramiko.MissingHostKeyPolicy:
    """The missing-host-key policy for one connection to `instance_id`."""
    if policy == "strict":
        return StrictPolicy(instance_id, expected)
    if policy == "tofu":
        return TofuPolicy(instance_id, known_hosts_path)
    if policy == "insecure":
        return InsecurePolicy()
    raise ValueError(f"unknown host key policy {policy!r}; choose one of {', '.join(POLICIES)}")
