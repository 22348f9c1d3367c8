"""`tomcat-fleet local`: the one-command local start (what `./scripts/run.sh` runs).

    tomcat-fleet local up [--instances N] [--no-run] [--detach]   # default command
    tomcat-fleet local stop                                       # from any shell
    tomcat-fleet local status

`up` starts, each in its own process group and tracked in `<state-dir>/processes.json`:

1. a Prefect server (SQLite under `<state-dir>/prefect`, UI on http://127.0.0.1:4200),
2. the sandbox (`python -m sandbox`, AWS API on 127.0.0.1:4566, SSH 2222, instances on
   127.150.0.0/16, load balancers on 127.151.0.0/16), its env file `<state-dir>/sandbox.env`,

then registers the blocks (`python -m blocks.register`), creates the process work pool,
applies the process deployments of `prefect.yaml` (`prefect deploy`), starts
3. a worker (`prefect worker start --pool tomcat-fleet-process`) with the sandbox's
   variables in its environment,

runs `prefect deployment run deploy/full --watch` and follows it to the end, saves the SSH
key block (stage 1 made the key), and prints where to look: the UI, the flow run, the ALB
URL answering on loopback. It then waits: Ctrl-C, SIGTERM or `stop` ends every process
it started (and their children), and only those. A second `up` first stops what the
previous one left running, then starts afresh (the Prefect database is kept).

Ports are fixed so the URLs stay the same; a port in use is an error that names it.
The sandbox is only this launcher's business: the flows read settings, nothing else.
"""
