"""The packages a host can have: a tiny jammy archive, and dpkg/dpkg-query/java that
report on what is installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..hoststate import HostState
from .core import _Ctx, _getopt

# --------------------------------------------------------------------------------------
# Packages: a tiny jammy archive


@dataclass(frozen=True)
class _Pkg:
    version: str
    section: str  # component/section, e.g. "universe/java"
    arch: str  # "all" or "amd64"
    kb: int  # download size
    depends: str = ""  # space-separated package names
    source: str = ""  # source package, when it differs from the name
    unit: str | None = None  # systemd unit it ships; Debian enables+starts it on install

    @property
    def component(self) -> str:
        return self.section.split("/")[0]

    @property
    def file_version(self) -> str:
        return self.version.split(":", 1)[-1]  # .deb names drop the epoch

    def pool_path(self, name: str) -> str:
        src = self.source or name
        prefix = src[:4] if src.startswith("lib") else src[:1]
        return f"pool/{self.component}/{prefix}/{src}/{name}_{self.file_version}_{self.arch}.deb"

    def index_line(self, name: str) -> str:
        """How apt names the download: mirror, pocket/component, arch, package, version."""
        pocket = "jammy-updates" if "ubuntu0" in self.version else "jammy"
        return f"{_MIRROR} {pocket}/{self.component} amd64 {name} {self.arch} {self.version}"


_T9 = "9.0.58-1ubuntu0.1"
_J11 = "11.0.21+9-0ubuntu1~22.04"
_J17 = "17.0.9+9-1~22.04"
_MY = "8.0.35-0ubuntu0.22.04.1"
_JC = "2:1.11-72build2"
# A tiny jammy archive. The cloud image ships curl, wget, ca-certificates, ssh, cloud-init.
PACKAGES: dict[str, _Pkg] = {
    "tomcat9": _Pkg(_T9, "universe/java", "all", 47, "tomcat9-common", unit="tomcat9"),
    "tomcat9-common": _Pkg(
        _T9, "universe/java", "all", 70, "libtomcat9-java default-jre-headless", "tomcat9"
    ),
    "libtomcat9-java": _Pkg(_T9, "universe/java", "all", 6080, "libecj-java", "tomcat9"),
    "tomcat9-admin": _Pkg(_T9, "universe/java", "all", 46, "tomcat9-common", "tomcat9"),
    "tomcat9-user": _Pkg(_T9, "universe/java", "all", 38, "tomcat9-common", "tomcat9"),
    "tomcat9-examples": _Pkg(_T9, "universe/java", "all", 210, "tomcat9-common", "tomcat9"),
    "libecj-java": _Pkg("3.16.0-1", "universe/java", "all", 2424, "", "ecj"),
    "default-jre-headless": _Pkg(
        _JC, "main/java", "amd64", 3, "openjdk-11-jre-headless", "java-common"
    ),
    "openjdk-11-jre-headless": _Pkg(
        _J11, "main/java", "amd64", 42460, "ca-certificates-java", "openjdk-lts"
    ),
    "ca-certificates-java": _Pkg("20190909ubuntu1.2", "main/java", "all", 12),
    "default-jdk-headless": _Pkg(
        _JC, "main/java", "amd64", 1, "default-jre-headless openjdk-11-jdk-headless", "java-common"
    ),
    "openjdk-11-jdk-headless": _Pkg(
        _J11, "main/java", "amd64", 73470, "openjdk-11-jre-headless", "openjdk-lts"
    ),
    "openjdk-17-jre-headless": _Pkg(
        _J17, "main/java", "amd64", 48350, "ca-certificates-java", "openjdk-17"
    ),
    "openjdk-17-jdk-headless": _Pkg(
        _J17, "main/java", "amd64", 71220, "openjdk-17-jre-headless", "openjdk-17"
    ),
    "mysql-client": _Pkg(_MY, "main/database", "all", 9, "mysql-client-8.0", "mysql-8.0"),
    "mysql-client-8.0": _Pkg(
        _MY, "main/database", "amd64", 22, "mysql-client-core-8.0", "mysql-8.0"
    ),
    "mysql-client-core-8.0": _Pkg(_MY, "main/database", "amd64", 2710, "", "mysql-8.0"),
    "default-mysql-client": _Pkg(
        "1.0.8", "main/database", "all", 3, "mysql-client-8.0", "mysql-defaults"
    ),
    "mariadb-client": _Pkg(
        "1:10.6.16-0ubuntu0.22.04.1", "universe/database", "all", 11, "", "mariadb-10.6"
    ),
    "mysql-server": _Pkg(_MY, "main/database", "all", 9, "mysql-client-8.0", "mysql-8.0", "mysql"),
    "nginx": _Pkg("1.18.0-6ubuntu14.4", "main/httpd", "amd64", 4, unit="nginx"),
    "unzip": _Pkg("6.0-26ubuntu3.1", "main/utils", "amd64", 175),
    "zip": _Pkg("3.0-12build2", "main/utils", "amd64", 176),
    "jq": _Pkg("1.6-2.1ubuntu3", "universe/utils", "amd64", 52, "libjq1"),
    "libjq1": _Pkg("1.6-2.1ubuntu3", "universe/libs", "amd64", 133, "", "jq"),
    "awscli": _Pkg("1.22.34-1", "universe/admin", "all", 1400),
    "curl": _Pkg("7.81.0-1ubuntu1.15", "main/web", "amd64", 194),
    "wget": _Pkg("1.21.2-2ubuntu1", "main/web", "amd64", 339),
    "ca-certificates": _Pkg("20230311ubuntu0.22.04.1", "main/misc", "all", 155),
    "openssh-server": _Pkg("1:8.9p1-3ubuntu0.6", "main/net", "amd64", 435, unit="ssh"),
    "cloud-init": _Pkg("23.3.3-0ubuntu0~22.04.1", "main/admin", "all", 520, unit="cloud-init"),
}
_DESCRIPTIONS = {  # for dpkg -s / -l; others get a generic line
    "tomcat9": "Apache Tomcat 9 - Servlet and JSP engine",
    "tomcat9-admin": "Apache Tomcat 9 - Servlet and JSP engine -- admin web applications",
    "default-jre-headless": "Standard Java or Java compatible Runtime (headless)",
    "openjdk-11-jre-headless": "OpenJDK Java runtime, using Hotspot JIT (headless)",
    "openjdk-17-jre-headless": "OpenJDK Java runtime, using Hotspot JIT (headless)",
    "mysql-client": "MySQL database client (metapackage depending on the latest version)",
    "curl": "command line tool for transferring data with URL syntax",
    "wget": "retrieves files from the web",
}


def _description(name: str) -> str:
    return _DESCRIPTIONS.get(name, f"{name} (Ubuntu jammy package)")


BASE_PACKAGES = frozenset({"curl", "wget", "ca-certificates", "openssh-server", "cloud-init"})
BASE_UNITS = frozenset({"ssh", "cloud-init", "cron", "systemd-journald", "snapd"})

_MYSQL_CLIENTS = (
    "mysql-client",
    "mysql-client-8.0",
    "mysql-client-core-8.0",
    "default-mysql-client",
    "mariadb-client",
    "mariadb105",  # Amazon Linux 2023's (sandbox/shell/rpms.py)
)
_JAVA = ("openjdk-11-jre-headless", "openjdk-17-jre-headless", "java-17-amazon-corretto-headless")
_COMMAND_PACKAGES: dict[str, tuple[str, ...]] = {"mysql": _MYSQL_CLIENTS, "java": _JAVA}

_MIRROR = "http://archive.ubuntu.com/ubuntu"
_MIRROR_IP = "185.125.190.39"
_CLOUD_INIT_PID = 1432


def _installed(host: HostState, name: str) -> bool:
    return name in host.packages or name in BASE_PACKAGES


def closure(
    names: list[str], requires: Callable[[str], str], installed: Callable[[str], bool]
) -> list[str]:
    """`names` plus what they require (`requires(name)`: space-separated names) that is not
    `installed` yet, requirements first: the order apt and dnf install them in."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen or installed(name):
            return
        for dep in requires(name).split():
            visit(dep)
        seen.append(name)

    for name in names:
        visit(name)
    return seen


