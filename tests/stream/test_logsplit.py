"""stream/logsplit.py: every record to the file; on the screen the project's warnings
and the Kafka libraries' errors only."""

from __future__ import annotations

import logging
import logging.config

import pytest


@pytest.fixture
def split(tmp_path, capsys):
    from stream import logsplit

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    path = tmp_path / "x.log"
    logging.config.dictConfig(logsplit.config(path, "info", mode="w"))
    try:
        yield path, capsys
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_library_warnings_go_to_the_file_only_errors_and_our_warnings_to_the_screen(split):
    path, capsys = split
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Marking the coordinator dead")
    logging.getLogger("faust.worker").info("Starting...")
    logging.getLogger("mode.supervisors").error("a library's error")
    logging.getLogger("stream.worker.ingest").warning("our warning")
    logging.getLogger("stream.worker.ingest").info("our info")
    logging.getLogger("kafkaesque").warning("not the kafka library")
    screen = capsys.readouterr().err
    assert "coordinator dead" not in screen and "Starting" not in screen
    assert "a library's error" in screen and "our warning" in screen
    assert "our info" not in screen and "not the kafka library" in screen
    text = path.read_text()
    for msg in ("Marking the coordinator dead", "Starting...", "a library's error",
                "our warning", "our info"):
        assert msg in text
    assert "] aiokafka.consumer.group_coordinator: Marking" in text
