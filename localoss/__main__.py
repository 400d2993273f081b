"""`python -m localoss`: the server on a port, for the demo and by hand."""

from __future__ import annotations

import argparse
import os
import sys

from localoss import Account, FaultRule, Faults, OssServer, Website


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="A strict OSS-compatible server on local disk.")
    parser.add_argument("--root", required=True, help="folder holding one folder per bucket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--region", default="cn-hangzhou", help="the region V4 signatures must name")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    parser.add_argument("--access-key-id", default=os.environ.get("OSS_SERVER_ACCESS_KEY_ID", "test-key-id"))
    parser.add_argument("--access-key-secret", default=os.environ.get("OSS_SERVER_ACCESS_KEY_SECRET", "test-secret"))
    parser.add_argument("--security-token", default=os.environ.get("OSS_SERVER_SECURITY_TOKEN", ""))
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every request")
    parser.add_argument("--error-rate", type=float, default=0, help="fraction of requests answered 500/503")
    parser.add_argument("--reset-rate", type=float, default=0, help="fraction of connections reset mid-body")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="an exact fault: 'METHOD KEYGLOB [op=NAME] [skip=N] [count=N|all] [delay=S] [status=N] "
        "[reset-after=N]' (repeatable)",
    )
    parser.add_argument(
        "--website",
        metavar="BUCKET[/PREFIX]",
        help="serve this bucket (or prefix) at / of the port, as its domain would (unsigned GETs)",
    )
    parser.add_argument("--index-document", default="", help="for --website (default: the bucket's, else index.html)")
    parser.add_argument("--error-document", default="", help="for --website: the key served for a missing path")
    parser.add_argument(
        "--error-status", type=int, choices=(200, 404), default=0, help="for --website: the error document's status"
    )
    parser.add_argument(
        "--domain", default="", help="also take virtual-hosted-style requests, for Host <bucket>.<DOMAIN>"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv[1:])
    account = Account(args.access_key_id, args.access_key_secret, args.security_token)
    try:
        rules = [FaultRule.parse(text) for text in args.fault]
    except ValueError as exc:
        parser.error(str(exc))
    faults = Faults(
        error_rate=args.error_rate, reset_rate=args.reset_rate, latency_s=args.latency_ms / 1000, rules=rules
    )
    website = None
    if args.website:
        website = Website.parse(
            args.website,
            index_document=args.index_document,
            error_document=args.error_document,
            error_status=args.error_status,
        )
    server = OssServer(
        (args.host, args.port),
        args.root,
        [account],
        region=args.region,
        faults=faults,
        quiet=not args.verbose,
        domain=args.domain,
        website=website,
    )
    for bucket in args.bucket:
        server.store.create_bucket(bucket)
    print(f"localoss listening on {server.endpoint} (root {server.store.root})", flush=True)
    if website is not None:
        print(f"  serving oss://{website.bucket}/{website.prefix} at {server.endpoint}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
