"""`python -m tasks.runtime.local`: the local start's command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from tasks.runtime.local.probes import (
    signals_end_run,
)
from tasks.runtime.local.start import LocalStart, Options
from tasks.runtime.local.state import (
    PROJECT_DIR,
    LocalError,
    State,
    _env_int,
    stop_all,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="?", default="up", choices=["up", "stop", "status"])
    p.add_argument(
        "--state-dir",
        default=os.environ.get("TOMCAT_FLEET_LOCAL_DIR", str(PROJECT_DIR / ".tomcat-fleet/local")),
    )
    p.add_argument(
        "--prefect-port", type=int, default=_env_int("TOMCAT_FLEET_LOCAL_PREFECT_PORT", 4200)
    )
    p.add_argument(
        "--sandbox-port", type=int, default=_env_int("TOMCAT_FLEET_LOCAL_SANDBOX_PORT", 4566)
    )
    p.add_argument("--ssh-port", type=int, default=_env_int("TOMCAT_FLEET_LOCAL_SSH_PORT", 2222))
    p.add_argument("--install-latency", type=float, default=1.0, help="sandbox: seconds")
    p.add_argument("--boot-delay", type=float, default=1.0, help="sandbox: seconds")
    p.add_argument(
        "--instances",
        type=int,
        default=int(os.environ["INSTANCES"]) if os.environ.get("INSTANCES") else None,
        help="deploy/full's instances (default: the deployment's, 4)",
    )
    p.add_argument(
        "--param", action="append", default=[], help="more deploy/full parameters, key=JSON"
    )
    p.add_argument("--no-run", dest="run", action="store_false", help="start services only")
    p.add_argument(
        "--detach", action="store_true", help="return once up; services keep running until stop"
    )
    p.add_argument("--watch-timeout", type=int, default=1800, help="seconds to follow the run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    if args.command == "stop":
        pids = stop_all(state_dir)
        print(f"local: stopped {len(pids)} process(es)" if pids else "local: nothing running")
        return 0
    if args.command == "status":
        alive = State.load(state_dir).alive()
        for entry, proc in alive:
            print(f"{entry.name:16} pid {proc.pid:>7}  log {entry.log}")
        if not alive:
            print("local: nothing running")
        return 0 if alive else 1
    opts = Options(
        state_dir=state_dir,
        prefect_port=args.prefect_port,
        sandbox_port=args.sandbox_port,
        ssh_port=args.ssh_port,
        install_latency=args.install_latency,
        boot_delay=args.boot_delay,
        instances=args.instances,
        params=args.param,
        run=args.run,
        detach=args.detach,
        watch_timeout_s=args.watch_timeout,
    )
    launcher = LocalStart(opts)
    status = 1
    with signals_end_run():
        try:
            status = launcher.up()
        except LocalError as exc:
            print(f"local: {exc}", file=sys.stderr, flush=True)
            status = 2
        except KeyboardInterrupt:
            print("\nlocal: interrupted", flush=True)
            status = 130
        finally:
            if not (opts.detach and status in (0, 1)):
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: finish stopping
                stop_all(state_dir)
                st = State.load(state_dir)
                st.entries = []
                with contextlib.suppress(FileNotFoundError):
                    st.file.unlink()
                print("local: everything this start began is stopped", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
