"""curl and wget: their options, progress output, error messages and exit codes, over the
sandbox network's HTTP fetch.
"""

from __future__ import annotations

import re
import time
from http import HTTPStatus
from urllib.parse import urlsplit

from .core import _LQ, _RQ, _Ctx, _discard, _getopt, _words

# --------------------------------------------------------------------------------------
# Helpers shared by curl and wget


def _seconds(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _split_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


# --------------------------------------------------------------------------------------
# curl

_CURL_SHORT_ARG = "owmHXduAexbcrT"
_CURL_LONG_ARG = _words(
    "--cacert --connect-timeout --cookie --data --data-binary --data-raw --header "
    "--interface --max-time --noproxy --output --proxy --range --referer --request "
    "--resolve --retry --retry-delay --retry-max-time --upload-file --user --user-agent "
    "--write-out"
)
_CURL_LONG_FLAGS = _words(
    "--compressed --fail --fail-with-body --globoff --head --http1.1 --http2 --include "
    "--insecure --ipv4 --ipv6 --location --no-buffer --no-keepalive --no-progress-meter "
    "--remote-name --retry-all-errors --retry-connrefused --show-error --silent --tlsv1.2 "
    "--verbose"
)
_CURL_SHORT_FLAGS = set("sSfkLIiv46gNO#0")
_CURL_HELP = "curl: try 'curl --help' or 'curl --manual' for more information\n"
_CURL_ALIASES = {
    "-s": "--silent",
    "-S": "--show-error",
    "-f": "--fail",
    "-k": "--insecure",
    "-I": "--head",
    "-i": "--include",
    "-o": "--output",
    "-w": "--write-out",
    "-m": "--max-time",
    "-O": "--remote-name",
}


async def _curl(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, _CURL_SHORT_ARG, _CURL_LONG_ARG)
    if isinstance(parsed, str):
        ctx.err(f"curl: option {parsed}: requires parameter\n" + _CURL_HELP)
        return 2
    raw_opts, urls = parsed
    opts: dict[str, str] = {}
    for name, value in raw_opts:
        known = (
            name in _CURL_LONG_ARG
            or name in _CURL_LONG_FLAGS
            or (len(name) == 2 and (name[1] in _CURL_SHORT_FLAGS or name[1] in _CURL_SHORT_ARG))
        )
        if not known:
            ctx.err(f"curl: option {name}: is unknown\n" + _CURL_HELP)
            return 2
        opts[_CURL_ALIASES.get(name, name)] = value
    if not urls:
        ctx.err("curl: no URL specified!\n" + _CURL_HELP)
        return 2
    status = 0
    for url in urls:
        status = await _curl_one(url, opts, ctx) or status
    return status


def _write_out(
    fmt: str, url: str, code: int | None, body: bytes, headers: dict[str, str], elapsed: float
) -> str:
    values = {
        "http_code": f"{code or 0:03d}",
        "response_code": f"{code or 0:03d}",
        "url_effective": url,
        "size_download": str(len(body)),
        "content_type": headers.get("Content-Type", headers.get("content-type", "")),
        "time_total": f"{elapsed:.6f}",
        "time_connect": f"{elapsed / 2:.6f}",
        "exitcode": "0",
    }
    text = re.sub(r"%\{(\w+)\}", lambda m: values.get(m.group(1), ""), fmt)
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def _curl_meter(size: int) -> str:
    pct = 100 if size else 0
    line = f"{pct:3d} {size:5d}  {pct:3d} {size:5d}    0     0  {size * 10:5d}      0 "
    times = "--:--:-- " * 3
    return (
        "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
        "                                 Dload  Upload   Total   Spent    Left  Speed\n"
        f"{line}{times}{size * 10:5d}\n"
    )


async def _curl_one(url: str, opts: dict[str, str], ctx: _Ctx) -> int:
    if "://" not in url:
        url = "http://" + url
    scheme, name, port = _split_url(url)
    silent = "--silent" in opts or "--no-progress-meter" in opts
    show_errors = "--silent" not in opts or "--show-error" in opts
    say = ctx.err if show_errors else _discard

    def write_out(
        code: int | None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        elapsed: float = 0.0,
    ) -> None:
        if "--write-out" in opts:
            ctx.out(_write_out(opts["--write-out"], url, code, body, headers or {}, elapsed))

    if scheme not in ("http", "https"):
        say(f'curl: (1) Protocol "{scheme}" not supported or disabled in libcurl\n')
        write_out(None)
        return 1
    timeouts = [_seconds(opts[k], 10.0) for k in ("--max-time", "--connect-timeout") if k in opts]
    timeout = min(timeouts) if timeouts else 10.0
    started = time.monotonic()
    result = await ctx.net.http_get(
        ctx.host, url, verify_tls="--insecure" not in opts, timeout=timeout
    )
    elapsed = time.monotonic() - started
    if result.error or result.status is None:
        code, message = {
            "resolve": (6, f"Could not resolve host: {name}"),
            "refused": (
                7,
                f"Failed to connect to {name} port {port} after "
                f"{int(elapsed * 1000)} ms: Connection refused",
            ),
            "timeout": (28, f"Connection timed out after {int(timeout * 1000) + 1} milliseconds"),
            "tls": (60, "SSL certificate problem: unable to get local issuer certificate"),
        }.get(result.error or "", (56, "Recv failure: Connection reset by peer"))
        if not silent:
            ctx.err(_curl_meter(0))
        say(f"curl: ({code}) {message}\n")
        if code == 60 and show_errors:
            ctx.err(
                "More details here: https://curl.se/docs/sslcerts.html\n\n"
                "curl failed to verify the legitimacy of the server and therefore could "
                "not\nestablish a secure connection to it. To learn more about this "
                "situation and\nhow to fix it, please visit the web page mentioned "
                "above.\n"
            )
        write_out(None, elapsed=elapsed)
        return code

    status = result.status
    if not silent:  # stdout is not a tty, so curl shows its meter on stderr
        ctx.err(_curl_meter(len(result.body)))
    failed = status >= 400 and ("--fail" in opts or "--fail-with-body" in opts)
    if failed:
        say(f"curl: (22) The requested URL returned error: {status}\n")
    if "--head" in opts or "--include" in opts:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in result.headers.items())
            + "\r\n"
        )
        if "--output" not in opts:
            ctx.out(head)
    body_shown = (not failed or "--fail-with-body" in opts) and "--head" not in opts
    if body_shown and "--output" not in opts and "--remote-name" not in opts:
        ctx.out(result.body.decode("utf-8", errors="replace"))
    write_out(status, result.body, result.headers, elapsed)
    return 22 if failed else 0


