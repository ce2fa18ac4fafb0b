"""``tjctl operator``: run the TrainingJob operator."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tjcontract import checks
from tjcontract.layout import SHARED_FOLDERS


def cmd_operator(args: argparse.Namespace) -> int:
    import kopf

    from tjcore.settings import redact_url
    from tjoperator import (
        handlers,  # noqa: F401  (importing it registers the handlers)
        metrics,
    )
    from tjoperator.config import OperatorConfig

    try:
        config = OperatorConfig.from_env(
            namespaces=tuple(args.namespace) if args.namespace else None,
            trainer_image=args.trainer_image,
            pvc_claim=args.pvc_claim,
            bridge_namespace="" if args.no_bridge else args.bridge_namespace,
            cancel_grace_seconds=args.cancel_grace_seconds,
            image_pull_timeout_seconds=args.image_pull_timeout_seconds,
            metrics_port=args.metrics_port,
            metrics_address=args.metrics_address,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if config.metrics_port is not None:
        try:
            metrics.serve(config.metrics_port, config.metrics_address)
        except OSError as err:
            print(
                f"error: cannot serve metrics on {config.metrics_address}:{config.metrics_port} "
                f"({err.strerror or err}); choose another --metrics-port or --metrics-address",
                file=sys.stderr,
            )
            return 1
    prepare_shared_folders(config.shared_data_path)
    # kopf's format: a handler's lines (its per-object logger) start [namespace/name].
    kopf.configure(verbose=args.verbose, log_prefix=True)
    where = ", ".join(config.namespaces) if config.namespaces else "all namespaces"
    logging.getLogger("tjoperator").info(
        "watching TrainingJobs in %s; trainer image %s; shared PVC %s; table %s",
        where,
        config.trainer_image,
        config.pvc_claim,
        redact_url(config.database_url) if config.database_url else "none",
    )
    kopf.run(
        memo=kopf.Memo(config=config),  # the handlers' config (tjoperator.handlers)
        standalone=True,
        namespaces=list(config.namespaces),
        clusterwide=not config.namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


def prepare_shared_folders(root: Path) -> None:
    """Make the shared volume's folders that trainer pods mount by ``subPath``, as the
    operator's user (the pods' user): a folder the kubelet makes for a missing
    ``subPath`` belongs to root, and the trainer could not write it."""
    for folder in SHARED_FOLDERS:
        try:
            (root / folder).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            logging.getLogger("tjoperator").warning("cannot make %s: %s", root / folder, err)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tjctl operator`` to the command line."""
    parser = sub.add_parser("operator", help="run the TrainingJob operator (kopf)")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace to watch (repeat for several; default: "
        "TJ_WATCH_NAMESPACES or all namespaces)",
    )
    parser.add_argument("--trainer-image", help="default trainer image (TJ_TRAINER_IMAGE)")
    parser.add_argument("--pvc-claim", help="shared PVC of the trainer pods (TJ_SHARED_PVC)")
    parser.add_argument(
        "--bridge-namespace",
        help="namespace of TrainingJobs made from table rows "
        "(TJ_BRIDGE_NAMESPACE, default: default)",
    )
    parser.add_argument(
        "--no-bridge", action="store_true", help="do not turn pending table rows into TrainingJobs"
    )
    parser.add_argument(
        "--cancel-grace-seconds",
        type=checks.flag_type(checks.seconds(), "--cancel-grace-seconds"),
        help="time a cancelled trainer has to stop before its Job is "
        "deleted (TJ_CANCEL_GRACE_SECONDS, default 120)",
    )
    parser.add_argument(
        "--image-pull-timeout-seconds",
        type=checks.flag_type(checks.seconds(), "--image-pull-timeout-seconds"),
        help="time a trainer pod may keep failing to pull its image (ErrImagePull, "
        "ImagePullBackOff) before its TrainingJob fails (TJ_IMAGE_PULL_TIMEOUT_SECONDS, "
        "default 300)",
    )
    parser.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--metrics-port",
        help="serve Prometheus metrics on http://ADDRESS:PORT/metrics (TJ_METRICS_PORT; "
        "default: no metrics endpoint)",
    )
    parser.add_argument(
        "--metrics-address",
        help="address of the metrics endpoint (TJ_METRICS_ADDRESS, default 0.0.0.0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=cmd_operator)
