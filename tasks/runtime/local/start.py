"""The local start's steps: Prefect server, sandbox, blocks, work pool, deployments, worker, run."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from blocks.settings import RuntimeSettings
from tasks import waiting
from tasks.artifacts import URL_LABELS
from tasks.reach import LocalView, Opening, openings, view_from_state
from tasks.runtime.local.probes import (
    check_port,
    http_json,
    probe_http,
    probe_https,
    read_env_file,
    signals_end_run,
    tail,
    wait_until,
)
from tasks.runtime.local.state import (
    LOCAL_DEPLOYMENTS,
    OPTIONAL_ENTRYPOINTS,
    PROCESS_POOL,
    PROJECT_DIR,
    PUBLIC_IP_CIDR,
    READY,
    SERVICE_IP_CIDR,
    LocalError,
    State,
    Tracked,
    stop_all,
)
from tasks.runtime.prefect_api import server_command


def sandbox_prefix() -> list[str]:
    """A command the sandbox is started under (tests: `setpriv --bounding-set=-net_bind_service
    --inh-caps=-net_bind_service`, so its balancers fall back to high ports); none by default."""
    return shlex.split(RuntimeSettings().local_sandbox_prefix)


@dataclass
class Options:
    state_dir: Path
    prefect_port: int
    sandbox_port: int
    ssh_port: int
    install_latency: float
    boot_delay: float
    instances: int | None
    params: list[str]
    run: bool
    detach: bool
    watch_timeout_s: int


class LocalStart:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.state = State(opts.state_dir)
        self.logs = opts.state_dir / "logs"
        self.api_url = f"http://127.0.0.1:{opts.prefect_port}/api"
        self.ui_url = f"http://127.0.0.1:{opts.prefect_port}"
        self.sandbox_env: dict[str, str] = {}
        self.children: list[subprocess.Popen[Any]] = []

    # environment shared by every child: the local server, a Prefect home of our own
    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        env.update(
            PREFECT_HOME=str(self.o.state_dir / "prefect"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_EPHEMERAL_ENABLED="false",
            PYTHONUNBUFFERED="1",
            PWD=str(PROJECT_DIR),  # prefect.yaml's pull step: the checkout
        )
        return env

    def worker_env(self) -> dict[str, str]:
        return {**self.base_env(), **self.sandbox_env, "PREFECT_WORKER_QUERY_SECONDS": "2"}

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        self.children.append(proc)
        self.state.add(
            Tracked(name, proc.pid, psutil.Process(proc.pid).create_time(), True, str(log))
        )
        return proc

    def step(self, what: str, cmd: list[str], env: dict[str, str]) -> str:
        """Run a short command to the end; its output goes to the step log, not the screen."""
        print(f"local: {what}", flush=True)
        res = subprocess.run(
            cmd,
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "steps.log", "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            raise LocalError(
                f"{what} failed (status {res.returncode}):\n{(res.stdout + res.stderr)[-2000:]}"
            )
        return res.stdout

    # 1. Prefect server
    def start_server(self) -> None:
        check_port(self.o.prefect_port, "Prefect server", "--prefect-port")
        print(f"local: starting the Prefect server on {self.ui_url}", flush=True)
        proc = self.spawn("prefect-server", server_command(self.o.prefect_port), self.base_env())

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, 120, "the Prefect server (see logs/prefect-server.log)", proc)

    # 2. sandbox
    def start_sandbox(self) -> None:
        check_port(self.o.sandbox_port, "sandbox API", "--sandbox-port")
        check_port(self.o.ssh_port, "sandbox SSH", "--ssh-port")
        env_file = self.o.state_dir / "sandbox.env"
        with contextlib.suppress(FileNotFoundError):
            env_file.unlink()
        print(
            f"local: starting the sandbox (AWS API 127.0.0.1:{self.o.sandbox_port}, "
            f"SSH {self.o.ssh_port}, instances {PUBLIC_IP_CIDR}, "
            f"load balancers {SERVICE_IP_CIDR})",
            flush=True,
        )
        proc = self.spawn(
            "sandbox",
            [
                *sandbox_prefix(),
                sys.executable,
                "-m",
                "sandbox",
                "--port",
                str(self.o.sandbox_port),
                "--ssh-port",
                str(self.o.ssh_port),
                "--env-file",
                str(env_file),
                "--state-dir",
                str(self.o.state_dir / "sandbox"),
                "--public-ip-cidr",
                PUBLIC_IP_CIDR,
                "--service-ip-cidr",
                SERVICE_IP_CIDR,
                "--install-latency",
                str(self.o.install_latency),
                "--boot-delay",
                str(self.o.boot_delay),
                "--cloud-init-seconds",
                str(min(1.0, self.o.boot_delay)),
            ],
            self.base_env(),
        )
        log = self.logs / "sandbox.log"
        try:
            wait_until(
                lambda: env_file.exists() and READY_RE.search(log.read_text(errors="replace")),
                60,
                "the sandbox",
                proc,
            )
        except LocalError as exc:
            raise LocalError(f"{exc}: {tail(log, 5)}") from None
        self.sandbox_env = read_env_file(env_file)

    # 3. blocks, pool, deployments
    def register(self) -> None:
        env = {**self.base_env(), **self.sandbox_env}
        out = self.step(
            "registering blocks (python -m blocks.register)",
            [sys.executable, "-m", "blocks.register"],
            env,
        )
        for line in out.splitlines():
            print(f"  {line}", flush=True)

    def apply_deployments(self) -> list[str]:
        env = self.base_env()
        prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
        self.step(
            f"creating the work pool {PROCESS_POOL} (process)",
            [*prefect, "work-pool", "create", PROCESS_POOL, "--type", "process", "--overwrite"],
            env,
        )
        names = []
        for name in LOCAL_DEPLOYMENTS:
            entry = OPTIONAL_ENTRYPOINTS.get(name)
            if entry and not (PROJECT_DIR / entry).exists():
                print(f"local: {name} skipped: {entry} does not exist yet", flush=True)
                continue
            names.append(name)
        cmd = [*prefect, "deploy"]
        for name in names:
            cmd += ["--name", name]
        self.step(f"applying deployments from prefect.yaml: {', '.join(names)}", cmd, env)
        return names

    # 4. worker
    def start_worker(self) -> None:
        print(f"local: starting a worker on the {PROCESS_POOL} pool", flush=True)
        proc = self.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                PROCESS_POOL,
                "--name",
                "local-worker",
            ],
            self.worker_env(),
        )
        wait_until(self.worker_online, 60, "the worker (see logs/worker.log)", proc)

    def worker_online(self) -> bool:
        try:
            workers = http_json(f"{self.api_url}/work_pools/{PROCESS_POOL}/workers/filter", {})
        except (OSError, ValueError):
            return False
        return any(w.get("status") == "ONLINE" for w in workers or [])

    # 5. the run
    def run_deploy(self) -> str | None:
        cmd = [sys.executable, "-m", "prefect", "deployment", "run", "deploy/full", "--watch"]
        cmd += ["--watch-timeout", str(self.o.watch_timeout_s)]
        if self.o.instances is not None:
            cmd += ["--param", f"instances={self.o.instances}"]
        for p in self.o.params:
            cmd += ["--param", p]
        print(f"local: $ prefect {' '.join(cmd[3:])}", flush=True)
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_DIR,
            env=self.base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        run_id = None
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            m = re.search(r"UUID:\s*([0-9a-f-]{36})", line)
            if m and run_id is None:
                run_id = m.group(1)
        proc.wait()
        return run_id

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(http_json(f"{self.api_url}/flow_runs/{run_id}"))

    def deploy_urls(self, run_id: str, deployment: str) -> dict[str, str]:
        arts = http_json(
            f"{self.api_url}/artifacts/filter",
            {
                "artifacts": {
                    "key": {"any_": [f"{deployment}-deploy-report"]},
                    "flow_run_id": {"any_": [run_id]},
                },
                "limit": 1,
            },
        )
        if not arts:
            return {}
        return dict(re.findall(r"^- (\w+): (\S+)$", str(arts[0].get("data") or ""), re.M))

    def local_view(self) -> LocalView | None:
        """The sandbox's live names and ports (read now: a balancer recreated by a later
        run is shown at its new address)."""
        url = self.sandbox_env.get("TOMCAT_FLEET_SANDBOX_STATE_URL", "")
        try:
            state = http_json(url)
        except (OSError, ValueError):
            return None
        return view_from_state(state, self.sandbox_env.get("TOMCAT_FLEET_CA_BUNDLE") or None)

    def save_ssh_key_block(self) -> None:
        with contextlib.suppress(LocalError):
            out = self.step(
                "saving the SSH key block (stage 1 made the key)",
                [sys.executable, "-m", "blocks.register", "--only", "ssh-key"],
                {**self.base_env(), **self.sandbox_env},
            )
            for line in out.splitlines():
                print(f"  {line}", flush=True)

    def report(self, run_id: str | None) -> tuple[str, str]:
        from blocks.settings import FleetSettings

        settings = FleetSettings(_env_file=PROJECT_DIR / ".env")
        deployment = settings.deployment_name
        state, name = ("UNKNOWN" if self.o.run else "NOT RUN"), "?"
        urls: dict[str, str] = {}
        if run_id:
            with contextlib.suppress(OSError, ValueError):
                fr = self.flow_run(run_id)
                state, name = str(fr.get("state_type")), str(fr.get("name"))
            with contextlib.suppress(OSError, ValueError):
                urls = self.deploy_urls(run_id, deployment)
        lines = [
            "",
            "=" * 78,
            f"tomcat-fleet local start: deploy/full {state}",
            f"  Prefect UI     {self.ui_url}",
        ]
        if run_id:
            lines.append(f"  flow run       {self.ui_url}/runs/flow-run/{run_id}  ({name})")
        here = openings(urls, self.local_view())
        lines += url_lines(here)
        alb = here.get("alb_http")
        alb_url = alb.local_url if alb and alb.address else ""
        lines += [
            f"  sandbox state  {self.sandbox_env.get('TOMCAT_FLEET_SANDBOX_STATE_URL', '')}",
            f"  Prefect CLI    export PREFECT_API_URL={self.api_url}",
            "                 prefect deployment run deploy/full --watch",
            f"  sandbox env    set -a; . {self.o.state_dir / 'sandbox.env'}; set +a",
            f"  logs           {self.logs}/ (server, sandbox, worker); flow runs: "
            f"{settings.log_dir}/",
            "  status         tomcat-fleet status   (with the sandbox env: the live estate, "
            "its URLs at their current addresses)",
            "  stop           ./scripts/run.sh stop   (or Ctrl-C here)",
            "=" * 78,
            f"{READY} state={state} ui={self.ui_url} flow_run={run_id or ''} alb={alb_url}",
        ]
        print("\n".join(lines), flush=True)
        return state, alb_url

    # the whole thing
    def up(self) -> int:
        previous = State.load(self.o.state_dir).alive()
        if previous:
            print("local: a previous local start is running; stopping it first", flush=True)
            stop_all(self.o.state_dir)
        self.o.state_dir.mkdir(parents=True, exist_ok=True)
        self.state.entries = []
        me = psutil.Process()
        self.state.add(Tracked("launcher", me.pid, me.create_time(), False))
        (self.o.state_dir / "prefect.env").write_text(f"PREFECT_API_URL={self.api_url}\n")
        self.start_server()
        self.start_sandbox()
        self.register()
        self.apply_deployments()
        self.start_worker()
        state = "NOT RUN"
        if self.o.run:
            run_id = self.run_deploy()
            self.save_ssh_key_block()
            state, _ = self.report(run_id)
        else:
            self.report(None)
        if self.o.detach:
            self._forget_launcher()
            return 0 if state in ("COMPLETED", "NOT RUN") else 1
        self.wait()
        return 0 if state in ("COMPLETED", "NOT RUN") else 1

    def _forget_launcher(self) -> None:
        st = State.load(self.o.state_dir)
        st.entries = [e for e in st.entries if e.name != "launcher"]
        st.save()

    def wait(self) -> None:
        """Until Ctrl-C / SIGTERM / `stop`, or one of the services dies."""
        proc = waiting.wait_until(
            "one of the services to exit",
            lambda: next((p for p in self.children if p.poll() is not None), None),
            timeout_s=math.inf,  # a supervisor: no deadline
            poll_s=1.0,
        )
        entry = next(e for e in self.state.entries if e.pid == proc.pid)
        print(
            f"local: {entry.name} exited (status {proc.returncode}); "
            f"stopping the rest. Last lines of {entry.log}:\n{tail(Path(entry.log))}",
            flush=True,
        )


def url_lines(here: dict[str, Opening]) -> list[str]:
    """Each URL, what it answers now, and the line a plain shell opens it with."""
    lines = []
    for name, label in URL_LABELS.items():
        o = here.get(name)
        if o is None or o.address is None:
            continue
        host = urllib.parse.urlsplit(o.url).hostname or ""
        if o.url.startswith("https://"):
            port = urllib.parse.urlsplit(o.local_url).port or 443
            answer = probe_https(o.address, host, _cacert(o.curl), port)
        else:
            answer = probe_http(o.local_url)
        lines.append(f"  {label:<14} {o.url}  -> {answer}")
        lines.append(f"{'':17}{o.curl}")
    return lines


def _cacert(curl: str) -> str:
    words = shlex.split(curl)
    return words[words.index("--cacert") + 1] if "--cacert" in words else ""


READY_RE = re.compile(r"SANDBOX READY endpoint=(\S+) ssh_port=(\d+)")


def run_up(opts: Options) -> int:
    """`local up`: start everything; stop it all again unless detached (or on error)."""
    state_dir = opts.state_dir
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


def run_stop(state_dir: Path) -> int:
    pids = stop_all(state_dir)
    print(f"local: stopped {len(pids)} process(es)" if pids else "local: nothing running")
    return 0


def run_status(state_dir: Path) -> int:
    alive = State.load(state_dir).alive()
    for entry, proc in alive:
        print(f"{entry.name:16} pid {proc.pid:>7}  log {entry.log}")
    if not alive:
        print("local: nothing running")
    return 0 if alive else 1