# --------------------------------------------------------------------------------------
# wget

_WGET_SHORT_ARG = "OTtoaUeP"
_WGET_LONG_ARG = _words(
    "--connect-timeout --directory-prefix --dns-timeout --header --output-document "
    "--output-file --password --progress --read-timeout --timeout --tries --user "
    "--user-agent --wait --waitretry"
)
_WGET_FLAGS = _words(
    "--continue --inet4-only --no-cache --no-check-certificate --no-verbose --quiet "
    "--retry-connrefused --server-response --show-progress --spider --timestamping "
    "--verbose -4 -N -S -c -n -nv -q -v"
)


async def _wget(args: list[str], ctx: _Ctx) -> int:
    parsed = _getopt(args, _WGET_SHORT_ARG, _WGET_LONG_ARG)
    if isinstance(parsed, str):
        ctx.err(
            f"wget: option requires an argument -- '{parsed.lstrip('-')}'\n"
            "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n"
        )
        return 2
    raw_opts, urls = parsed
    opts: dict[str, str] = {}
    for name, value in raw_opts:
        if name == "-n" and value == "":  # -nv arrives as -n, -v
            opts["--no-verbose"] = ""
            continue
        if (
            name not in _WGET_FLAGS
            and name not in _WGET_LONG_ARG
            and not (len(name) == 2 and name[1] in _WGET_SHORT_ARG)
        ):
            ctx.err(
                f"wget: unrecognized option '{name}'\n"
                "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n"
            )
            return 2
        alias = {
            "-O": "--output-document",
            "-T": "--timeout",
            "-q": "--quiet",
            "-S": "--server-response",
        }.get(name, name)
        opts[alias] = value
    if "-v" in opts:  # -nv was split into -n -v
        opts.pop("-v")
    if not urls:
        ctx.err(
            "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\n"
            "Try `wget --help' for more options.\n"
        )
        return 1
    status = 0
    for url in urls:
        status = await _wget_one(url, opts, ctx) or status
    return status


