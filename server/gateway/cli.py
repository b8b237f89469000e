"""``fedledger gateway serve|certs``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console

from fedledger.deploy.cli import add_task_options, task_fields
from fedledger.errors import CommandError

from .settings import GatewaySettings

console = Console()
err_console = Console(stderr=True)
DEFAULTS = GatewaySettings()
MIB = 1024 * 1024


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``gateway`` command group."""
    group = commands.add_parser("gateway", help="run the gRPC gateway (relayer, blob store, queries)")
    sub = group.add_subparsers(title="gateway commands", dest="gateway_command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve a task: on the embedded chain or through a JSON-RPC node")
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--embedded", action="store_true", help="run an in-process chain and deploy a task on it")
    where.add_argument("--rpc-url", help="JSON-RPC node of an existing deployment (needs --deployment)")
    serve.add_argument("--deployment", type=Path, help="deployment manifest written by `fedledger deploy --out`")
    serve.add_argument("--relayer-key-file", type=Path, help="key paying the relayed batches (rpc mode)")
    serve.add_argument("--dev-accounts", type=int, default=0, help="embedded: fund this many dev keys (1..N)")
    serve.add_argument("--host", default=DEFAULTS.host, help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULTS.port, help="port (0: any free port; default %(default)s)")
    serve.add_argument("--data-dir", type=Path, default=DEFAULTS.data_dir, help="blobs and discovery files")
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM), with --tls-key")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    serve.add_argument(
        "--flush-window", type=float, default=DEFAULTS.flush_window, help="max seconds an action waits in the queue"
    )
    serve.add_argument(
        "--max-blob-mib", type=int, default=DEFAULTS.max_blob_bytes // MIB, help="largest blob accepted, in MiB"
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_task_options(serve)
    serve.set_defaults(handler=_serve)

    certs = sub.add_parser("certs", help="make a CA and a server certificate for the gateway's and SuperLink's TLS")
    certs.add_argument("--out", type=Path, required=True, help="folder for ca.pem, server.pem and their keys")
    certs.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="name or IP the certificate is for (repeatable; default localhost, 127.0.0.1)",
    )
    certs.set_defaults(handler=_certs)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)


def _ledger(args: argparse.Namespace) -> object:
    from fedledger.deploy.anvil import ANVIL_DEV_KEY
    from fedledger.keys import load_key

    from .ledger import open_embedded, open_rpc

    if args.embedded:
        if args.deployment is not None:
            raise CommandError("--deployment belongs to --rpc-url; --embedded deploys its own task")
        if args.dev_accounts < 0:
            raise CommandError("--dev-accounts cannot be negative")
        ledger, keys = open_embedded(task_fields(args), dev_accounts=args.dev_accounts, pool_wei=args.pool)
        if keys:
            console.print(f"funded dev keys 0..{len(keys) - 1} (0 is the coordinator {keys[0].address})")
        return ledger
    if args.deployment is None:
        raise CommandError("--rpc-url needs --deployment FILE (written by `fedledger deploy --out`)")
    if args.relayer_key_file is not None:
        relayer = load_key(args.relayer_key_file)
    else:
        from eth_account import Account

        err_console.print("[bold yellow]WARNING: no --relayer-key-file, relaying with anvil's first DEV KEY.[/]")
        relayer = Account.from_key(ANVIL_DEV_KEY)
    return open_rpc(args.rpc_url, args.deployment, relayer)


def _serve(args: argparse.Namespace) -> int:
    from .server import GatewayServer

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.max_blob_mib <= 0 or args.flush_window <= 0:
        raise CommandError("--max-blob-mib and --flush-window must be positive")
    settings = GatewaySettings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_blob_bytes=args.max_blob_mib * MIB,
        flush_window=args.flush_window,
    )
    try:
        server = GatewayServer(_ledger(args), settings)  # type: ignore[arg-type]
        address = server.start()
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    ledger = server.ledger
    console.print(f"gateway listening on {address} task={ledger.task.address} chain={ledger.chain_id}", highlight=False)
    sys.stdout.flush()

    def stop(signum: int, _frame: FrameType | None) -> None:
        console.print(f"received {signal.Signals(signum).name}, stopping (relaying queued actions) ...")
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait()
    return 0


def _certs(args: argparse.Namespace) -> int:
    from .certs import DEFAULT_HOSTS, make_certificates

    files = make_certificates(args.out, tuple(args.hosts or DEFAULT_HOSTS))
    console.print(f"CA certificate:     {files.ca_cert}  (clients pass it as --tls-ca)")
    console.print(f"server certificate: {files.server_cert}  key: {files.server_key}")
    return 0
