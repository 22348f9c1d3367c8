"""The emulated shell against a fake network: parsing, apt, systemd, curl/wget, mysql."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from sandbox.config import FaultRates
from sandbox.faults import host_faults
from sandbox.hoststate import HostState, HttpResult
from sandbox.shell import run_command

TOMCAT_URL = "http://127.100.0.5:8080/"


class FakeNetwork:
    """Serves Tomcat on the host's own address once started, plus one RDS endpoint."""

    def __init__(self) -> None:
        self.tomcat_running = False
        self.starts = 0
        self.names = {"web.sandbox.example.com": "127.100.0.5"}

    def resolve(self, name: str) -> str | None:
        if name[:1].isdigit():
            return name
        return self.names.get(name)

    async def http_get(
        self, host: HostState, url: str, *, verify_tls: bool, timeout: float
    ) -> HttpResult:
        rest = url.split("://", 1)[1]
        name, _, path = rest.partition("/")
        name = name.split(":")[0]
        if self.resolve(name) is None:
            return HttpResult(None, error="resolve")
        if url.startswith("https") and verify_tls:
            return HttpResult(None, error="tls")
        if not self.tomcat_running:
            return HttpResult(None, error="refused")
        if path.startswith("missing"):
            return HttpResult(404, b"<h1>Not Found</h1>", {"Content-Type": "text/html"})
        return HttpResult(200, b"<html>It works!</html>\n", {"Content-Type": "text/html"})

    async def mysql_login(
        self, host: HostState, endpoint: str, port: int, user: str, password: str, timeout: float
    ) -> str | None:
        if endpoint != "db.rds.example.com":
            return f"ERROR 2005 (HY000): Unknown MySQL server host '{endpoint}' (-2)"
        if (user, password) != ("admin", "s3cret"):
            using = "YES" if password else "NO"
            return (
                f"ERROR 1045 (28000): Access denied for user '{user}'@'{host.private_ip}' "
                f"(using password: {using})"
            )
        return None

    async def start_tomcat(self, host: HostState) -> None:
        self.tomcat_running = True
        self.starts += 1

    async def stop_tomcat(self, host: HostState) -> None:
        self.tomcat_running = False


def make_host(*, cloud_init_seconds: float = 0.0, install_failure: float = 0.0) -> HostState:
    rates = FaultRates(install_failure=install_failure)
    return HostState(
        instance_id="i-0123456789abcdef0",
        public_ip="127.100.0.5",
        private_ip="10.0.1.23",
        groups=["sg-web"],
        faults=host_faults(7, "i-0123456789abcdef0", rates),
        install_latency=0.01,
        latency_jitter=0.2,
        rng=random.Random(7),
        booted_at=time.monotonic(),
        cloud_init_seconds=cloud_init_seconds,
    )


class Shell:
    def __init__(self, host: HostState | None = None) -> None:
        self.host = host or make_host()
        self.net = FakeNetwork()

    def run(
        self, command: str, env: dict[str, str] | None = None, stdin: str = ""
    ) -> tuple[int, str, str]:
        out: list[str] = []
        err: list[str] = []

        async def go() -> int:
            return await run_command(
                command, env or {}, self.host, self.net, out.append, err.append, stdin
            )

        status = asyncio.run(go())
        return status, "".join(out), "".join(err)

    def install_tomcat(self) -> None:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        assert self.run("sudo apt-get update -q", env)[0] == 0
        assert self.run("sudo -E apt-get install -y tomcat9", env)[0] == 0


NONINTERACTIVE = "sudo DEBIAN_FRONTEND=noninteractive"


# -- the shell itself --------------------------------------------------------------------


def test_unknown_command_is_127() -> None:
    status, out, err = Shell().run("frobnicate --now")
    assert status == 127
    assert out == ""
    assert err == "bash: line 1: frobnicate: command not found\n"


