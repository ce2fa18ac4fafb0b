"""``kubectl tj``: the kubectl plugin of trainingjob-operator (the ``kubectl-tj`` script).

kubectl runs ``kubectl-tj`` from ``PATH`` for ``kubectl tj ...``. Every cluster call goes
through ``kubectl`` itself, so the user's kubeconfig, context, credentials and namespace
apply as they do for any kubectl command; ``--context``, ``--kubeconfig`` and ``-n`` are
passed on (kubectl does not hand its own global flags to plugins).

- ``trials NAME``: the TrainingJob's trial log from the ``training_jobs`` table (the row
  bound to the object's uid), read through :mod:`tjcore.store` as ``tjctl show`` does,
  from the table ``DATABASE_URL`` / ``SHARED_DATA_PATH`` name.
- ``cancel NAME``: sets ``spec.cancel: true`` (the trainer stops after its current trial).
- ``suspend NAME`` / ``resume NAME``: sets ``spec.suspend`` to true / false.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from tjcontract.names import GROUP, PLURAL
from tjcontract.words import FINAL_PHASES
from tjcore.settings import Settings, SettingsError, check_database_driver, redact_url
from tjcore.store import JobRow, JobStore

RESOURCE = f"{PLURAL}.{GROUP}"
# What kubectl says when it cannot talk to the API server at all.
UNREACHABLE = (
    "unable to connect",
    "connection refused",
    "couldn't get current server api group list",
    "no such host",
    "i/o timeout",
    "was refused",
    "dial tcp",
)


class PluginError(Exception):
    """One ``error:`` line for the user."""


def _kubectl(args: argparse.Namespace, *argv: str) -> str:
    """Run kubectl with the user's context flags; its stdout, or a :class:`PluginError`."""
    command = ["kubectl"]
    if args.kubeconfig:
        command.append(f"--kubeconfig={args.kubeconfig}")
    if args.context:
        command.append(f"--context={args.context}")
    try:
        done = subprocess.run(
            [*command, *argv], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise PluginError("kubectl is not on PATH; install kubectl first") from None
    except subprocess.TimeoutExpired:
        raise PluginError("kubectl did not answer within 60 s; is the cluster up?") from None
    if done.returncode == 0:
        return done.stdout
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    said = lines[-1] if lines else f"exit code {done.returncode}"
    lowered = " ".join(lines).lower()
    if "doesn't have a resource type" in lowered:
        raise PluginError(
            "this cluster has no TrainingJob resource; install the CRD "
            "(kubectl apply -f manifests/crd.yaml, or the Helm chart)"
        )
    if "(notfound)" in lowered:
        raise PluginError(
            f"no TrainingJob {args.name!r} in namespace {args.namespace!r}; "
            f"`kubectl get trainingjobs -n {args.namespace}` lists them"
        )
    if any(word in lowered for word in UNREACHABLE):
        raise PluginError(
            f"cannot reach the cluster ({said}); check KUBECONFIG, --kubeconfig or "
            "--context and that the API server is up"
        )
    raise PluginError(f"kubectl failed: {said}")


def _namespace(args: argparse.Namespace) -> str:
    """``-n``, else the current context's namespace, else ``default`` (as kubectl does)."""
    if not args.namespace:
        try:
            found = _kubectl(args, "config", "view", "--minify", "-o", "jsonpath={..namespace}")
        except PluginError:  # no current context: kubectl's own calls say what is wrong
            found = ""
        args.namespace = found.strip() or "default"
    return str(args.namespace)


def _trainingjob(args: argparse.Namespace) -> dict[str, Any]:
    text = _kubectl(args, "get", RESOURCE, args.name, "-n", _namespace(args), "-o", "json")
    body: dict[str, Any] = json.loads(text)
    return body


def _row(body: dict[str, Any]) -> tuple[JobRow, str]:
    """The TrainingJob's row (by uid, else by namespace and name) and the table's URL."""
    url = Settings.from_env().database_url
    check_database_driver(url)
    meta = body["metadata"]
    where = f"{meta['namespace']}/{meta['name']}"
    try:
        store = JobStore(url, readonly=True)
        try:
            row = store.get_by_uid(meta["uid"]) or store.get_by_name(
                meta["namespace"], meta["name"]
            )
        finally:
            store.close()
    except (SQLAlchemyError, OSError) as err:
        raise PluginError(
            f"cannot read the training_jobs table at {redact_url(url)} "
            f"({type(err).__name__}); point DATABASE_URL (or SHARED_DATA_PATH) at the "
            "operator's table"
        ) from None
    if row is None:
        raise PluginError(
            f"TrainingJob {where} has no row in the training_jobs table at "
            f"{redact_url(url)}; point DATABASE_URL (or SHARED_DATA_PATH) at the "
            "operator's table"
        )
    return row, url


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.{digits}f}"
    return str(value)


