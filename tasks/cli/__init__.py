"""`tomcat-fleet`: the project's one command line (also `python -m flows ...`).

    tomcat-fleet deploy --sandbox --instances 50        # its own sandbox, all 11 stages
    tomcat-fleet install --inventory inventory.json     # install on existing instances
    tomcat-fleet teardown --deployment-name tomcat-fleet
    tomcat-fleet status [--deployment-name N] [--json]  # the live estate; exit 0/1/2
    tomcat-fleet benchmark --matrix nightly --out-dir out/benchmark
    tomcat-fleet sandbox --help                         # runs `python -m sandbox`
    tomcat-fleet local up | stop | status               # the one-command local start
    tomcat-fleet server status | stop                   # the CLI's local Prefect server
    tomcat-fleet iam-policy                             # the IAM policy the flows need

The flow commands' options come from the flows' signatures and docstrings (the same text
the Prefect UI shows for the parameters). Input is validated before Prefect is contacted:
bad input costs no server start. Without PREFECT_API_URL the flow commands use one local
Prefect server, started on first use under `.tomcat-fleet/prefect` and reused by later runs.

Modules: `app` (the command tree, `main`, the console entry `run`), `flow_options` (what
the flow commands share: options read from a flow's source, the sandbox child, settings
overrides), `flow_commands` (deploy, install, teardown, benchmark), `local_commands`
(`local ...`, `server ...`), `status_command` (`status`, no Prefect unless the credentials
block needs its API), `iam_policy`. The CLI reaches a flow by its entrypoint name
(`flows.deploy`, as prefect.yaml does), importing it only when the command runs: nothing
here imports Prefect or boto3 before a command needs them, and tasks/ never imports flows/.
"""
