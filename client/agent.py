"""The node agent: ``fedledger node join`` keeps the node's key in its own process and signs for its ClientApps.

Flower's SuperNode starts a fresh ``flwr-clientapp`` process for every message. Before the agent,
each of them decrypted the keystore itself (scrypt, ~0.7 s) with the password handed down in an
environment variable. Now ``node join`` decrypts the keystore once, and the ClientApp processes
ask this agent to sign over a Unix socket, as ssh-agent does:

- the socket lives in a directory only the node's user can enter (0700), is itself 0600, and
  every connection's peer credentials (SO_PEERCRED) must be this user's;
- the agent signs EIP-712 typed data on the task's domain and transactions to the task
  contract only, so a process that reaches the socket cannot make it sign anything else;
- no key, password or seed crosses the socket: requests carry what to sign, answers the
  signature.

The agent also reveals votes by itself. A ClientApp that committed a vote leaves (round, bits,
salt) with the agent, which waits for the round to enter REVEALING and relays the signed reveal
at once; the reveal message that follows finds it done instead of paying for a fresh process.

Protocol: one JSON object per line each way. Requests ``{"op": ...}``: ``address``;
``sign_message`` (``version``, ``header``, ``body``: hex of an EIP-191 SignableMessage);
``sign_transaction`` (``tx``: the transaction dict, bytes as 0x-hex); ``reveal_later``
(``round``, ``bits``, ``salt``); ``reveal_status`` (``round``, ``wait`` seconds). Answers carry
``ok`` and the result, or ``ok: false`` and ``error``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from eth_account.messages import SignableMessage
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes

log = logging.getLogger(__name__)

EIP712_VERSION = b"\x01"
SOCKET_NAME = "agent.sock"
REVEAL_TIMEOUT = 600.0
"""Seconds the agent waits for a round to enter REVEALING before it gives the reveal up."""


class AgentError(RuntimeError):
    """The agent refused a request, or cannot be reached."""


@dataclass
class _Reveal:
    round: int
    bits: int
    salt: bytes
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "PENDING"
    reason: str = ""


class NodeAgent:
    """Signs for this node's ClientApps and reveals their votes; the key stays in this object."""

    def __init__(self, key: LocalAccount, gateway: Any, directory: Path | None = None) -> None:
        """Serve ``key`` for the task behind ``gateway`` (a GatewayClient) on a socket in ``directory``.

        ``directory`` (default: a fresh one under the temp dir) is created 0700 if missing and
        must belong to this user.
        """
        self._key = key
        self.gateway = gateway
        view = gateway.task()
        self.task_address = to_checksum_address(view.task_address)
        self._domain_header = _domain_header(view.domain)
        self.directory = directory or Path(tempfile.mkdtemp(prefix="fedledger-agent-"))
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stat = self.directory.stat()
        if stat.st_uid != os.getuid():
            raise AgentError(f"{self.directory} belongs to another user")
        os.chmod(self.directory, 0o700)
        self.path = self.directory / SOCKET_NAME
        if self.path.exists():
            self.path.unlink()  # a previous agent's socket
        self._reveals: dict[int, _Reveal] = {}
        self._lock = threading.Lock()
        agent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                if _peer_uid(self.request) != os.getuid():
                    return  # not this user's process: say nothing
                for line in self.rfile:
                    try:
                        answer = {"ok": True, **agent.answer(json.loads(line))}
                    except Exception as exc:  # every refusal goes back as a message
                        answer = {"ok": False, "error": str(exc)}
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        old = os.umask(0o177)  # the socket is created 0600
        try:
            self._server = Server(str(self.path), Handler)
        finally:
            os.umask(old)
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-agent", daemon=True)

    @property
    def address(self) -> str:
        """The node's address."""
        return str(self._key.address)

    def start(self) -> NodeAgent:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- requests

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request's answer (raises on a refused one)."""
        op = request.get("op")
        if op == "address":
            return {"address": self.address}
        if op == "sign_message":
            return {"signature": self._sign_message(request)}
        if op == "sign_transaction":
            return {"raw": self._sign_transaction(request["tx"])}
        if op == "reveal_later":
            return self._reveal_later(int(request["round"]), int(request["bits"]), bytes.fromhex(request["salt"]))
        if op == "reveal_status":
            return self._reveal_status(int(request["round"]), float(request.get("wait", 0)))
        raise AgentError(f"unknown request {op!r}")

    def _sign_message(self, request: dict[str, Any]) -> str:
        message = SignableMessage(HexBytes(request["version"]), HexBytes(request["header"]), HexBytes(request["body"]))
        if bytes(message.version) != EIP712_VERSION:
            raise AgentError("the agent signs EIP-712 typed data only")
        if bytes(message.header) != self._domain_header:
            raise AgentError("the agent signs typed data on this node's task domain only")
        return HexBytes(self._key.sign_message(message).signature).to_0x_hex()

    def _sign_transaction(self, tx: dict[str, Any]) -> str:
        if to_checksum_address(str(tx.get("to", ""))) != self.task_address:
            raise AgentError(f"the agent signs transactions to the task {self.task_address} only")
        fields = {k: (HexBytes(v) if k == "data" else v) for k, v in tx.items()}
        return HexBytes(self._key.sign_transaction(fields).raw_transaction).to_0x_hex()

    def _reveal_later(self, round_: int, bits: int, salt: bytes) -> dict[str, Any]:
        reveal = _Reveal(round_, bits, salt)
        with self._lock:
            self._reveals[round_] = reveal
            for old in [r for r in self._reveals if r < round_ - 4]:
                del self._reveals[old]
        threading.Thread(target=self._reveal_when_due, args=(reveal,), daemon=True, name=f"reveal-{round_}").start()
        return {"status": reveal.status}

    def _reveal_when_due(self, reveal: _Reveal) -> None:
        try:
            state = self.gateway.wait_for_phase(reveal.round, "REVEALING", timeout=REVEAL_TIMEOUT, poll=0.2)
            if state.phase != "REVEALING":
                reveal.status, reveal.reason = "MISSED", f"round {reveal.round} is {state.phase}"
            else:
                result = self.gateway.reveal_vote(self._key, reveal.round, reveal.bits, reveal.salt, wait=False)
                reveal.status, reveal.reason = _status_name(result.status), result.reason
        except Exception as exc:  # reported to the ClientApp, which reveals itself then
            reveal.status, reveal.reason = "FAILED", str(exc)
            log.warning("the agent could not reveal the vote of round %d: %s", reveal.round, exc)
        finally:
            reveal.done.set()

    def _reveal_status(self, round_: int, wait: float) -> dict[str, Any]:
        with self._lock:
            reveal = self._reveals.get(round_)
        if reveal is None:
            return {"status": "UNKNOWN", "reason": f"no vote of round {round_} was left with the agent"}
        reveal.done.wait(timeout=wait)
        return {"status": reveal.status, "reason": reveal.reason}