async def _wget_one(url: str, opts: dict[str, str], ctx: _Ctx) -> int:
    if "://" not in url:
        url = "http://" + url
    _, name, port = _split_url(url)
    log = _discard if "--quiet" in opts else ctx.err
    brief = "--no-verbose" in opts
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    timeout = _seconds(opts.get("--timeout", opts.get("--connect-timeout", "10")), 10.0)
    if not brief:
        if "--spider" in opts:
            log("Spider mode enabled. Check if remote file exists.\n")
        log(f"--{stamp}--  {url}\n")
    address = name
    is_ip = re.fullmatch(r"[\d.]+", name) is not None
    if not is_ip:
        resolved = ctx.net.resolve(name)
        if resolved is None or not re.fullmatch(r"[\d.]+", resolved):  # e.g. an RDS name
            if not brief:
                log(f"Resolving {name} ({name})... failed: Name or service not known.\n")
            log(f"wget: unable to resolve host address {_LQ}{name}{_RQ}\n")
            return 4
        address = resolved
        if not brief:
            log(f"Resolving {name} ({name})... {address}\n")
    target = f"{name}:{port}" if is_ip else f"{name} ({name})|{address}|:{port}"
    result = await ctx.net.http_get(
        ctx.host, url, verify_tls="--no-check-certificate" not in opts, timeout=timeout
    )
    if result.error == "resolve":
        log(f"wget: unable to resolve host address {_LQ}{name}{_RQ}\n")
        return 4
    if result.error != "tls" and (result.error or result.status is None):
        why = "Connection timed out" if result.error == "timeout" else "Connection refused"
        log(f"Connecting to {target}... failed: {why}.\n")
        if result.error == "timeout":
            log("Giving up.\n\n")
        return 4
    if not brief:
        log(f"Connecting to {target}... connected.\n")
    if result.error == "tls" or result.status is None:
        log(
            f"ERROR: cannot verify {name}'s certificate, issued by {_LQ}CN=Sandbox Root CA{_RQ}:\n"
            "  Unable to locally verify the issuer's authority.\n"
            f"To connect to {name} insecurely, use `--no-check-certificate'.\n"
        )
        return 5
    status = result.status
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    if not brief:
        log(f"HTTP request sent, awaiting response... {status} {phrase}\n")
    if "--server-response" in opts:
        log(
            f"  HTTP/1.1 {status} {phrase}\n"
            + "".join(f"  {k}: {v}\n" for k, v in result.headers.items())
        )
    if status >= 400:
        log(f"{stamp} ERROR {status}: {phrase}.\n\n")
        return 8
    size = len(result.body)
    if "--spider" in opts:
        if not brief:
            log(
                f"Length: {size} [text/html]\nRemote file exists and could contain further "
                "links,\nbut recursion is disabled -- not retrieving.\n\n"
            )
        return 0
    dest = opts.get("--output-document")
    if dest is None:
        dest = urlsplit(url).path.rsplit("/", 1)[-1] or "index.html"
    if dest == "-":
        ctx.out(result.body.decode("utf-8", errors="replace"))
    if brief:
        log(f'{stamp} URL:{url} [{size}/{size}] -> "{dest}" [1]\n')
    else:
        shown = "STDOUT" if dest == "-" else dest
        log(
            f"Length: {size} [text/html]\nSaving to: {_LQ}{shown}{_RQ}\n\n"
            f"     0K {' ' * 54} 100% 10.2M=0s\n\n"
            f"{stamp} (10.2 MB/s) - {_LQ}{dest}{_RQ} saved [{size}/{size}]\n\n"
        )
    return 0
