"""Run the gateway: gRPC server with health checking, reflection and optional TLS."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fedledger.contracts.bindings import EMBEDDED_TX_GAS, Sent
from fedledger.contracts.errors import decode_revert
from fedledger.contracts.typed_data import SignedAction
from fedledger.contracts.types import Action

from .actionlog import ActionLog, Outcome
from .blobstore import LocalBlobStore
from .ledger import Ledger
from .proto import gateway_pb2 as pb
from .proto import gateway_pb2_grpc as pb_grpc
from .relayer import Relayer
from .service import GatewayService
from .settings import GatewaySettings

log = logging.getLogger(__name__)

_ACTIONS = {"CommitUpdate": Action.COMMIT_UPDATE, "CommitVote": Action.COMMIT_VOTE, "RevealVote": Action.REVEAL_VOTE}
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class GatewayServer:
    """The gateway process: ledger + blob store + relayer behind one gRPC server."""

    def __init__(self, ledger: Ledger, settings: GatewaySettings) -> None:
        """Prepare (nothing listens before :meth:`start`)."""
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key, or neither")
        self.ledger = ledger
        self.settings = settings
        self.blobs = LocalBlobStore(settings.data_dir / "blobs", max_bytes=settings.max_blob_bytes)
        # One log per task: an embedded chain is new at every start, and its task with it.
        self.actions = ActionLog(settings.data_dir / f"actions-{ledger.chain_id}-{ledger.task.address}.db")
        self.relayer = Relayer(
            self._send_batch, window=settings.flush_window, max_batch=settings.max_batch, log=self.actions
        )
        self.service = GatewayService(ledger, self.blobs, self.relayer)
        self.health = health.HealthServicer()
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="gateway"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        pb_grpc.add_GatewayServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = 0
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch_chain, name="gateway-health", daemon=True)

    def _send_batch(self, actions: Sequence[SignedAction]) -> Sent:
        ledger = self.ledger
        # A batch never reverts for a bad entry, so on the embedded chain (where gas is free) it
        # is sent without the trial call that would otherwise execute it twice.
        gas = EMBEDDED_TX_GAS if ledger.embedded else None

        def relay() -> Sent:
            if not actions[0].action.round_action:
                return ledger.task.relay(ledger.relayer, actions, gas=gas)
            # Seats, the committed votes a reveal brings and the proposers come from the events.
            record = ledger.round_history(ledger.current_round())
            committee = (record.proposers, record.voters) if record is not None else ([], [])
            committed = record.committed_votes() if record is not None else []
            return ledger.task.relay(ledger.relayer, actions, gas=gas, committee=committee, committed=committed)

        return ledger.send(relay)

    def _on_chain(self, signed: SignedAction) -> Outcome | None:
        """The outcome of a logged action the chain already holds (None: it never reached the chain).

        Round actions are looked up in the round's events (its commitment, vote or reveal, or an
        ``ActionRejected`` of the signer); a membership action used its nonce once applied.
        """
        ledger, signer = self.ledger, signed.signer
        found = Outcome(True, "found on chain when the gateway restarted", b"", 0, 0)
        if not signed.action.round_action:
            return found if ledger.run(lambda: ledger.task.member(signer)).nonce > signed.message["nonce"] else None
        record = ledger.round_history(int(signed.message["round"]))
        if record is None:
            return None
        held = {"CommitUpdate": record.updates, "CommitVote": record.vote_commitments, "RevealVote": record.reveals}
        if signer in held[signed.action.name]:
            return found
        kind = _ACTIONS[signed.action.name]
        for event in record.rejected:
            if event.args["signer"] == signer and Action(event.args["action"]) is kind:
                return Outcome(False, decode_revert(bytes(event.args["reason"])).describe(), b"", 0, 0)
        return None

    @property
    def address(self) -> str:
        """``host:port`` clients connect to."""
        return f"{self.settings.host}:{self.port}"

    def start(self) -> str:
        """Listen and serve; return the address (the port is chosen when settings.port is 0)."""
        target = f"{self.settings.host}:{self.settings.port}"
        if self.settings.tls_cert is not None and self.settings.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(self.settings.tls_key.read_bytes(), self.settings.tls_cert.read_bytes())]
            )
            self.port = self.server.add_secure_port(target, credentials)
        else:
            self.port = self.server.add_insecure_port(target)
        if self.port == 0:
            raise OSError(f"cannot listen on {target}")
        # Before any call is served: a client's retry must find its logged action pending or done.
        found, queued = self.relayer.recover(self._on_chain)
        if found or queued:
            log.warning("action log: %d unfinished actions were on chain already, %d queued again", found, queued)
        self.server.start()
        self._set_health(self.ledger.ping())
        self._monitor.start()
        self._write_discovery()
        log.info("gateway listening on %s for task %s", self.address, self.ledger.task.address)
        return self.address

    def _write_discovery(self) -> None:
        """Write data_dir/gateway.json and deployment.json so local processes can find this gateway."""
        directory = self.settings.data_dir
        directory.mkdir(parents=True, exist_ok=True)
        self.ledger.manifest.save(directory / "deployment.json")
        info = {
            "address": self.address,
            "tls": self.settings.tls_cert is not None,
            "task": self.ledger.task.address,
            "chain_id": self.ledger.chain_id,
            "rpc_url": self.ledger.rpc_url,
        }
        tmp = directory / "gateway.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        tmp.replace(directory / "gateway.json")

    def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _watch_chain(self) -> None:
        while not self._stop.wait(self.settings.health_interval):
            self._set_health(self.ledger.ping())

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, relay what is queued, and shut down."""
        self._stop.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.relayer.stop(flush=True)
        self.actions.close()

    def wait(self) -> None:
        """Block until the server stops."""
        self.server.wait_for_termination()
