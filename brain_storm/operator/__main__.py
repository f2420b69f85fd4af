"""The operator's command line.

    python -m brain_storm.operator [--namespace NS]... [--peering NAME]
                                   [--liveness URL] [--verbose]

Without ``--namespace`` it serves every namespace; a namespace may be a glob
(``team-*``) and the option may be repeated.

Exactly one operator may be active at a time: two would apply the same
Deployments and write the same status, each undoing the other.  Either

- run one replica with a ``Recreate`` Deployment strategy (the default here:
  the operator runs standalone), so the old pod is gone before the new one
  starts; or
- run several with ``--peering NAME``: kopf's peering then keeps all but the
  highest-priority one paused.  It needs kopf's peering CRD
  (``clusterkopfpeerings`` for all namespaces, ``kopfpeerings`` otherwise)
  and a peering object of that NAME.

Environment: BRAIN_STORM_SAVER_IMAGE (the savers' image when a binding names
none), BRAIN_STORM_OPERATOR_PROBE_INTERVAL_S (seconds between reachability
checks, default 60), BRAIN_STORM_OPERATOR_PROBE_RETRY_S (first retry of an
unreachable endpoint, default 5), BRAIN_STORM_OPERATOR_PROBE_TIMEOUT_S
(default 3), and KUBECONFIG outside a cluster.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import brain_storm.operator.handlers  # noqa: F401  (registers the handlers)

    namespaces = arguments.namespace or []
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=arguments.peering is None,
        peering_name=arguments.peering,
        liveness_endpoint=arguments.liveness,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brain_storm.operator",
        description="Run brain_storm savers for SaverBinding resources.",
    )
    parser.add_argument("-n", "--namespace", action="append", metavar="NS",
                        help="serve this namespace or glob; repeat for more "
                             "(default: all namespaces)")
    parser.add_argument("--peering", metavar="NAME",
                        help="coordinate with other replicas through kopf's "
                             "peering object NAME (default: standalone)")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve kopf's liveness probe, e.g. "
                             "http://0.0.0.0:8080/healthz")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


if __name__ == "__main__":
    sys.exit(main())
