"""The parent-child message shape over a real pipe and as JSON lines."""

from __future__ import annotations

import multiprocessing

import pytest

from loadkit.runtime.child_messages import (
    ERROR,
    GONE,
    OK,
    ChildFailed,
    Message,
    expect,
    from_json_line,
    receive,
    send,
    send_error,
    to_json_line,
)


def _answer_once(conn) -> None:  # runs in a child process
    message = receive(conn, 10)
    if message.kind == "double":
        send(conn, OK, [2 * x for x in message.body])
    else:
        send_error(conn, ValueError(f"unknown command {message.kind!r}"))
    conn.close()


def _round_trip(kind: str, body: object) -> Message | None:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_answer_once, args=(child,))
    proc.start()
    child.close()
    try:
        send(parent, kind, body)
        return receive(parent, 20)
    finally:
        proc.join(10)


def test_a_child_answers_ok_or_error_across_a_real_process() -> None:
    assert _round_trip("double", (1, 2)) == Message(OK, [2, 4])
    assert _round_trip("triple", ()) == Message(ERROR, "ValueError: unknown command 'triple'")


def test_silence_and_a_closed_end_are_told_apart() -> None:
    parent, child = multiprocessing.Pipe()
    assert receive(parent, 0.05) is None
    with pytest.raises(ChildFailed, match=r"load client gave no answer within 0\.05 s"):
        expect(parent, OK, 0.05, "load client")
    send_error(child, RuntimeError("Redis went away"))
    with pytest.raises(ChildFailed, match=r"^coordinator c3: RuntimeError: Redis went away$"):
        expect(parent, OK, 1, "coordinator c3")
    child.close()
    assert receive(parent, 1) is GONE
    with pytest.raises(ChildFailed, match="exited without answering"):
        expect(parent, OK, 1, "producer p0")


def test_json_lines_carry_the_same_messages_and_skip_stray_output() -> None:
    line = to_json_line("progress", {"phase": "spawn", "fraction": 0.5})
    assert "\n" not in line
    assert from_json_line(line) == Message("progress", {"phase": "spawn", "fraction": 0.5})
    assert from_json_line("Traceback (most recent call last):") is None
    assert from_json_line('{"phase": "x"}') is None
    assert from_json_line("[1, 2]") is None
