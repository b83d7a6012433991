"""A node that limits eth_getLogs ranges, as Besu does (`--rpc-max-logs-range`): the indexer halves
its range until the node answers, reaches the head, and its read models match the contracts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from node.indexer.audit import audit
from node.indexer.follower import Indexer
from tests.indexer.conftest import Chain
from tests.indexer.scenario import busy_day

MAX_RANGE = 4  # blocks per eth_getLogs this "node" accepts


class LimitedNode:
    """A JSON-RPC proxy in front of the devnet that refuses eth_getLogs over more than MAX_RANGE
    blocks with Besu's error, and counts what it refused."""

    def __init__(self, upstream: str) -> None:
        self.refused = 0
        self.largest_served = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                calls = payload if isinstance(payload, list) else [payload]
                answers: list[dict[str, Any]] = []
                forward = []
                for call in calls:
                    if call["method"] == "eth_getLogs":
                        params = call["params"][0]
                        span = int(params["toBlock"], 16) - int(params["fromBlock"], 16) + 1
                        if span > MAX_RANGE:
                            node.refused += 1
                            answers.append(
                                {
                                    "jsonrpc": "2.0",
                                    "id": call["id"],
                                    "error": {
                                        "code": -32005,
                                        "message": "Requested range exceeds maximum range limit",
                                    },
                                }
                            )
                            continue
                        node.largest_served = max(node.largest_served, span)
                    forward.append(call)
                if forward:
                    answers += httpx.post(upstream, json=forward, timeout=60).json()
                body = json.dumps(answers if isinstance(payload, list) else answers[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def limited(chain: Chain) -> Iterator[LimitedNode]:
    node = LimitedNode(chain.devnet.rpc_url)
    yield node
    node.close()


def test_the_indexer_follows_a_node_with_a_logs_range_limit(
    chain: Chain, engine: Engine, limited: LimitedNode
) -> None:
    snap = chain.devnet.snapshot()
    try:
        busy_day(chain.orgs, "RANGE")
        indexer = Indexer(engine, chain.w3, chain.manifest, initial_range=64)
        indexer.rpc_url = limited.url  # its log and header reads go through the limiting node
        progress = indexer.sync()
        assert limited.refused >= 4  # 64 -> 32 -> 16 -> 8 -> 4
        assert limited.largest_served <= MAX_RANGE
        assert progress.logs > 40
        report = audit(engine, chain.w3, chain.deployment.contracts, sample=None)
        assert report.ok, report.divergences
    finally:
        chain.devnet.revert(snap)
