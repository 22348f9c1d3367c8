"""The emulated shell of a host launched from the Amazon Linux 2023 image: dnf, rpm, no apt,
ec2-user, tomcat10 (left stopped by dnf, started by systemctl), and the recipe's steps."""

from __future__ import annotations

import dataclasses

from blocks.recipes import AL2023
from sandbox.shell import serves_root
from tests.unit.sandbox.test_shell import Shell, make_host


def al2023_shell(**kw: float) -> Shell:
    host = dataclasses.replace(make_host(**kw), os="al2023", login_user="ec2-user")
    return Shell(host)


def test_apt_is_not_there() -> None:
    sh = al2023_shell()
    assert sh.run("sudo apt-get update") == (1, "", "sudo: apt-get: command not found\n")
    status, out, err = sh.run("apt-get install -y tomcat9")
    assert (status, out, err) == (127, "", "bash: line 1: apt-get: command not found\n")
    assert sh.run("dpkg -s tomcat9")[0] == 127


def test_login_user_is_ec2_user() -> None:
    sh = al2023_shell()
    assert sh.run("whoami") == (0, "ec2-user\n", "")
    assert sh.run("sudo whoami") == (0, "root\n", "")
    assert sh.run("sudo -u ubuntu whoami")[0] == 1  # no such user on Amazon Linux


def test_dnf_needs_root() -> None:
    status, _, err = al2023_shell().run("dnf install -y tomcat10")
    assert status == 1
    assert err.startswith("Error: This command has to be run with superuser privileges")


def test_dnf_unknown_package_fails_like_dnf() -> None:
    sh = al2023_shell()
    status, _, err = sh.run("sudo dnf install -y tomcat9 tomcat10")
    assert status == 1
    assert err == ("No match for argument: tomcat9\nError: Unable to find a match: tomcat9\n")
    assert not sh.host.packages


def test_dnf_without_yes_aborts() -> None:
    sh = al2023_shell()
    status, out, err = sh.run("sudo dnf install tomcat10")
    assert status == 1
    assert out.rstrip().endswith("Is this ok [y/N]:") and err == "Operation aborted.\n"
    assert not sh.host.packages


def test_dnf_install_brings_requirements_and_leaves_the_service_stopped() -> None:
    sh = al2023_shell()
    status, out, _ = sh.run("sudo dnf install -y tomcat10")
    assert status == 0, out
    assert "Installing dependencies:" in out and out.endswith("Complete!\n")
    assert {"tomcat10", "tomcat10-lib", "java-17-amazon-corretto-headless"} <= sh.host.packages
    assert sh.net.starts == 0  # RPM packages do not start their services
    assert sh.run("systemctl is-active tomcat10") == (3, "inactive\n", "")
    assert sh.run("rpm -q tomcat10") == (0, "tomcat10-10.1.28-1.amzn2023.0.1.noarch\n", "")
    assert sh.run("rpm -q tomcat10-webapps") == (
        1,
        "package tomcat10-webapps is not installed\n",
        "",
    )
    assert not serves_root(sh.host)  # no ROOT webapp yet: localhost:8080/ answers 404
    # a second install has nothing to do
    status, out, err = sh.run("sudo dnf install -y tomcat10")
    assert status == 0 and "Nothing to do." in out and "is already installed" in err


def test_dnf_quiet_prints_nothing() -> None:
    assert al2023_shell().run("sudo dnf install -y -q tomcat10") == (0, "", "")


def test_dnf_unknown_option_and_command() -> None:
    sh = al2023_shell()
    status, _, err = sh.run("sudo dnf install --frobnicate tomcat10")
    assert status == 2 and "unrecognized arguments: --frobnicate" in err
    status, _, err = sh.run("sudo dnf frobnicate")
    assert status == 1 and err.startswith("No such command: frobnicate.")


def test_dnf_mirror_failure_is_a_transient_marker_of_the_recipe() -> None:
    sh = al2023_shell(install_failure=1.0)
    step = next(s for s in AL2023.install_steps if s.name == "install")
    status, _, err = sh.run(step.command)
    assert status == 1 and "Error downloading packages" in err
    assert any(m in err for m in step.transient_markers)


def test_systemctl_enable_now_starts_tomcat10() -> None:
    sh = al2023_shell()
    assert sh.run("sudo systemctl enable --now tomcat10")[0] == 1  # not installed yet
    sh.run("sudo dnf install -y -q tomcat10 tomcat10-webapps")
    status, _, err = sh.run("sudo systemctl enable --now tomcat10")
    assert status == 0 and "/usr/lib/systemd/system/tomcat10.service" in err
    assert sh.net.tomcat_running and serves_root(sh.host)
    assert sh.run("systemctl is-active --quiet tomcat10")[0] == 0


def test_the_recipe_runs_to_the_end() -> None:
    sh = al2023_shell()
    sh.net.names["localhost"] = sh.host.public_ip  # the host's own loopback
    assert sh.run(AL2023.probe_command)[0] != 0
    for step in AL2023.install_steps:
        status, out, err = sh.run(step.command)
        assert status == 0, (step.name, out, err)
    assert sh.run(AL2023.probe_command)[0] == 0


def test_mysql_client_from_dnf() -> None:
    sh = al2023_shell()
    assert sh.run(AL2023.mysql_client_check)[0] == 1
    assert sh.run("mysql --version")[0] == 127
    for _, command in AL2023.mysql_client_steps:
        assert sh.run(command)[0] == 0
    assert sh.run(AL2023.mysql_client_check)[0] == 0
    assert sh.run("command -v mysql") == (0, "/usr/bin/mysql\n", "")


def test_ubuntu_host_has_no_dnf() -> None:
    sh = Shell()
    assert sh.run("dnf install -y tomcat10")[0] == 127
    assert sh.run("whoami") == (0, "ubuntu\n", "")
    assert serves_root(sh.host)