def _closure(host: HostState, names: list[str]) -> list[str]:
    """`names` plus their not-yet-installed dependencies, dependencies first."""
    return closure(names, lambda n: PACKAGES[n].depends, lambda n: _installed(host, n))


def _wrap(names: list[str]) -> str:
    lines, line = [], " "
    for name in names:
        if len(line) + len(name) + 1 > 79:
            lines.append(line)
            line = " "
        line += " " + name
    lines.append(line)
    return "\n".join(lines) + "\n"


def _size(kb: float) -> str:
    return f"{kb / 1000:.1f} MB" if kb >= 1000 else f"{kb:.0f} kB"


# --------------------------------------------------------------------------------------
# dpkg, java


def _dpkg_status(name: str) -> str:
    pkg = PACKAGES[name]
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
        f"Section: {pkg.section.split('/')[-1]}\nInstalled-Size: {pkg.kb * 4}\n"
        "Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>\n"
        f"Architecture: {pkg.arch}\nVersion: {pkg.version}\n"
        + (f"Depends: {', '.join(pkg.depends.split())}\n" if pkg.depends else "")
        + f"Description: {_description(name)}\n"
    )


async def _dpkg(args: list[str], ctx: _Ctx) -> int:
    if args[:1] in (["-s"], ["--status"]):
        return await _dpkg_query(["-s", *args[1:]], ctx)
    if args[:1] in (["-l"], ["--list"]):
        return await _dpkg_query(["-l", *args[1:]], ctx)
    ctx.err(
        "dpkg: error: need an action option\n\nType dpkg --help for help about installing "
        "and deinstalling packages [*];\nUse 'apt' or 'aptitude' for user-friendly package "
        "management;\n"
    )
    return 2


