"""Command line: ``python -m ausweep.cluster up-local | down-local | status-local [--dir DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

EPILOG = """\
examples:
  eval "$(python -m ausweep.cluster up-local --workers 2)"     start, and export what a client needs
  ray job submit --working-dir . -- python -m ausweep.sweep probe --preset demo
  python -m ausweep.cluster status-local                        what runs, Ray nodes alive, MLflow answering
  python -m ausweep.cluster down-local                          stop exactly what up-local started

up-local prints the exports on stdout and its progress on stderr. The exports are for clients of
the cluster (ray job submit, the Jobs SDK, MLflow): RAY_ADDRESS is the Jobs API URL, so in that
shell a driver run by hand needs `unset RAY_ADDRESS` or the GCS address from status-local.

MLflow asks for a login (its basic-auth app) unless started with --no-mlflow-auth: user admin, the
password generated into DIR/mlflow_password (mode 600, kept with the store across down/up). The
exports set MLFLOW_TRACKING_USERNAME and read MLFLOW_TRACKING_PASSWORD from that file, so the
password is never printed; the cluster's nodes already have both, so submitted sweeps log as admin.
In a browser, log in as admin with the file's contents.
"""


def build_parser() -> argparse.ArgumentParser:
    from ausweep.cluster.local import LocalClusterConfig

    default_dir = os.environ.get("AUSWEEP_CLUSTER_DIR", LocalClusterConfig.dir)
    p = argparse.ArgumentParser(prog="python -m ausweep.cluster",
                                description="A real multi-node Ray cluster and an MLflow server on this machine.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    helps = {f.name: f.metadata["help"].replace("%", "%%") for f in LocalClusterConfig.__dataclass_fields__.values()}

    up = sub.add_parser("up-local", help="start a Ray head, N worker nodes and an MLflow server; print the exports")
    up.add_argument("--dir", default=default_dir, help=helps["dir"] + " (default $AUSWEEP_CLUSTER_DIR or %(default)s)")
    for flag, field, type_, metavar in (
        ("--workers", "workers", int, "N"), ("--cpus-per-node", "cpus_per_node", int, "C"),
        ("--object-store-mb", "object_store_mb", int, "MB"), ("--ray-port", "ray_port", int, "PORT"),
        ("--dashboard-port", "dashboard_port", int, "PORT"), ("--mlflow-port", "mlflow_port", int, "PORT"),
        ("--timeout", "timeout_s", float, "SECONDS"),
    ):
        up.add_argument(flag, dest=field, type=type_, metavar=metavar, default=getattr(LocalClusterConfig, field),
                        help=helps[field] + " (default %(default)s)")
    up.add_argument("--auth", choices=["token", "disabled"], default=LocalClusterConfig.auth, help=helps["auth"])
    up.add_argument("--no-mlflow-auth", dest="auth_mlflow", action="store_false",
                    help="start MLflow without a login, open to every user of this machine (default: a login through "
                         "MLflow's basic-auth app, user admin, password generated into DIR/mlflow_password, mode 600)")

    down = sub.add_parser("down-local", help="stop exactly the processes up-local started; the MLflow store and logs stay")
    down.add_argument("--dir", default=default_dir, help="the folder given to up-local (default %(default)s)")
    down.add_argument("--grace", type=float, metavar="SECONDS", default=15.0, help="seconds between SIGTERM and SIGKILL (default %(default)s)")

    st = sub.add_parser("status-local", help="print the cluster's processes, Ray nodes, MLflow and the exports")
    st.add_argument("--dir", default=default_dir, help="the folder given to up-local (default %(default)s)")
    st.add_argument("--json", action="store_true", help="the state file with liveness, as JSON")
    return p


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _err(*lines: str) -> None:
    print(*lines, sep="\n", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ausweep.cluster import local
    from ausweep.config import ConfigError

    try:
        if args.cmd == "up-local":
            fields = local.LocalClusterConfig.__dataclass_fields__
            cfg = local.LocalClusterConfig(**{k: v for k, v in vars(args).items() if k in fields})
            # A SIGTERM while starting (a CI timeout, say) cleans up like Ctrl-C does.
            signal.signal(signal.SIGTERM, _interrupt)
            state = local.up(cfg, log=_err)
            _err(*_summary(state), "")
            print(local.format_exports(state), flush=True)
        elif args.cmd == "down-local":
            out = local.down(args.dir, grace_s=args.grace)
            killed = f", {len(out['killed'])} needed SIGKILL" if out["killed"] else ""
            _err(f"stopped {len(out['stopped'])} process(es) of the local cluster in {out['state']['dir']}{killed}; "
                 f"MLflow store kept at {out['state']['mlflow']['backend_store_uri']}")
        else:
            state = local.status(args.dir)
            if args.json:
                print(json.dumps(state, indent=2))
            else:
                print("\n".join(_summary(state, live=True)))
                print(local.format_exports(state))
            return 0 if state["healthy"] else 1
    except ConfigError as e:
        _err(f"error: {e}")
        return 2
    except local.ClusterError as e:
        _err(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted: everything up-local had started is stopped again")
        return 130
    return 0


def _summary(state: dict, live: bool = False) -> list[str]:
    ray, mlflow = state["ray"], state["mlflow"]
    lines = [f"local cluster in {state['dir']} ({state['status']}, started {state['started']})"]
    for r in state["processes"]:
        alive = ("  alive" if r.get("alive") else "  NOT RUNNING") if live else ""
        lines.append(f"  {r['name']:<14} pid {r['pid']:<8} log {r['log']}{alive}")
    nodes = str(ray["nodes"])
    if live:
        nodes = f"{ray['alive_nodes']}/{nodes} alive" if ray["alive_nodes"] is not None else "dashboard NOT ANSWERING"
    token = f" (token in {ray['token_file']})" if ray["token_file"] else ""
    answers = ("   answers" if mlflow.get("answers") else "   NOT ANSWERING") if live else ""
    if mlflow.get("auth") == "basic":
        login = f"user {mlflow['username']}, password in {mlflow['password_file']} (MLflow basic-auth)"
    else:
        login = "none: anyone on this machine may read and write the runs (--no-mlflow-auth)"
    return lines + [
        f"  Ray nodes:     {nodes}   GCS address {ray['address']} (for ray.init / ray status --address)",
        f"  Jobs API:      {ray['dashboard_url']}   auth: {ray['auth']}{token}",
        f"  MLflow:        {mlflow['tracking_uri']}   store {mlflow['backend_store_uri']}{answers}",
        f"  MLflow login:  {login}",
    ]
