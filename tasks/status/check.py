"""`check_estate`: read the deployment's estate, judge it, give its URLs their lines."""

from __future__ import annotations

import datetime as dt

from blocks.settings import FleetSettings
from tasks.aws import Aws
from tasks.reach import openings, read_local_view
from tasks.status.model import StatusReport, UrlEntry, evaluate, urls
from tasks.status.read import read_facts


def check_estate(settings: FleetSettings) -> StatusReport:
    """Read the deployment's estate and judge it; its URLs get their `curl` lines from the
    sandbox's live state when the settings name one (`TOMCAT_FLEET_SANDBOX_STATE_URL`)."""
    facts = read_facts(Aws(settings), settings)
    view = read_local_view(settings.ca_bundle)
    entries = [UrlEntry(**o.as_dict()) for o in openings(urls(facts), view).values()]
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return evaluate(facts, entries, view.dns if view else None, at)
