"""The embedded MongoDB-wire server (secantusdb), with a transaction reaper.

``python -m batchscraper.store.embedded_server --port P --storage-path DIR`` runs
secantusdb as ``python -m secantus`` does, plus one thing: a thread that aborts
transactions idle past ``TRANSACTION_LIFETIME_SECONDS``. secantusdb aborts such
a transaction only when another transactional command arrives, and a plain
write that conflicts with it retries inside the server until then; so a crawl
killed in the middle of a transaction (``kill -9``) left the batch document
locked, and a resumed crawl's writes waited forever. mongod has a background
reaper (``transactionLifetimeLimitSeconds``); this is its stand-in.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from secantus.server import SecantusDBServer

# Our transactions last milliseconds; one idle this long belongs to a dead process.
TRANSACTION_LIFETIME_SECONDS = 30.0
REAP_INTERVAL_SECONDS = 1.0

logger = logging.getLogger(__name__)


def reap_forever(server: SecantusDBServer, stop: threading.Event) -> None:
    """Abort expired transactions every ``REAP_INTERVAL_SECONDS`` until ``stop``."""
    while not stop.wait(REAP_INTERVAL_SECONDS):
        try:
            reaped = server.transactions.prune_expired()
        except Exception:  # the reaper must outlive one bad pass
            logger.exception("transaction reaper failed")
            continue
        if reaped:
            logger.warning("aborted %d abandoned transaction(s)", reaped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--transaction-lifetime", type=float, default=TRANSACTION_LIFETIME_SECONDS,
                        metavar="SECONDS", help="idle transactions are aborted after this long")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=args.storage_path,
        replica_set_name="secantus",  # a replica set: transactions
        transaction_lifetime_seconds=args.transaction_lifetime,
    )
    stop = threading.Event()

    def handle_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, handle_signal)
    signal.signal(signal.SIGTERM, handle_signal)
    server.start()
    threading.Thread(target=reap_forever, args=(server, stop), daemon=True).start()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
