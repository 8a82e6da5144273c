"""I/O-bound workloads: they spend their time waiting, with the GIL released."""

import time


def sleep(task: int, size: int) -> int:
    """Sleep ``size`` milliseconds; the answer is the task index.

    >>> sleep(3, 1)
    3
    """
    time.sleep(size / 1000.0)
    return task


def fsync_write(task: int, size: int) -> list:
    """Write ``size`` KiB to a new file in a temporary directory, fsync it, read it back.

    The directory is removed before returning, whatever happens. The answer is
    [bytes read back, crc32 of them], so a short or torn write is caught by the checksum.
    Most of the time is spent in ``os.fsync`` with the GIL released.

    >>> fsync_write(2, 4)[0]
    4096
    """
    import os
    import tempfile
    import zlib

    # Each KiB carries the task index so tasks write different bytes.
    chunk = (task.to_bytes(4, "little") * 256)[:1024]
    with tempfile.TemporaryDirectory(prefix="conclab-io-") as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            for _ in range(size):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        with open(path, "rb") as f:
            data = f.read()
    return [len(data), zlib.crc32(data)]


#: Seconds any one socket operation may wait before the loopback exchange gives up.
SOCKET_TIMEOUT_S = 10.0


def _serve_one(server, rounds: int) -> None:
    """Answer ``rounds`` 8-byte requests on one connection with request + 1, then close."""
    import socket

    try:
        conn, _ = server.accept()
    except OSError:  # timed out, or the client side closed the listener
        return
    with conn:
        conn.settimeout(SOCKET_TIMEOUT_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            request = _recv_exact(conn, 8)
            if request is None:
                return
            conn.sendall((int.from_bytes(request, "little") + 1).to_bytes(8, "little"))


def _recv_exact(conn, n: int):
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return buf


def loopback_echo(task: int, size: int) -> int:
    """``size`` request/response round trips over TCP to a server this call starts on 127.0.0.1.

    The server is a thread listening on 127.0.0.1 only (an ephemeral port, never another
    interface), serves exactly one connection of ``size`` requests and exits; every socket
    operation has a timeout, and the server thread is joined before returning, so nothing
    outlives the call. Each request is a number, each response that number + 1; the answer
    is the sum of the responses.

    >>> loopback_echo(0, 3)  # responses 1, 2, 3
    6
    """
    import socket
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(SOCKET_TIMEOUT_S)
        # Not a daemon: an isolated subinterpreter (PEP 684) refuses daemon threads, and this one
        # needs none: every socket call times out and the thread is joined below.
        thread = threading.Thread(target=_serve_one, args=(server, size))
        thread.start()
        total = 0
        try:
            with socket.create_connection(server.getsockname(), timeout=SOCKET_TIMEOUT_S) as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(size):
                    client.sendall((task * size + i).to_bytes(8, "little"))
                    response = _recv_exact(client, 8)
                    if response is None:
                        raise ConnectionError("loopback server closed the connection early")
                    total += int.from_bytes(response, "little")
        finally:
            thread.join(SOCKET_TIMEOUT_S)
    finally:
        server.close()
    return total


# --- The same waits as coroutines, for the asyncio backend -------------------------------
# Same answers as their plain twins, so threads and asyncio are compared on the same waits.


async def async_sleep(task: int, size: int) -> int:
    """``await asyncio.sleep`` for ``size`` milliseconds; the answer is the task index.

    >>> import asyncio
    >>> asyncio.run(async_sleep(3, 1))
    3
    """
    import asyncio

    await asyncio.sleep(size / 1000.0)
    return task


async def async_loopback_echo(task: int, size: int) -> int:
    """``loopback_echo`` with asyncio streams: a server on 127.0.0.1 (ephemeral port) for one
    connection of ``size`` requests, each answered with request + 1, all on the caller's loop.

    Every read waits at most ``SOCKET_TIMEOUT_S``; the server is closed before returning.
    The answer equals ``loopback_echo(task, size)``.

    >>> import asyncio
    >>> asyncio.run(async_loopback_echo(2, 3)) == loopback_echo(2, 3)
    True
    """
    import asyncio
    import socket

    async def serve(reader, writer):
        try:
            for _ in range(size):
                request = await reader.readexactly(8)
                writer.write((int.from_bytes(request, "little") + 1).to_bytes(8, "little"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), SOCKET_TIMEOUT_S)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        total = 0
        try:
            for i in range(size):
                writer.write((task * size + i).to_bytes(8, "little"))
                response = await asyncio.wait_for(reader.readexactly(8), SOCKET_TIMEOUT_S)
                total += int.from_bytes(response, "little")
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return total