def test_and_or_semicolon_semantics() -> None:
    sh = Shell()
    assert sh.run("true && echo yes") == (0, "yes\n", "")
    assert sh.run("false && echo yes") == (1, "", "")
    assert sh.run("false || echo fallback") == (0, "fallback\n", "")
    assert sh.run("true || echo never") == (0, "", "")
    assert sh.run("false && echo a || echo b") == (0, "b\n", "")
    assert sh.run("false; echo after") == (0, "after\n", "")
    assert sh.run("echo one; false")[0] == 1


def test_commands_run_counts_simple_commands() -> None:
    sh = Shell()
    sh.run("true && false || echo x; echo y")
    assert sh.host.commands_run == 4
    sh.run("false && echo skipped")
    assert sh.host.commands_run == 5


def test_redirections_and_pipes() -> None:
    sh = Shell()
    assert sh.run("echo hidden >/dev/null") == (0, "", "")
    assert sh.run("frob > /dev/null 2>&1") == (127, "", "")
    status, out, err = sh.run("frob 2>&1")
    assert (status, err) == (127, "")
    assert "command not found" in out
    assert sh.run("echo oops >&2") == (0, "", "oops\n")
    status, _, err = sh.run("echo hi | grep hi")
    assert status == 2
    assert err == "sandbox shell: pipes are not supported\n"
    assert sh.run("echo 'a | b'") == (0, "a | b\n", "")


def test_sudo_env_and_assignment_prefixes() -> None:
    sh = Shell()
    assert sh.run("whoami") == (0, "ubuntu\n", "")
    assert sh.run("sudo whoami") == (0, "root\n", "")
    assert sh.run("sudo -n whoami") == (0, "root\n", "")
    assert "FOO=bar\n" in sh.run("FOO=bar env")[1]
    assert "FOO=bar\n" in sh.run("env FOO=bar env")[1]
    # Ubuntu's sudo resets the environment unless -E
    assert "FOO=bar" not in sh.run("FOO=bar sudo env")[1]
    assert "FOO=bar\n" in sh.run("FOO=bar sudo -E env")[1]
    assert "FOO=bar\n" in sh.run("sudo FOO=bar env")[1]
    assert sh.run("sudo frob")[0:3:2] == (1, "sudo: frob: command not found\n")
    assert sh.run("sudo bash -c 'whoami && echo done'") == (0, "root\ndone\n", "")


def test_hostname_and_sleep() -> None:
    sh = Shell()
    assert sh.run("hostname") == (0, "ip-10-0-1-23\n", "")
    assert sh.run("sleep 0.01 && echo woke") == (0, "woke\n", "")
    assert sh.run("sleep soon")[0] == 1


def test_syntax_errors() -> None:
    sh = Shell()
    assert sh.run("echo 'unterminated")[0] == 2
    assert sh.run("&& echo x")[0] == 2
    assert sh.run("") == (0, "", "")


# -- cloud-init and the dpkg lock ------------------------------------------------------------


def test_cloud_init_status_and_wait() -> None:
    sh = Shell(make_host(cloud_init_seconds=0.2))
    assert sh.run("cloud-init status") == (0, "status: running\n", "")
    started = time.monotonic()
    status, out, _ = sh.run("cloud-init status --wait")
    assert status == 0
    assert time.monotonic() - started >= 0.15
    assert out.endswith("\nstatus: done\n")
    assert sh.run("cloud-init status") == (0, "status: done\n", "")


def test_dpkg_lock_held_while_cloud_init_runs() -> None:
    sh = Shell(make_host(cloud_init_seconds=30))
    status, _, err = sh.run("sudo apt-get install -y tomcat9")
    assert status == 100
    assert "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process" in err
    assert "Unable to acquire the dpkg frontend lock" in err
    status, _, err = sh.run("sudo apt-get update")
    assert status == 100
    assert "E: Unable to lock directory /var/lib/apt/lists/" in err


def test_lock_timeout_option_waits_for_cloud_init() -> None:
    sh = Shell(make_host(cloud_init_seconds=0.2))
    status, out, _ = sh.run("sudo apt-get -o DPkg::Lock::Timeout=5 update")
    assert status == 0
    assert "Waiting for cache lock" in out


def test_apt_needs_root() -> None:
    status, _, err = Shell().run("apt-get install -y tomcat9")
    assert status == 100
    assert "are you root?" in err


