"""The install recipes, as data: one per operating system the hosts can run.

A recipe says which image the deploy launches (the SSM public parameter naming the
region's current AMI), who logs in over SSH, which Tomcat package and service it installs
and the commands that do it (the install steps, the probe that finds a host already
serving, and how the jumphost gets a MySQL client). `TOMCAT_FLEET_RECIPE` picks one;
an explicit `TOMCAT_FLEET_AMI_ID`, `..._SSH_USER`, `..._INSTALL_STEPS` or
`..._PROBE_COMMAND` still wins over the recipe's (docs/recipes.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from blocks.install_steps import InstallStep

RecipeName = Literal["ubuntu-22.04", "al2023"]
DEFAULT_RECIPE: RecipeName = "ubuntu-22.04"

_TRANSIENT_APT = [
    "Could not get lock",
    "Unable to acquire the dpkg frontend lock",
    "Failed to fetch",
    "Temporary failure resolving",
    "Unable to fetch some archives",
]
# dnf waits for its own lock; what fails is a mirror or the metadata download
_TRANSIENT_DNF = [
    "Error downloading packages",
    "Failed to download metadata",
    "Cannot download repomd.xml",
    "Curl error",
    "Could not resolve host",
]
_VERIFY = InstallStep(
    name="verify",
    command="curl -fsS -o /dev/null --max-time 10 http://localhost:8080/",
    transient_markers=["Connection refused", "timed out"],
)
_CLOUD_INIT = InstallStep(name="cloud-init", command="cloud-init status --wait", timeout_s=900)


def _probe(service: str) -> str:
    return (
        f"systemctl is-active --quiet {service} && "
        "curl -fsS -o /dev/null --max-time 5 http://localhost:8080/"
    )


class Recipe(BaseModel):
    """One operating system's way to a host serving Tomcat on port 8080."""

    model_config = ConfigDict(frozen=True)

    name: RecipeName
    description: str
    ssh_user: str  # the image's default login user
    ami_parameter: str  # SSM public parameter: the region's current image id
    package_manager: Literal["apt", "dnf"]
    tomcat_package: str
    tomcat_service: str
    install_steps: tuple[InstallStep, ...]
    probe_command: str
    mysql_client_check: str  # exit 0: the jumphost already has a MySQL client
    # (name, command): the jumphost's client install, each retried on any failure
    mysql_client_steps: tuple[tuple[str, str], ...]


UBUNTU_2204 = Recipe(
    name="ubuntu-22.04",
    description="Ubuntu 22.04 LTS (Canonical's image), tomcat9 from apt",
    ssh_user="ubuntu",
    ami_parameter=(
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
    ),
    package_manager="apt",
    tomcat_package="tomcat9",
    tomcat_service="tomcat9",
    install_steps=(
        _CLOUD_INIT,
        InstallStep(
            name="apt-update",
            command="sudo apt-get -o DPkg::Lock::Timeout=120 update -q",
            transient_markers=_TRANSIENT_APT,
        ),
        # Debian's tomcat9 ships the ROOT webapp and starts the service on install
        InstallStep(
            name="install",
            command=(
                "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 "
                "install -y -q tomcat9"
            ),
            transient_markers=_TRANSIENT_APT,
        ),
        InstallStep(name="enable-start", command="sudo systemctl enable --now tomcat9"),
        _VERIFY,
    ),
    probe_command=_probe("tomcat9"),
    mysql_client_check="dpkg -s mysql-client",
    mysql_client_steps=(
        ("apt-get update", "sudo apt-get -o DPkg::Lock::Timeout=120 update -q"),
        (
            "install mysql-client",
            "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 "
            "install -y -q mysql-client",
        ),
    ),
)

AL2023 = Recipe(
    name="al2023",
    description="Amazon Linux 2023 (Amazon's image), tomcat10 from dnf",
    ssh_user="ec2-user",
    ami_parameter="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    package_manager="dnf",
    tomcat_package="tomcat10",
    tomcat_service="tomcat10",
    install_steps=(
        _CLOUD_INIT,
        # tomcat10 alone has no ROOT webapp (localhost:8080/ answers 404): tomcat10-webapps
        # brings it, as Debian's tomcat9 does; RPM packages leave the service stopped
        InstallStep(
            name="install",
            command="sudo dnf install -y -q tomcat10 tomcat10-webapps",
            transient_markers=_TRANSIENT_DNF,
        ),
        InstallStep(name="enable-start", command="sudo systemctl enable --now tomcat10"),
        _VERIFY,
    ),
    probe_command=_probe("tomcat10"),
    mysql_client_check="rpm -q mariadb105",
    mysql_client_steps=(("install mariadb105", "sudo dnf install -y -q mariadb105"),),
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (UBUNTU_2204, AL2023)}


def recipe(name: str) -> Recipe:
    """The recipe called `name`; ValueError naming the allowed ones."""
    try:
        return RECIPES[name]
    except KeyError:
        allowed = ", ".join(RECIPES)
        raise ValueError(f"recipe={name!r} is not one of {allowed}") from None


def ami_parameters() -> list[str]:
    """Every recipe's AMI parameter (the shipped IAM policy may read each)."""
    return [r.ami_parameter for r in RECIPES.values()]