def trial_table(trials: list[dict[str, Any]]) -> list[str]:
    """The trial log as aligned text lines, a header first."""
    header = ("TRIAL", "MODEL", "STATE", "SPEARMAN", "BEST SO FAR", "SECONDS", "FINISHED")
    lines = [header] + [
        (
            str(t.get("trial", "-")),
            str(t.get("model", "-")),
            str(t.get("state", "-")),
            _cell(t.get("spearman")),
            _cell(t.get("best_so_far")),
            f"{t['duration_s']:.1f}" if isinstance(t.get("duration_s"), int | float) else "-",
            str(t.get("finished_at") or "-"),
        )
        for t in trials
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def cmd_trials(args: argparse.Namespace) -> int:
    body = _trainingjob(args)
    row, _url = _row(body)
    status = body.get("status") or {}
    if args.output == "json":
        print(json.dumps(row.trial_log, indent=2))
        return 0
    eta = f", ETA {status['eta']}" if status.get("eta") else ""
    print(
        f"TrainingJob {row.namespace}/{row.name} (row {row.id}): "
        f"{status.get('phase') or row.status}, trial {row.current_trial}/{row.total_trials}{eta}"
    )
    if not row.trial_log:
        print("no trial has finished yet")
        return 0
    print("\n".join(trial_table(row.trial_log)))
    return 0


def _patch_spec(args: argparse.Namespace, spec: dict[str, Any]) -> None:
    """Merge ``spec`` into the TrainingJob's spec; a field the cluster's CRD does not know
    (the API server drops it without a word) is an error."""
    text = _kubectl(
        args,
        "patch",
        RESOURCE,
        args.name,
        "-n",
        _namespace(args),
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
        "-o",
        "json",
    )
    kept = json.loads(text).get("spec") or {}
    for key, value in spec.items():
        if kept.get(key) != value:
            raise PluginError(
                f"the cluster's TrainingJob CRD has no spec.{key} (it dropped the field); "
                "upgrade the CRD to this release's (kubectl apply -f manifests/crd.yaml)"
            )


def _running(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """The TrainingJob, which must not have ended."""
    body = _trainingjob(args)
    phase = (body.get("status") or {}).get("phase")
    if phase in FINAL_PHASES:
        raise PluginError(
            f"TrainingJob {args.namespace}/{args.name} has already ended ({phase}); "
            f"nothing to {verb}"
        )
    return body


def cmd_cancel(args: argparse.Namespace) -> int:
    _running(args, "cancel")
    _patch_spec(args, {"cancel": True})
    print(
        f"trainingjob {args.namespace}/{args.name}: cancel requested; the trainer stops "
        "after its current trial and the TrainingJob ends Cancelled"
    )
    return 0


def cmd_suspend(args: argparse.Namespace) -> int:
    _running(args, "suspend")
    _patch_spec(args, {"suspend": True})
    print(
        f"trainingjob {args.namespace}/{args.name}: suspend requested; its trainer pod "
        f"stops, finished trials are kept; `kubectl tj resume {args.name}` resumes the study"
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _running(args, "resume")
    _patch_spec(args, {"suspend": False})
    print(f"trainingjob {args.namespace}/{args.name}: resume requested; the same study goes on")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", help="the TrainingJob's name")
    common.add_argument("-n", "--namespace", help="default: the current context's namespace")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="the kubeconfig file to use")
    parser = argparse.ArgumentParser(
        prog="kubectl tj", description="TrainingJobs from kubectl (trainingjob-operator)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    trials = sub.add_parser(
        "trials", parents=[common], help="the trial log from the training_jobs table"
    )
    trials.add_argument("-o", "--output", choices=("table", "json"), default="table")
    trials.set_defaults(func=cmd_trials)
    cancel = sub.add_parser(
        "cancel", parents=[common], help="stop the run after its current trial, for good"
    )
    cancel.set_defaults(func=cmd_cancel)
    suspend = sub.add_parser(
        "suspend", parents=[common], help="stop the trainer pod, keep the study (spec.suspend)"
    )
    suspend.set_defaults(func=cmd_suspend)
    resume = sub.add_parser("resume", parents=[common], help="resume a suspended TrainingJob")
    resume.set_defaults(func=cmd_resume)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (PluginError, SettingsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