# -- apt-get install ---------------------------------------------------------------------


def test_install_before_update_cannot_locate_package() -> None:
    sh = Shell()
    status, _, err = sh.run(f"{NONINTERACTIVE} apt-get install -y tomcat9")
    assert status == 100
    assert "E: Unable to locate package tomcat9" in err
    assert "tomcat9" not in sh.host.packages


def test_happy_path_update_install_enable_start() -> None:
    sh = Shell()
    status, out, err = sh.run(f"{NONINTERACTIVE} apt-get update")
    assert status == 0
    assert "Reading package lists..." in out
    assert sh.host.apt_lists_fresh
    status, out, err = sh.run(
        f"{NONINTERACTIVE} apt-get install -y -q --no-install-recommends tomcat9"
    )
    assert status == 0, err
    assert "debconf" not in err
    assert "Setting up tomcat9 (9.0.58-1ubuntu0.1) ..." in out
    assert "Created symlink /etc/systemd/system/multi-user.target.wants/tomcat9.service" in out
    assert {"tomcat9", "tomcat9-common", "libtomcat9-java", "default-jre-headless"} <= (
        sh.host.packages
    )
    # installing tomcat9 on Ubuntu enables and starts it
    assert sh.net.tomcat_running
    assert "tomcat9" in sh.host.active_units
    assert not sh.host.installing
    assert sh.run("sudo systemctl enable tomcat9") == (0, "", "")
    assert sh.run("sudo systemctl start tomcat9.service") == (0, "", "")
    assert sh.net.starts == 1  # already running: no second start
    assert sh.run("systemctl is-active tomcat9") == (0, "active\n", "")
    assert sh.run("systemctl is-enabled tomcat9") == (0, "enabled\n", "")
    assert sh.run("systemctl is-active --quiet tomcat9") == (0, "", "")
    status, out, _ = sh.run("systemctl status tomcat9 --no-pager")
    assert status == 0
    assert "Active: active (running)" in out


def test_stop_and_restart() -> None:
    sh = Shell()
    sh.install_tomcat()
    assert sh.run("sudo systemctl stop tomcat9")[0] == 0
    assert not sh.net.tomcat_running
    assert sh.run("systemctl is-active tomcat9") == (3, "inactive\n", "")
    assert "Active: inactive (dead)" in sh.run("systemctl status tomcat9")[1]
    assert sh.run("sudo systemctl restart tomcat9")[0] == 0
    assert sh.net.tomcat_running


def test_systemctl_unknown_unit() -> None:
    sh = Shell()
    assert sh.run("sudo systemctl start tomcat9") == (
        5,
        "",
        "Failed to start tomcat9.service: Unit tomcat9.service not found.\n",
    )
    assert sh.run("sudo systemctl enable tomcat9") == (
        1,
        "",
        "Failed to enable unit: Unit file tomcat9.service does not exist.\n",
    )
    assert sh.run("systemctl is-active tomcat9") == (3, "inactive\n", "")
    status, out, err = sh.run("systemctl is-enabled tomcat9")
    assert (status, out) == (1, "")
    assert "Failed to get unit file state for tomcat9.service" in err


def test_systemctl_start_needs_root() -> None:
    sh = Shell()
    sh.install_tomcat()
    status, _, err = sh.run("systemctl restart tomcat9")
    assert status == 1
    assert "Interactive authentication required" in err


def test_reinstall_is_idempotent_and_quick() -> None:
    sh = Shell()
    sh.install_tomcat()
    started = time.monotonic()
    status, out, _ = sh.run(f"{NONINTERACTIVE} apt-get install -y tomcat9")
    assert status == 0
    assert "tomcat9 is already the newest version (9.0.58-1ubuntu0.1)." in out
    assert "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded." in out
    assert time.monotonic() - started < 0.5
    assert sh.net.starts == 1


def test_install_without_yes_aborts() -> None:
    sh = Shell()
    sh.run("sudo apt-get update")
    status, out, _ = sh.run(f"{NONINTERACTIVE} apt-get install tomcat9")
    assert status == 1
    assert "The following NEW packages will be installed:" in out
    assert out.endswith("Do you want to continue? [Y/n] Abort.\n")
    assert "tomcat9" not in sh.host.packages
    assert not sh.net.tomcat_running


