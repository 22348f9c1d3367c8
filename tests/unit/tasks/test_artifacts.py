"""The UI helpers (tasks/artifacts.py): artifact keys, link rows, stage progress, PNG markdown.
Pure: no Prefect server, no network."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from tasks.artifacts import (
    artifact_key,
    png_markdown,
    progress_key,
    stage_progress,
    url_links,
)

KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_keys_are_lowercase_digits_and_dashes() -> None:
    assert artifact_key("Fleet", "alb_http") == "fleet-alb-http"
    assert artifact_key("a--b", "C.d/e", "") == "a-b-c-d-e"
    assert artifact_key("__") == "artifact"
    assert progress_key("tomcat-fleet") == "tomcat-fleet-deploy-progress"
    for k in (artifact_key("x Y", "z_1"), progress_key("e2e")):
        assert KEY.match(k), k


def test_url_links_one_per_url_known_names_first() -> None:
    urls = {
        "beanstalk_http": "http://eb.example/",
        "zzz_extra": "http://x/",
        "alb_https": "https://www.example.com/",
        "alb_http": "http://alb-1.elb.amazonaws.com/",
        "empty": "",
    }
    links = url_links("fleet", urls)
    assert [link.key for link in links] == [
        "fleet-alb-http",
        "fleet-alb-https",
        "fleet-beanstalk-http",
        "fleet-zzz-extra",
    ]
    assert links[0].url == "http://alb-1.elb.amazonaws.com/" and links[0].text == "ALB (HTTP)"
    assert links[1].text == "ALB (HTTPS)" and "https://www.example.com/" in links[1].description
    assert all(KEY.match(link.key) for link in links)


def test_stage_progress_counts_every_outcome() -> None:
    todo = list(range(1, 12))
    assert stage_progress({}, todo)[0] == 0.0
    assert "0/11 stages ended (none yet)" in stage_progress({}, todo)[1]
    percent, text = stage_progress({1: "completed", 2: "completed", 3: "failed"}, todo, 3)
    assert percent == round(300 / 11, 1)
    assert "3/11 stages ended (2 completed, 1 failed); stage 3 save-inventory failed" in text
    statuses = {n: "completed" for n in todo} | {9: "failed", 10: "not run"}
    percent, text = stage_progress(statuses, todo, 10)
    assert percent == 100.0
    assert "11/11 stages ended (9 completed, 1 failed, 1 not run)" in text
    # only the requested stages count; undecided ones do not
    assert stage_progress({1: "completed", 2: "running"}, [1, 2, 3, 4, 5])[0] == 20.0
    assert stage_progress({}, [])[0] == 100.0


def test_png_markdown_embeds_the_file(tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = png_markdown(png, "plot", "caption here")
    m = re.search(r"!\[plot\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert m and base64.b64decode(m.group(1)) == png.read_bytes()
    assert md.startswith("# plot") and md.endswith("caption here")