_DPKG_FIELD = re.compile(r"\$\{([\w:-]+)(?:;-?\d+)?\}")


async def _dpkg_query(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, "f", {"--showformat"})
    if isinstance(parsed, str) or not parsed[0]:
        ctx.err("dpkg-query: error: need an action option\n")
        return 2
    opts, names = parsed
    actions = [k for k, _ in opts if k in ("-s", "--status", "-W", "--show", "-l", "--list")]
    fmt = next((v for k, v in opts if k in ("-f", "--showformat")), "${Package}\t${Version}\n")
    fmt = fmt.removeprefix("=")  # `-f='${Status}'` reaches us as -f=${Status}
    action = actions[0] if actions else ""
    host = ctx.host
    if action in ("-l", "--list") and not names:
        names = sorted(host.packages | BASE_PACKAGES)
    status = 0
    rows: list[str] = []
    for name in names:
        if name not in PACKAGES or not _installed(host, name):
            if action in ("-s", "--status"):
                ctx.err(
                    f"dpkg-query: package '{name}' is not installed and no information "
                    "is available\nUse dpkg --info (= dpkg-deb --info) to examine archive "
                    "files.\n"
                )
            else:
                ctx.err(f"dpkg-query: no packages found matching {name}\n")
            status = 1
            continue
        pkg = PACKAGES[name]
        if action in ("-s", "--status"):
            ctx.out(_dpkg_status(name) + ("\n" if len(names) > 1 else ""))
        elif action in ("-W", "--show"):
            fields = {
                "Package": name,
                "Version": pkg.version,
                "Status": "install ok installed",
                "db:Status-Abbrev": "ii ",
                "Architecture": pkg.arch,
                "binary:Package": name,
            }
            text = fmt
            for key, value in fields.items():
                text = text.replace("${" + key + "}", value)
            text = _DPKG_FIELD.sub("", text)  # fields the sandbox does not know
            ctx.out(text.replace("\\n", "\n").replace("\\t", "\t"))
        else:
            rows.append(f"ii  {name:<22} {pkg.version:<27} {pkg.arch:<12} {_description(name)}\n")
    if rows:
        ctx.out(
            "Desired=Unknown/Install/Remove/Purge/Hold\n"
            "| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend\n"
            "|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)\n"
            f"||/ {'Name':<22} {'Version':<27} {'Architecture':<12} Description\n"
            f"+++-{'=' * 22}-{'=' * 27}-{'=' * 12}-{'=' * 40}\n" + "".join(rows)
        )
    return status


async def _java(args: list[str], ctx: _Ctx) -> int:
    if not any(a in ("-version", "--version") for a in args):
        ctx.err("Usage: java [options] <mainclass> [args...]\n")
        return 1
    if _installed(ctx.host, "openjdk-17-jre-headless"):
        build, date = "17.0.9+9-Ubuntu-122.04", '"17.0.9" 2023-10-17'
    else:
        build, date = "11.0.21+9-post-Ubuntu-0ubuntu122.04", '"11.0.21" 2023-10-17'
    sink = ctx.out if args[0] == "--version" else ctx.err
    sink(
        f"openjdk version {date}\nOpenJDK Runtime Environment (build {build})\n"
        f"OpenJDK 64-Bit Server VM (build {build}, mixed mode, sharing)\n"
    )
    return 0