def test_debconf_warnings_without_noninteractive_frontend() -> None:
    sh = Shell()
    sh.run("sudo apt-get update")
    status, _, err = sh.run("sudo apt-get install -y tomcat9")
    assert status == 0
    assert "debconf: unable to initialize frontend: Dialog" in err
    assert "debconf: falling back to frontend: Readline" in err
    assert "tomcat9" in sh.host.packages
    # DEBIAN_FRONTEND set before sudo is dropped by sudo's env_reset
    sh2 = Shell()
    sh2.run("sudo apt-get update")
    _, _, err = sh2.run("sudo apt-get install -y curl mysql-client", {"DEBIAN_FRONTEND": "x"})
    assert "debconf" in err


def test_install_failure_fault_installs_nothing() -> None:
    sh = Shell(make_host(install_failure=1.0))
    sh.run("sudo apt-get update")
    status, _, err = sh.run(f"{NONINTERACTIVE} apt-get install -y tomcat9")
    assert status == 100
    assert "E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/" in err
    assert "tomcat9_9.0.58-1ubuntu0.1_all.deb  Connection failed [IP: 185.125.190.39 80]" in err
    assert "E: Unable to fetch some archives" in err
    assert sh.host.packages == set()
    assert not sh.host.installing
    assert not sh.net.tomcat_running


def test_dpkg_status() -> None:
    sh = Shell()
    status, _, err = sh.run("dpkg -s tomcat9")
    assert status == 1
    assert "package 'tomcat9' is not installed and no information is available" in err
    sh.install_tomcat()
    status, out, _ = sh.run("dpkg -s tomcat9")
    assert status == 0
    assert "Status: install ok installed" in out
    assert sh.run("dpkg-query -W -f='${Status}' tomcat9") == (0, "install ok installed", "")


# -- curl and wget -----------------------------------------------------------------------


def test_curl_success_and_write_out() -> None:
    sh = Shell()
    sh.install_tomcat()
    status, out, _ = sh.run(f"curl -s {TOMCAT_URL}")
    assert (status, out) == (0, "<html>It works!</html>\n")
    status, out, _ = sh.run(f"curl -s -o /dev/null -w '%{{http_code}}' {TOMCAT_URL}")
    assert (status, out) == (0, "200")
    status, out, _ = sh.run(
        "curl -fsS -m 5 -o /dev/null -w '%{http_code}\\n' http://web.sandbox.example.com:8080/"
    )
    assert (status, out) == (0, "200\n")


def test_curl_fail_on_404() -> None:
    sh = Shell()
    sh.install_tomcat()
    status, out, err = sh.run(f"curl -sSf {TOMCAT_URL}missing")
    assert (status, out) == (22, "")
    assert err == "curl: (22) The requested URL returned error: 404\n"
    assert sh.run(f"curl -sf {TOMCAT_URL}missing") == (22, "", "")
    assert sh.run(f"curl -s {TOMCAT_URL}missing")[0] == 0


def test_curl_connection_errors() -> None:
    sh = Shell()
    status, _, err = sh.run("curl -sS http://nowhere.example.com/")
    assert status == 6
    assert err == "curl: (6) Could not resolve host: nowhere.example.com\n"
    status, _, err = sh.run(f"curl -sS {TOMCAT_URL}")
    assert status == 7
    assert "Failed to connect to 127.100.0.5 port 8080 after" in err
    assert "Connection refused" in err
    status, out, _ = sh.run(f"curl -s -w '%{{http_code}}' {TOMCAT_URL}")
    assert (status, out) == (7, "000")
    sh.install_tomcat()
    assert sh.run("curl -sS https://127.100.0.5:8443/")[0] == 60
    assert sh.run("curl -sSk https://127.100.0.5:8443/")[0] == 0


