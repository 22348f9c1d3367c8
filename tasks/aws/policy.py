"""The least-privilege IAM policy (`docs/iam-policy.json`) from the AWS operations called.

`tasks.aws.client` records every operation the flows call as `<IAM prefix>:<Operation>`;
`tasks.aws.grants` says which IAM actions each needs (the operation's own, those AWS
implies) and where each is granted. `policy_document` renders that for one partition and
one set of DNS record names:

    python -m tasks.aws.policy --operations ops.json [--output docs/iam-policy.json]
    tomcat-fleet iam-policy --partition aws-cn --domain www.example.cn --eb-domain eb.example.cn

`docs/iam-policy.json` is the `aws` partition with the record names the flows use by
default (`www.<zone>`, `eb.<zone>` and their DNS-validation records, in any zone); a
deployment with its own names prints its policy with `tomcat-fleet iam-policy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from blocks.recipes import ami_parameters

from .grants import IMPLIED_ACTIONS, OPERATION_ACTIONS, READ_SIDS, SCOPES

POLICY_PATH = Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json"
OPERATIONS_PATH = Path(__file__).resolve().parents[2] / "docs" / "iam-operations.json"
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
# default record names: www.<zone> and eb.<zone> in any zone, and ACM's validation records
# (_<hash>.<name>) for them; route53's normalized names are lowercase without a final dot
DEFAULT_DOMAINS = ("www.*", "eb.*")


def record_patterns(domains: Sequence[str]) -> list[str]:
    """The record names (StringLike patterns) a deployment writes for `domains`: each name
    itself and its ACM DNS-validation CNAME."""
    names = [d.rstrip(".").lower() for d in domains]
    return [p for n in names for p in (n, f"_*.{n}")]


def actions_for(operations: Iterable[str]) -> set[str]:
    """The IAM actions that authorise `operations` (`<prefix>:<Operation>` each)."""
    out: set[str] = set()
    for op in operations:
        out.update(OPERATION_ACTIONS.get(op, (op,)))
        out.update(IMPLIED_ACTIONS.get(op, ()))
    return out


def _fill(value: Any, fields: dict[str, Any]) -> Any:
    """`{P}` and the other placeholders of the grants table, filled in (a placeholder that
    stands for a list, alone in a list, becomes that list)."""
    if isinstance(value, str):
        for key, filler in fields.items():
            if isinstance(filler, str):
                value = value.replace("{" + key + "}", filler)
        return value
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            name = item[1:-1] if isinstance(item, str) and item.startswith("{") else ""
            if name in fields and isinstance(fields[name], list):
                out.extend(fields[name])
            else:
                out.append(_fill(item, fields))
        return out
    if isinstance(value, dict):
        return {k: _fill(v, fields) for k, v in value.items()}
    return value


def policy_document(
    operations: Iterable[str],
    *,
    partition: str = "aws",
    domains: Sequence[str] = DEFAULT_DOMAINS,
) -> dict[str, Any]:
    """Statements grouped as `SCOPES` says, one per Sid, in `SCOPES` order then the
    unscoped ("*") read statements by service; actions sorted."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; choose one of {', '.join(PARTITIONS)}")
    fields: dict[str, Any] = {
        "P": partition,
        "EC2_PRINCIPAL": "ec2.amazonaws.com",
        "RECORD_NAMES": record_patterns(domains),
        "AMI_PARAMETERS": [f"arn:{partition}:ssm:*::parameter{p}" for p in ami_parameters()],
    }
    if partition == "aws-cn":  # China's EC2 service principal
        fields["EC2_PRINCIPAL"] = "ec2.amazonaws.com.cn"
    grants: dict[str, tuple[list[str], dict[str, Any] | None, list[str]]] = {}
    order = list(dict.fromkeys(sid for scopes in SCOPES.values() for sid, _, _ in scopes))
    for action in sorted(actions_for(operations)):
        prefix = action.split(":", 1)[0]
        for sid, resources, cond in SCOPES.get(action) or [
            (READ_SIDS.get(prefix, prefix.title() + "Unscoped"), ["*"], None)
        ]:
            grants.setdefault(sid, (resources, cond, []))[2].append(action)
    sids = [s for s in order if s in grants] + sorted(s for s in grants if s not in order)
    statements = []
    for sid in sids:
        resources, cond, actions = grants[sid]
        st: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions}
        st["Resource"] = resources[0] if resources == ["*"] else _fill(resources, fields)
        if cond:
            st["Condition"] = _fill(cond, fields)
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


def render(operations: Iterable[str], **kw: Any) -> str:
    return json.dumps(policy_document(operations, **kw), indent=2) + "\n"


def policy_actions(document: dict[str, Any]) -> set[str]:
    """Every action an IAM policy document allows (Action as a string or a list)."""
    out: set[str] = set()
    statements = document.get("Statement", [])
    for st in [statements] if isinstance(statements, dict) else statements:
        if st.get("Effect") != "Allow":
            continue
        action = st.get("Action", [])
        out.update([action] if isinstance(action, str) else action)
    return out


def load_policy(path: Path = POLICY_PATH) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def shipped_operations() -> list[str]:
    """The operations the shipped policy was generated from (docs/iam-operations.json,
    written with it)."""
    return read_operations(OPERATIONS_PATH.read_text())


def read_operations(text: str) -> list[str]:
    """A JSON list of operations, or one operation per line."""
    text = text.strip()
    if text.startswith("["):
        return [str(op) for op in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def print_policy(partition: str, domain: str | None, eb_domain: str | None) -> int:
    """`tomcat-fleet iam-policy`: the policy for `partition` and the deployment's names."""
    domains = (domain or DEFAULT_DOMAINS[0], eb_domain or DEFAULT_DOMAINS[1])
    sys.stdout.write(render(shipped_operations(), partition=partition, domains=domains))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tasks.aws.policy", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--operations", required=True, help="recorded operations file, '-' for stdin")
    p.add_argument("--output", help="where to write the policy (default: stdout)")
    args = p.parse_args(argv)
    text = sys.stdin.read() if args.operations == "-" else Path(args.operations).read_text()
    operations = read_operations(text)
    policy = render(operations)
    if args.output:
        Path(args.output).write_text(policy)
        if Path(args.output).resolve() == POLICY_PATH:
            OPERATIONS_PATH.write_text(json.dumps(sorted(set(operations)), indent=1) + "\n")
    else:
        sys.stdout.write(policy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
