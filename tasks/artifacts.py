"""What the flows show in the Prefect UI, built as plain data (no Prefect, no network).

The flows publish; these functions only decide keys, texts and numbers: artifact keys
(lowercase letters, digits and dashes, as Prefect wants them), the link artifacts of a
deploy's URLs, the deploy's progress across its stages, and a PNG as a markdown image.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.deploy.dag import NAMES

# the deploy report's URL names, in the order shown, with their link texts
URL_LABELS = {
    "alb_http": "ALB (HTTP)",
    "alb_https": "ALB (HTTPS)",
    "beanstalk_http": "Beanstalk (HTTP)",
    "beanstalk_https": "Beanstalk (HTTPS)",
}
ENDED = ("completed", "failed", "not run")  # a stage's outcome once it is decided


def artifact_key(*parts: str) -> str:
    """`parts` joined by dashes, lowercased, every other character a dash, no double dashes:
    a key Prefect accepts (it allows only lowercase letters, digits and dashes)."""
    key = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())
    return re.sub(r"-{2,}", "-", key).strip("-") or "artifact"


@dataclass(frozen=True)
class Link:
    key: str
    url: str
    text: str
    description: str


def url_links(
    deployment: str, urls: Mapping[str, str], here: Mapping[str, str] | None = None
) -> list[Link]:
    """One link artifact per URL of a deploy report (known names first, in URL_LABELS order);
    `here` (name -> the `curl` line that opens it on this machine, on the sandbox) adds
    that line to the description."""
    names = [n for n in URL_LABELS if n in urls] + sorted(set(urls) - set(URL_LABELS))
    out = []
    for name in names:
        if not urls[name]:
            continue
        text = f"deploy {deployment}: {URL_LABELS.get(name, name)} {urls[name]}"
        line = (here or {}).get(name)
        if line and line != f"curl {urls[name]}":
            text += f"; on this machine: `{line}`"
        out.append(
            Link(
                key=artifact_key(deployment, name),
                url=urls[name],
                text=URL_LABELS.get(name, name.replace("_", " ")),
                description=text,
            )
        )
    return out


def progress_key(deployment: str) -> str:
    return artifact_key(deployment, "deploy-progress")


def stage_progress(
    statuses: Mapping[int, str], todo: list[int], just: int | None = None
) -> tuple[float, str]:
    """Percent of the requested stages whose outcome is decided, and a one-line description
    naming stage `just` (the one that just ended) when given (`statuses`: stage number ->
    completed / failed / not run, or anything else while undecided)."""
    wanted = [n for n in NAMES if n in todo]
    ended = [n for n in wanted if statuses.get(n) in ENDED]
    percent = round(100.0 * len(ended) / len(wanted), 1) if wanted else 100.0
    counts = {s: sum(1 for n in ended if statuses[n] == s) for s in ENDED}
    parts = [f"{counts[s]} {s}" for s in ENDED if counts[s]]
    last = f"; stage {just} {NAMES[just]} {statuses.get(just, '')}" if just in NAMES else ""
    text = f"deploy: {len(ended)}/{len(wanted)} stages ended ({', '.join(parts) or 'none yet'})"
    return percent, text + last


def png_markdown(png: Path, title: str, caption: str = "") -> str:
    """Markdown showing the PNG itself (a data: URI image), for a run page of the UI."""
    lines = [f"# {title}", "", f"![{title}]({png_data_uri(png)})"]
    if caption:
        lines += ["", caption]
    return "\n".join(lines)


def png_data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