def test_wget_stdout_and_errors() -> None:
    sh = Shell()
    status, _, err = sh.run("wget -q -O - http://nowhere.example.com/")
    assert (status, err) == (4, "")
    status, _, err = sh.run("wget http://nowhere.example.com/")
    assert status == 4
    assert "wget: unable to resolve host address" in err
    assert sh.run(f"wget -qO- {TOMCAT_URL}")[0] == 4
    sh.install_tomcat()
    assert sh.run(f"wget -qO- {TOMCAT_URL}") == (0, "<html>It works!</html>\n", "")
    assert sh.run(f"wget -q -O - {TOMCAT_URL}") == (0, "<html>It works!</html>\n", "")
    status, out, err = sh.run(f"wget {TOMCAT_URL}")
    assert (status, out) == (0, "")
    assert "saved [" in err
    status, _, err = sh.run(f"wget -O /dev/null {TOMCAT_URL}missing")
    assert status == 8
    assert "ERROR 404: Not Found." in err


# -- mysql ----------------------------------------------------------------------------------


def test_mysql_not_installed() -> None:
    status, _, err = Shell().run("mysql -h db.rds.example.com -u admin -ps3cret -e 'SELECT 1'")
    assert status == 127
    assert err == "bash: line 1: mysql: command not found\n"


def test_mysql_select_and_errors() -> None:
    sh = Shell()
    sh.run("sudo apt-get update")
    assert sh.run(f"{NONINTERACTIVE} apt-get install -y mysql-client")[0] == 0
    status, out, err = sh.run("mysql -h db.rds.example.com -u admin -ps3cret -e 'SELECT 1'")
    assert (status, out) == (0, "1\n1\n")
    assert "Using a password on the command line interface can be insecure" in err
    status, out, _ = sh.run(
        "mysql --host=db.rds.example.com --port=3306 --user=admin --password=s3cret "
        "-N -B -e 'select version();'"
    )
    assert (status, out) == (0, "8.0.35\n")
    status, out, err = sh.run("mysql -h db.rds.example.com -u admin -pwrong -e 'SELECT 1'")
    assert (status, out) == (1, "")
    assert "ERROR 1045 (28000): Access denied for user 'admin'@'10.0.1.23'" in err
    status, _, err = sh.run("mysql -h db.rds.example.com -u admin -p -e 'SELECT 1'")
    assert status == 1
    assert "(using password: NO)" in err
    status, _, err = sh.run("mysql -h db.rds.example.com -u admin -ps3cret -e 'DROP TABLE x'")
    assert status == 1
    assert "ERROR 1064 (42000)" in err


def _mysql_shell() -> Shell:
    sh = Shell()
    sh.run("sudo apt-get update")
    assert sh.run(f"{NONINTERACTIVE} apt-get install -y mysql-client")[0] == 0
    return sh


SELECT_1 = "-h db.rds.example.com -u admin -N -e 'SELECT 1'"
STDIN_MYSQL = f"mysql --defaults-extra-file=/dev/stdin {SELECT_1}"


def test_mysql_password_from_env_as_before() -> None:
    sh = _mysql_shell()
    status, out, err = sh.run(f"MYSQL_PWD=s3cret mysql {SELECT_1}")
    assert (status, out, err) == (0, "1\n", "")
    status, _, err = sh.run(f"MYSQL_PWD=wrong mysql {SELECT_1}")
    assert status == 1
    assert (
        "ERROR 1045 (28000): Access denied for user 'admin'@'10.0.1.23' (using password: YES)"
        in err
    )


def test_mysql_reads_its_password_from_an_option_file_on_stdin() -> None:
    sh = _mysql_shell()
    status, out, err = sh.run(STDIN_MYSQL, stdin="[client]\npassword=s3cret\n")
    assert (status, out, err) == (0, "1\n", "")  # no warning: nothing on the command line
    status, out, err = sh.run(
        "mysql --defaults-file=/dev/fd/0 -N -e 'SELECT 1'",
        stdin="# generated\n[mysql]\nhost = db.rds.example.com\n[client]\n"
        'user=admin\npassword = "s3cret"  # quoted\n[mysqldump]\npassword=other\n',
    )
    assert (status, out, err) == (0, "1\n", "")
    # the option file beats MYSQL_PWD; the command line beats the option file
    status, out, _ = sh.run(STDIN_MYSQL, {"MYSQL_PWD": "wrong"}, "[client]\npassword=s3cret\n")
    assert (status, out) == (0, "1\n")
    status, _, err = sh.run(STDIN_MYSQL + " -pwrong", stdin="[client]\npassword=s3cret\n")
    assert status == 1 and "ERROR 1045" in err


