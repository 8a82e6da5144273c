"""A workload module that starts a spinning thread when it is imported (issue #25 item 7).

A reused trial host imported it once and adopted the thread as its own; it then ran beside
every later trial in that host.
"""

import threading


def _spin():
    while True:
        pass


threading.Thread(target=_spin, name="spins-from-import", daemon=True).start()


def work(task: int, size: int) -> int:
    return sum(i * i for i in range(size))
