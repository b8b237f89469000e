"""Regenerate the committed gRPC stubs from gateway.proto.

Usage: ``python -m fedledger.server.gateway.proto.generate [--check]``

grpcio-tools (pinned below 1.82, whose protobuf-7 output flwr's ``protobuf<7`` pin refuses)
writes ``import gateway_pb2``; we rewrite it into a package-relative import so the stubs work
inside ``fedledger.server.gateway.proto``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).parent
PROTO = "gateway.proto"
OUTPUTS = ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py")


def generate() -> dict[str, str]:
    """Run protoc on gateway.proto and return the generated files by name."""
    from grpc_tools import protoc  # test/dev dependency only

    with tempfile.TemporaryDirectory() as out:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        files = {name: (Path(out) / name).read_text(encoding="utf-8") for name in OUTPUTS}
    files["gateway_pb2_grpc.py"] = re.sub(
        r"^import gateway_pb2 as gateway__pb2$",
        "from . import gateway_pb2 as gateway__pb2",
        files["gateway_pb2_grpc.py"],
        flags=re.MULTILINE,
    )
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the stubs next to the .proto, or with ``--check`` report whether they are current."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed stubs differ")
    args = parser.parse_args(argv)
    files = generate()
    stale = [
        n
        for n, text in files.items()
        if not (PROTO_DIR / n).is_file() or (PROTO_DIR / n).read_text(encoding="utf-8") != text
    ]
    if args.check:
        print("stubs are current" if not stale else f"stale: {', '.join(stale)}")
        return 1 if stale else 0
    for name, text in files.items():
        (PROTO_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
