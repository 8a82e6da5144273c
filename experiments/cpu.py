"""CPU-bound workloads in pure Python: they hold the GIL the whole time."""


def sum_squares(task: int, size: int) -> int:
    """Sum of i*i for i in [task*size, (task+1)*size): a tight pure-Python loop.

    >>> sum_squares(0, 4)
    14
    """
    total = 0
    for i in range(task * size, (task + 1) * size):
        total += i * i
    return total


def count_primes(task: int, size: int) -> int:
    """Primes in [task*size, (task+1)*size) by trial division.

    >>> count_primes(0, 10)
    4
    """
    count = 0
    for n in range(max(2, task * size), (task + 1) * size):
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


def mandelbrot_row(task: int, size: int) -> int:
    """Escape iterations summed over one row of a ``size`` x ``size`` Mandelbrot image.

    Pure-Python float arithmetic (no ints growing), at most 50 iterations per point, over
    the region [-2, 0.5] x [-1.25, 1.25]. Task 0 is the middle row (through y = 0, the
    costliest, so ``size: auto`` calibrates on the worst case); task t is the row t below
    it, wrapping around at the bottom edge.

    >>> mandelbrot_row(0, 4)  # y = 0: all four points stay bounded for 50 iterations
    200
    """
    y = -1.25 + 2.5 * ((task + size // 2) % size) / size
    total = 0
    for col in range(size):
        x = -2.0 + 2.5 * col / size
        zr = zi = 0.0
        n = 0
        while n < 50 and zr * zr + zi * zi <= 4.0:
            zr, zi = zr * zr - zi * zi + x, 2.0 * zr * zi + y
            n += 1
        total += n
    return total


# --- Work that releases the GIL in C --------------------------------------------------
# hashlib drops the GIL while hashing buffers over 2 KiB, and zlib while it deflates, so
# these are where threads DO scale. Buffers are built once per process (cached), from a
# fixed seed, so the answer depends only on (task, size) and building them is not timed
# again on every call.

_MIB = 1 << 20
_BLOCKS: dict = {}


def _block(kind: str) -> bytes:
    """One MiB of fixed bytes: random-looking (``"random"``) or text-like (``"text"``)."""
    block = _BLOCKS.get(kind)
    if block is None:
        import random

        rng = random.Random(20240521)
        if kind == "random":
            block = rng.getrandbits(8 * _MIB).to_bytes(_MIB, "little")  # randbytes is 3.9+
        else:
            # Words from a small vocabulary: compresses about 3:1, like logs or JSON.
            words = [
                bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(400)
            ]
            out = bytearray()
            while len(out) < _MIB:
                out += rng.choice(words) + b" "
            block = bytes(out[:_MIB])
        _BLOCKS[kind] = block
    return block


def sha256_blocks(task: int, size: int) -> str:
    """SHA-256 hex digest of ``size`` MiB: the task index, then ``size`` fixed 1 MiB blocks.

    >>> sha256_blocks(0, 1) == sha256_blocks(0, 1) != sha256_blocks(1, 1)
    True
    """
    import hashlib

    block = _block("random")
    digest = hashlib.sha256(task.to_bytes(8, "little"))
    for _ in range(size):
        digest.update(block)  # the GIL is released for the whole MiB
    return digest.hexdigest()


def zlib_compress(task: int, size: int) -> list:
    """Compress ``size`` text-like MiB blocks (level 6); answer: [compressed bytes, crc32 of them].

    Each block is prefixed with the task index so tasks differ.

    >>> a, b = zlib_compress(0, 1)
    >>> 0 < a < 1 << 20
    True
    """
    import zlib

    block = _block("text")
    prefix = task.to_bytes(8, "little")
    total = 0
    crc = 0
    for _ in range(size):
        packed = zlib.compress(prefix + block, 6)  # deflate runs with the GIL released
        total += len(packed)
        crc = zlib.crc32(packed, crc)
    return [total, crc]


# --- Pure-Python CPU work as a coroutine, for the asyncio backend ---------------------------
# It never awaits: the loop runs one task to its end before the next starts. What asyncio
# does with CPU work, measured, not assumed.


async def async_sum_squares(task: int, size: int) -> int:
    """``sum_squares`` as an ``async def`` (no await inside): the same answer.

    >>> import asyncio
    >>> asyncio.run(async_sum_squares(0, 4))
    14
    """
    return sum_squares(task, size)
