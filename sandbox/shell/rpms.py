"""The packages an Amazon Linux 2023 host can have: a tiny AL2023 repository, and `rpm -q`
reporting on what is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hoststate import HostState
from .core import _Ctx
from .packages import closure


@dataclass(frozen=True)
class _Rpm:
    version: str  # [epoch:]version-release
    arch: str  # "noarch" or "x86_64"
    kb: int  # download size
    requires: str = ""  # space-separated package names
    unit: str | None = None  # systemd unit it ships (RPM packages leave it stopped)

    @property
    def evr(self) -> str:
        return self.version

    @property
    def nvr_version(self) -> str:
        """version-release without the epoch (how rpm -q prints it)."""
        return self.version.split(":", 1)[-1]

    def nevra(self, name: str) -> str:
        return f"{name}-{self.nvr_version}.{self.arch}"


_T10 = "1:10.1.28-1.amzn2023.0.1"
_CORRETTO = "1:17.0.13+11-1.amzn2023.1"
_MDB = "3:10.5.25-1.amzn2023.0.1"
# A tiny AL2023 repository. The image ships curl-minimal, cloud-init, openssh-server.
RPMS: dict[str, _Rpm] = {
    "tomcat10": _Rpm(
        _T10, "noarch", 98, "tomcat10-lib java-17-amazon-corretto-headless", unit="tomcat10"
    ),
    "tomcat10-lib": _Rpm(
        _T10,
        "noarch",
        6130,
        "tomcat10-jsp-3.1-api tomcat10-servlet-6.0-api tomcat10-el-5.0-api",
    ),
    "tomcat10-jsp-3.1-api": _Rpm(_T10, "noarch", 51, "tomcat10-el-5.0-api"),
    "tomcat10-servlet-6.0-api": _Rpm(_T10, "noarch", 307),
    "tomcat10-el-5.0-api": _Rpm(_T10, "noarch", 107),
    # the ROOT (welcome page) and examples web applications
    "tomcat10-webapps": _Rpm(_T10, "noarch", 297, "tomcat10"),
    "tomcat10-admin-webapps": _Rpm(_T10, "noarch", 110, "tomcat10"),
    "java-17-amazon-corretto-headless": _Rpm(_CORRETTO, "x86_64", 91430),
    "mariadb105": _Rpm(_MDB, "x86_64", 1730, "mariadb105-common mariadb-connector-c"),
    "mariadb105-common": _Rpm(_MDB, "x86_64", 31),
    "mariadb-connector-c": _Rpm("3.3.10-1.amzn2023.0.1", "x86_64", 204),
    "nginx": _Rpm("1:1.24.0-1.amzn2023.0.4", "x86_64", 33, unit="nginx"),
    "jq": _Rpm("1.7.1-49.amzn2023.0.2", "x86_64", 182),
    "unzip": _Rpm("6.0-57.amzn2023.0.2", "x86_64", 182),
    "wget": _Rpm("1.21.3-1.amzn2023.0.4", "x86_64", 781),
}
BASE_RPMS = frozenset({"curl-minimal", "cloud-init", "openssh-server", "dnf", "rpm"})
ROOT_WEBAPP = "tomcat10-webapps"


def rpm_installed(host: HostState, name: str) -> bool:
    return name in host.packages or name in BASE_RPMS


def rpm_closure(host: HostState, names: list[str]) -> list[str]:
    """`names` plus what they require and the host lacks, requirements first."""
    return closure(names, lambda n: RPMS[n].requires, lambda n: rpm_installed(host, n))


def rpm_size(kb: float) -> str:
    """dnf's sizes: `98 k`, `6.0 M`."""
    return f"{kb / 1024:.1f} M" if kb >= 1024 else f"{kb:.0f} k"


async def _rpm(args: list[str], ctx: _Ctx) -> int:
    """`rpm -q NAME...` and `rpm -qa`; the other modes are refused."""
    if not args or not args[0].startswith("-q"):
        ctx.err("rpm: only the query mode (-q) is emulated\n")
        return 1
    if "a" in args[0][2:] or "--all" in args:
        for name in sorted(host_rpms(ctx.host)):
            ctx.out(RPMS[name].nevra(name) + "\n")
        return 0
    names = [a for a in args[1:] if not a.startswith("-")]
    if not names:
        ctx.err("rpm: no arguments given for query\n")
        return 1
    missing = 0
    for name in names:
        if name in RPMS and rpm_installed(ctx.host, name):
            ctx.out(RPMS[name].nevra(name) + "\n")
        else:
            ctx.out(f"package {name} is not installed\n")
            missing += 1
    return min(missing, 255)


def host_rpms(host: HostState) -> set[str]:
    return {n for n in host.packages if n in RPMS}