def test_mysql_wrong_or_missing_password_on_stdin_is_refused() -> None:
    sh = _mysql_shell()
    status, out, err = sh.run(STDIN_MYSQL, stdin="[client]\npassword=wrong\n")
    assert (status, out) == (1, "")
    assert err == (
        "ERROR 1045 (28000): Access denied for user 'admin'@'10.0.1.23' (using password: YES)\n"
    )
    # nothing sent: the read sees EOF at once and the client logs in without a password
    started = time.monotonic()
    status, _, err = sh.run(STDIN_MYSQL)
    assert status == 1 and "(using password: NO)" in err
    assert time.monotonic() - started < 2
    # an unquoted '#' starts a comment, as in the real client
    status, _, err = sh.run(STDIN_MYSQL, stdin="[client]\npassword=s3c#ret\n")
    assert status == 1 and "(using password: YES)" in err
    # stdin is read once: the second client on the line gets EOF
    status, out, err = sh.run(
        f"{STDIN_MYSQL} && {STDIN_MYSQL}", stdin="[client]\npassword=s3cret\n"
    )
    assert (status, out) == (1, "1\n") and "(using password: NO)" in err


def test_mysql_option_file_rules_of_the_real_client() -> None:
    sh = _mysql_shell()
    # --defaults-extra-file counts only as the first option
    status, _, err = sh.run(f"mysql {SELECT_1} --defaults-extra-file=/dev/stdin", stdin="x")
    assert (status, err) == (
        7,
        "mysql: [ERROR] unknown variable 'defaults-extra-file=/dev/stdin'.\n",
    )
    status, _, err = sh.run(f"mysql --defaults-file=/root/.my.cnf {SELECT_1}")
    assert status == 1
    assert err == (
        "mysql: [ERROR] Could not open required defaults file: /root/.my.cnf\n"
        "mysql: [ERROR] Fatal error in defaults handling. Program aborted!\n"
    )
    status, _, err = sh.run(STDIN_MYSQL, stdin="password=s3cret\n")
    assert status == 1
    assert err.startswith(
        "mysql: [ERROR] Found option without preceding group in config file /dev/stdin at line 1."
    )
    # through sudo and bash -c the command still reads the exec's stdin
    status, out, _ = sh.run(f'sudo bash -c "{STDIN_MYSQL}"', stdin="[client]\npassword=s3cret\n")
    assert (status, out) == (0, "1\n")


def test_sshd_stdin_reader_reads_to_eof_and_never_hangs(monkeypatch: Any) -> None:
    """The SSH server's stdin reader: everything up to the client's EOF; a client that sends
    neither data nor EOF is taken as sending nothing after STDIN_IDLE_S."""
    from sandbox import sshd

    class Reader:
        def __init__(self, chunks: list[str], eof: bool) -> None:
            self.chunks, self.eof = chunks, eof

        async def read(self, n: int) -> str:
            if self.chunks:
                return self.chunks.pop(0)
            if self.eof:
                return ""
            await asyncio.sleep(3600)  # a client that never closes stdin
            return ""

    class Process:
        def __init__(self, reader: Reader) -> None:
            self.stdin = reader

    monkeypatch.setattr(sshd, "STDIN_IDLE_S", 0.05)
    sent = Process(Reader(["[client]\n", "password=s3cret\n"], eof=True))
    assert asyncio.run(sshd._read_stdin(sent)) == "[client]\npassword=s3cret\n"  # type: ignore[arg-type]
    silent = Process(Reader([], eof=False))
    started = time.monotonic()
    assert asyncio.run(sshd._read_stdin(silent)) == ""  # type: ignore[arg-type]
    assert time.monotonic() - started < 1
