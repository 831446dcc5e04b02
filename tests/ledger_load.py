"""Submit declarations citing two licences in a loop until killed: the process test_licence_race.py kills with
SIGKILL to show a reservation is stored with its declaration or not at all.

    python -m tests.ledger_load PREFIX THREADS   (TRADEHUB_DATA_DIR, TRADEHUB_DATABASE_URL as the hub reads them)

Each thread submits PREFIX-<thread>-<n> for n = 0, 1, ...; every submission is printed once stored.
"""

from __future__ import annotations

import sys
import threading

from tradehub.bootstrap import Settings, build_declarations

from .ledger import DAY, cite, citing, item

LICENCES = ("LOAD-KG", "LOAD-TN")


def main(prefix: str, threads: int) -> None:
    app = build_declarations(Settings.from_env())
    app.today = lambda: DAY
    lock = threading.Lock()

    def submit(thread: int) -> None:
        for n in range(1_000_000):
            reference = f"{prefix}-{thread}-{n}"
            app.submit(citing(reference, item(cite(LICENCES[0], "1", "KGM"), cite(LICENCES[1], "250", "GRM")),
                              item(cite(LICENCES[0], "500", "GRM"))))
            with lock:
                print(reference, flush=True)

    workers = [threading.Thread(target=submit, args=(thread,), daemon=True) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
