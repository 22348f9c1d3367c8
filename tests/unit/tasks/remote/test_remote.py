"""tasks.remote without a network: redaction, the config builder, the command runner's
stdin handling, the fan-out and its result, and the jumphost's mysql command (issue 11)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blocks.settings import FleetSettings
from tasks.deploy.models import RdsResult
from tasks.deploy.stages import s09_jumphost_mysql_check as jumphost
from tasks.models import HostResult, Instance
from tasks.remote import group as group_mod
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.connection import (
    REDACTED,
    Connection,
    RemoteError,
    Result,
    load_private_key,
    redact,
)
from tasks.remote.group import GroupResult, ThreadingGroup, fan_out


def _pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def _settings(tmp_path: Path, **kw: Any) -> FleetSettings:
    return FleetSettings(deployment_name="unit", state_dir=str(tmp_path / "state"), **kw)


# -- redaction ---------------------------------------------------------------------------
def test_redact_key_lines_and_whole_key() -> None:
    pem = _pem()
    body = [ln for ln in pem.splitlines() if ln and "-----" not in ln]
    text = f"oops: {pem}\nand a line alone: {body[0]}"
    out = redact(text, [pem])
    assert not any(ln in out for ln in body if len(ln) >= 16)
    assert "PRIVATE KEY" not in out and REDACTED in out


def test_redact_password_plain_and_shell_quoted() -> None:
    pw = "it's-s3cret"
    text = f"MYSQL_PWD={pw} and quoted 'it'\"'\"'s-s3cret' end"
    out = redact(text, [pw])
    assert pw not in out and "s3cret" not in out
    assert out.count(REDACTED) == 2


def test_redact_keeps_armour_short_lines_and_empty() -> None:
    secret = "-----BEGIN X-----\nshort\n" + "A" * 20 + "\n-----END X-----\n"
    out = redact("-----BEGIN X----- short " + "A" * 20, [secret])
    assert out == f"-----BEGIN X----- short {REDACTED}"
    assert redact("", ["x"]) == ""
    assert redact("nothing here", ["", "zzz"]) == "nothing here"


def test_redact_longest_first() -> None:
    assert redact("abcdef", ["abc", "abcdef"]) == REDACTED


# -- config --------------------------------------------------------------------------------
def test_remote_config_from_settings(tmp_path: Path) -> None:
    pem = _pem()
    settings = _settings(tmp_path, host_key_policy="strict", ssh_port=2222, host_attempts=5)
    cfg = remote_config(settings, pem, expected_fingerprints={"i-1": ["SHA256:x"]})
    assert cfg.ssh_port == 2222 and cfg.ssh_user == settings.ssh_user
    assert cfg.host_key_policy == "strict"
    assert cfg.known_hosts_path == str(settings.known_hosts_path)
    assert cfg.expected_fingerprints == {"i-1": ["SHA256:x"]}
    assert cfg.connect_timeout_s == settings.ssh_connect_timeout_s
    assert cfg.ssh_wait_s == settings.ssh_wait_s and cfg.host_attempts == 5
    assert cfg.steps == settings.install_steps and cfg.probe_command == settings.probe_command
    assert cfg.key_pem.get_secret_value() == pem
    assert pem not in repr(cfg) and pem not in str(cfg.model_dump())
    insecure = remote_config(settings, pem, host_key_policy="insecure")
    assert insecure.host_key_policy == "insecure" and insecure.expected_fingerprints == {}


def test_config_defaults_need_no_steps() -> None:
    cfg = HostInstallConfig(ssh_port=22, ssh_user="u", key_pem="k", known_hosts_path="/x")
    assert cfg.steps == [] and cfg.probe_command == "true"


# -- Connection without a host ---------------------------------------------------------------
def test_bad_key_is_a_remote_error(tmp_path: Path) -> None:
    cfg = remote_config(_settings(tmp_path), "not a key")
    with pytest.raises(RemoteError, match="ssh: unsupported or encrypted private key"):
        Connection("192.0.2.1", cfg).open()
    with pytest.raises(ValueError):
        load_private_key("not a key")


def test_cancelled_before_connecting(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    conn = Connection("192.0.2.1", remote_config(_settings(tmp_path), _pem()), stop=stop)
    with pytest.raises(RemoteError, match=r"^cancelled$"):
        conn.open()
    assert not conn.is_connected


class _Chan:
    def __init__(self, out: bytes, status: int) -> None:
        self.out, self.exit_status = out, status
        self.status_event = threading.Event()
        self.status_event.set()
        self.eof_received, self.closed = True, False

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, _n: int) -> bytes:
        data, self.out = self.out, b""
        return data

    def recv_stderr_ready(self) -> bool:
        return False


class _Stdin:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.closed = False

    def write(self, text: str) -> None:
        assert not self.closed
        self.written.append(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self, out: bytes = b"1\n", status: int = 0) -> None:
        self.stdin = _Stdin()
        self.chan = _Chan(out, status)
        self.commands: list[str] = []
        self.closed = False

    def exec_command(self, command: str, timeout: float) -> tuple[Any, Any, Any]:
        self.commands.append(command)
        stdout = type("F", (), {"channel": self.chan})()
        return self.stdin, stdout, None

    def close(self) -> None:
        self.closed = True


def _connected(tmp_path: Path, client: _Client, **kw: Any) -> Connection:
    conn = Connection("192.0.2.1", remote_config(_settings(tmp_path), _pem()), **kw)
    conn.client = client  # type: ignore[assignment]
    return conn


def test_run_writes_stdin_then_eof(tmp_path: Path) -> None:
    client = _Client()
    with _connected(tmp_path, client) as conn:
        res = conn.run("cat", timeout=5, stdin="[client]\npassword=pw\n")
    assert res == Result(0, "1\n", "", "") and res.ok and not res.failed
    assert client.stdin.written == ["[client]\npassword=pw\n"] and client.stdin.closed
    assert client.commands == ["cat"] and client.closed and not conn.is_connected


def test_run_without_stdin_sends_eof_only(tmp_path: Path) -> None:
    client = _Client(b"", 3)
    conn = _connected(tmp_path, client)
    res = conn.run("false", timeout=5)
    assert res.status == 3 and res.failed
    assert client.stdin.written == [] and client.stdin.closed


def test_run_reports_a_lost_connection_redacted(tmp_path: Path) -> None:
    class Broken(_Client):
        def exec_command(self, command: str, timeout: float) -> tuple[Any, Any, Any]:
            raise OSError("reset while sending hunter2hunter2")

    conn = _connected(tmp_path, Broken(), secrets=["hunter2hunter2"])
    res = conn.run("x", timeout=1)
    assert res.status is None and res.failed
    assert res.error == f"connection lost (OSError: reset while sending {REDACTED})"


# -- fan-out ----------------------------------------------------------------------------
def test_fan_out_keeps_order_and_turns_errors_into_results() -> None:
    seen: list[int] = []

    def work(n: int) -> str:
        time.sleep(0.01 * (5 - n))  # later items finish first
        if n == 2:
            raise RuntimeError("boom")
        return f"ok{n}"

    out = fan_out(
        [0, 1, 2, 3, 4],
        work,
        max_workers=5,
        on_error=lambda n, exc: f"err{n}:{exc}",
        on_result=lambda n, _r: seen.append(n),
    )
    assert out == ["ok0", "ok1", "err2:boom", "ok3", "ok4"]
    assert seen == [0, 1, 2, 3, 4]


def _inst(i: int) -> Instance:
    return Instance(instance_id=f"i-{i:08x}", public_ip=f"192.0.2.{i}")


def test_threading_group_one_result_per_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_install(inst: Instance, cfg: HostInstallConfig, **_: Any) -> HostResult:
        if inst.instance_id.endswith("3"):
            raise RuntimeError("thread blew up")
        status = "installed" if inst.instance_id.endswith(("0", "1")) else "failed"
        return HostResult(instance_id=inst.instance_id, public_ip=inst.public_ip, status=status)

    monkeypatch.setattr(group_mod, "install_host", fake_install)
    instances = [_inst(i) for i in range(4)]
    cfg = remote_config(_settings(tmp_path), _pem())
    res = ThreadingGroup(instances, cfg, max_workers=2).install()
    assert isinstance(res, GroupResult) and len(res) == 4
    assert [r.instance_id for r in res] == [i.instance_id for i in instances]
    assert [r.instance_id for r in res.succeeded] == ["i-00000000", "i-00000001"]
    assert [r.instance_id for r in res.failed] == ["i-00000002", "i-00000003"]
    assert "installer crashed" in (res.results[3].reason or "") and not res.ok


# -- the jumphost's mysql (issue 11) --------------------------------------------------------
_RDS = RdsResult(
    db_instance_id="db",
    endpoint="db.example.internal",
    port=3306,
    security_group_id="sg-1",
    master_username="admin",
    password_secret_block="blk",
)


def test_mysql_command_has_no_password() -> None:
    cmd = jumphost.mysql_command(_RDS, 7)
    assert cmd.startswith("mysql --defaults-extra-file=/dev/stdin ")
    assert "MYSQL_PWD" not in cmd and "password" not in cmd.lower()
    assert "-h db.example.internal -P 3306 -u admin --connect-timeout=7 -N -e 'SELECT 1'" in cmd
    assert jumphost.mysql_stdin("Pw0rd") == "[client]\npassword=Pw0rd\n"


def test_jumphost_session_sends_password_on_stdin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "Sup3rSecretPassw0rd"
    client = _Client(b"", 1)
    client.chan.out = b""
    calls: list[tuple[str, str | None]] = []
    real_run = Connection.run

    def spy(self: Connection, command: str, timeout: float, stdin: str | None = None) -> Result:
        calls.append((command, stdin))
        return real_run(self, command, timeout, stdin)

    monkeypatch.setattr(Connection, "run", spy)
    cfg = remote_config(_settings(tmp_path), _pem())
    session = jumphost._Session(_inst(9), cfg, time.monotonic() + 30, secrets=(password,))
    session.conn.client = client  # type: ignore[assignment]
    res = session.run(jumphost.mysql_command(_RDS, 5), 30, jumphost.mysql_stdin(password))
    assert res.status == 1
    assert all(password not in cmd for cmd in client.commands)
    assert calls == [(client.commands[0], f"[client]\npassword={password}\n")]
    assert client.stdin.written == [f"[client]\npassword={password}\n"] and client.stdin.closed
    assert session.conn.redact(f"ERROR 1045 for {password}") == f"ERROR 1045 for {REDACTED}"


def test_run_reports_the_exit_status_when_stdin_is_not_read(tmp_path: Path) -> None:
    class Gone(_Stdin):
        def write(self, text: str) -> None:
            raise OSError("Socket is closed")

    client = _Client(b"", 7)
    client.stdin = Gone()
    res = _connected(tmp_path, client).run("mysql --bad", timeout=5, stdin="x")
    assert res.status == 7 and res.error == ""


def test_mysql_stdin_quotes_what_an_option_file_would_misread() -> None:
    assert jumphost.mysql_stdin("ab#cd") == '[client]\npassword="ab#cd"\n'
    assert jumphost.mysql_stdin("a\\b") == '[client]\npassword="a\\\\b"\n'
    with pytest.raises(ValueError, match="line break"):
        jumphost.mysql_stdin("a\nb")
