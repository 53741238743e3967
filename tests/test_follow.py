"""Following a stream: a wait ends when its line arrives, names what it waited for otherwise, and
closing removes the whole process group."""

from __future__ import annotations

import os
import time

import pytest

from flatbed.follow import Stream
from flatbed.waiters import WaitTimeout


def sh(script: str) -> Stream:
    return Stream(["sh", "-c", script], name="test stream")


def test_a_wait_ends_when_the_line_arrives_and_lines_keep_their_arrival_time() -> None:
    with sh("echo starting; sleep 0.3; printf 'lease of 10.0.0.2 obtained\\r\\n'; sleep 30") as stream:
        started = time.monotonic()
        match = stream.wait_for(r"(?m)^lease of (\S+) obtained$", timeout=10, what="the lease")
        waited = time.monotonic() - started
        assert match.group(1) == "10.0.0.2"            # CRLF line ends read as plain newlines
        assert 0.2 < waited < 5
        line = stream.first(r"lease of")
        assert line is not None and line.at - started >= 0.2
        assert stream.first(r"no such line") is None


def test_a_multi_line_pattern_matches_across_lines_and_start_skips_earlier_text() -> None:
    with sh("echo one; echo two; echo one; echo three; sleep 30") as stream:
        stream.wait_for(r"three", timeout=10, what="three")
        assert stream.wait_for(r"(?m)^one\ntwo$", timeout=1, what="one then two")
        with pytest.raises(WaitTimeout):
            stream.wait_for(r"(?m)^one\ntwo$", timeout=0.3, what="one, two after the first", start=len("one\ntwo\n"))


def test_a_timeout_names_what_was_awaited_and_shows_the_last_lines() -> None:
    with sh("echo console says hello; sleep 30") as stream, pytest.raises(WaitTimeout) as timeout:
        stream.wait_for(r"dropbear", timeout=0.5, what="dropbear's start")
    assert "dropbear's start" in str(timeout.value) and "console says hello" in str(timeout.value)


def test_an_ended_stream_fails_the_wait_at_once() -> None:
    with sh("echo bye") as stream:
        started = time.monotonic()
        with pytest.raises(WaitTimeout, match="the stream ended"):
            stream.wait_for(r"never", timeout=30, what="a line that never comes")
        assert time.monotonic() - started < 5


def test_close_removes_the_whole_process_group() -> None:
    stream = sh("sleep 300 & echo $!; wait")
    child = int(stream.wait_for(r"(\d+)", timeout=10, what="the child's pid").group(1))
    stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the child {child} outlived close()")


def test_a_partial_last_line_is_seen_and_a_crlf_split_across_reads_is_one_line_end() -> None:
    with sh("printf 'login: '; sleep 0.3; printf 'x\\r'; sleep 0.3; printf '\\nnext\\n'; sleep 30") as stream:
        assert stream.wait_for(r"login: $", timeout=10, what="the prompt without its line end")
        stream.wait_for(r"next", timeout=10, what="the next line")
        assert stream.text == "login: x\nnext\n"
        assert [line.text for line in stream.lines] == ["login: x\n", "next\n"]


def test_a_waker_returns_at_a_new_matching_line_and_sleeps_its_time_otherwise() -> None:
    with sh("sleep 0.5; echo noise; sleep 0.3; echo 'Instance instance-00000009 is ACTIVE'; sleep 30") as stream:
        wake = stream.waker(r"Instance instance-00000009 is ACTIVE")
        started = time.monotonic()
        wake(10)                                  # the noise line does not wake it
        assert 0.7 < time.monotonic() - started < 5
        started = time.monotonic()
        wake(0.3)                                 # the line was seen: no second wake-up for it
        assert time.monotonic() - started >= 0.29


def test_wait_until_checks_again_when_woken_and_not_only_at_its_interval() -> None:
    from flatbed.waiters import wait_until

    with sh("sleep 0.5; echo ready; sleep 30") as stream:
        started = time.monotonic()
        # The check reads the stream's text; the slow interval would end the wait only after 20 s.
        assert wait_until(lambda: "ready" in stream.text, timeout=30, interval=20, what="ready",
                          wake=stream.waker("ready"))
        assert time.monotonic() - started < 5


def test_until_runs_its_check_again_on_new_text_and_passes_its_exception_through() -> None:
    with sh("echo 'tries: 1'; sleep 0.2; echo 'tries: 2'; sleep 0.2; echo 'tries: 3'; sleep 30") as stream:
        def three(text: str) -> list[str] | None:
            tries = [line for line in text.splitlines() if line.startswith("tries:")]
            return tries if len(tries) >= 3 else None

        assert stream.until(three, timeout=10, what="three tries") == ["tries: 1", "tries: 2", "tries: 3"]

        def wrong(text: str) -> None:
            raise AssertionError(f"a final mismatch in {len(text)} characters")

        with pytest.raises(AssertionError, match="final mismatch"):
            stream.until(wrong, timeout=10, what="anything")