def _domain_header(domain: Any) -> bytes:
    """The EIP-712 domain separator of ``domain`` (the header of every message signed on it)."""
    from eth_account.messages import encode_typed_data

    from fedledger.contracts import typed_data as td

    sample = td.coordinator_command_message("flush", 0, b"\0" * 32, 0)
    return bytes(encode_typed_data(full_message=td.typed_data(td.COORDINATOR_COMMAND, sample, domain)).header)


def _status_name(status: int) -> str:
    from fedledger.server.gateway.proto import gateway_pb2 as pb

    return pb.ActionStatus.Name(status)


def _peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class AgentAccount:
    """What the ClientApp holds instead of a key: an account whose signatures the agent makes.

    It offers what fedledger signs with: ``address``, ``sign_message`` (EIP-712) and
    ``sign_transaction``, as eth-account's LocalAccount does.
    """

    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        """Talk to the agent listening at ``path``."""
        self.path = str(path)
        self.timeout = timeout
        self._address: str | None = None

    def request(self, **request: Any) -> dict[str, Any]:
        """Send one request; return the answer, or raise :class:`AgentError`."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(sock.makefile("rb").readline() or b"{}")
        except (OSError, ValueError) as exc:
            raise AgentError(f"the node agent at {self.path} did not answer: {exc}") from exc
        if not answer.get("ok"):
            raise AgentError(f"the node agent refused: {answer.get('error', 'no answer')}")
        return answer

    @property
    def address(self) -> str:
        """The node's address (asked once)."""
        if self._address is None:
            self._address = to_checksum_address(self.request(op="address")["address"])
        return self._address

    def sign_message(self, message: SignableMessage) -> SimpleNamespace:
        """EIP-712 signature of ``message`` (``.signature``)."""
        answer = self.request(
            op="sign_message",
            version=HexBytes(message.version).to_0x_hex(),
            header=HexBytes(message.header).to_0x_hex(),
            body=HexBytes(message.body).to_0x_hex(),
        )
        return SimpleNamespace(signature=HexBytes(answer["signature"]))

    def sign_transaction(self, tx: dict[str, Any]) -> SimpleNamespace:
        """The signed raw transaction (``.raw_transaction``)."""
        fields = {k: (HexBytes(v).to_0x_hex() if isinstance(v, bytes | bytearray) else v) for k, v in tx.items()}
        return SimpleNamespace(raw_transaction=HexBytes(self.request(op="sign_transaction", tx=fields)["raw"]))

    def reveal_later(self, round_: int, bits: int, salt: bytes) -> None:
        """Leave a committed vote with the agent, which reveals it once the round enters REVEALING."""
        self.request(op="reveal_later", round=round_, bits=str(bits), salt=salt.hex())

    def reveal_status(self, round_: int, wait: float = 0.0) -> tuple[str, str]:
        """How the agent's reveal of ``round_`` went (after waiting up to ``wait`` s for it)."""
        answer = self.request(op="reveal_status", round=round_, wait=wait)
        return str(answer["status"]), str(answer.get("reason", ""))
