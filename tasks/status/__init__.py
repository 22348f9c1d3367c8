"""`status`: what one deployment's live estate is, read from AWS by tag, with no local
state: instances by state, target health, the ALB / Beanstalk / RDS state and their URLs
(each beside the line that opens it on this machine), certificate status, and drift from
what the deploy made. `tomcat-fleet status` prints it (a table, or `--json`); the
`status` flow (flows/status.py, deployment `status/default`) publishes it as a markdown
artifact.

Modules: `model` (the facts, the report and its `--json` schema, the evaluation: pure),
`read` (the AWS reads), `render` (table, markdown, JSON). `check` (`check_estate`: all three).
"""
