"""The seed blog post's programs, corrected, as workloads (see ``configs/seed.yaml``).

The post ("Multithreading vs Multiprocessing in Python") starts two threads, then two
processes, running ``calc_square(7)`` and ``calc_quad(7)``, and asks the reader to "measure
the delta between threads, between process & threading, relative to never using either".
Its code cannot run as printed:

* ``calc_quad()`` takes no argument but is started with ``args=(number,)``;
* ``print('Square': , ...)`` is a syntax error;
* nothing is ever ``start()``-ed or ``join()``-ed, so nothing runs;
* results are printed, not returned, so nothing can be checked.

Here each function returns its answer (so conc_lab can check every backend against the
sequential one) and the backend does the starting and joining. ``size`` says how many
numbers one task computes: ``size=1`` is the post's literal program (one multiplication,
so the measured delta is pure thread/process overhead), a large ``size`` is the same code
doing enough work for the GIL to matter. Task ``t`` covers the numbers
``7 + t*size .. 7 + (t+1)*size - 1``, so task 0 with ``size=1`` is the post's ``number = 7``.

The post's last question (why ``result`` stays ``None`` in the parent) is an experiment
of its own: ``experiments.memory:result_visible``.
"""

#: The post's ``number = 7``: where task 0 starts.
NUMBER = 7


def calc_square(task: int, size: int) -> int:
    """Sum of n*n over the task's ``size`` numbers (the post's ``calc_square``, returning).

    >>> calc_square(0, 1)  # the post's calc_square(7)
    49
    >>> calc_square(1, 2)  # 9*9 + 10*10
    181
    """
    total = 0
    start = NUMBER + task * size
    for number in range(start, start + size):
        total += number * number
    return total


def calc_quad(task: int, size: int) -> int:
    """Sum of n**4 over the task's ``size`` numbers (the post's ``calc_quad``, taking its argument).

    >>> calc_quad(0, 1)  # the post's calc_quad(7)
    2401
    """
    total = 0
    start = NUMBER + task * size
    for number in range(start, start + size):
        total += number * number * number * number
    return total


def square_and_quad(task: int, size: int) -> int:
    """The post's program as one trial: even tasks run ``calc_square``, odd ones ``calc_quad``.

    With ``tasks: 2`` and ``workers: 2`` this is exactly the post's thread1/thread2 (or
    p1/p2): one worker squares, the other raises to the fourth power, both on ``number = 7``
    when ``size=1``.

    >>> [square_and_quad(t, 1) for t in range(2)]
    [49, 2401]
    """
    # Both halves start at the same number, as the post's two workers do.
    pair = task // 2
    return calc_square(pair, size) if task % 2 == 0 else calc_quad(pair, size)
