"""The libraries' chatter to a file, the rest to the screen.

Kafka's clients (aiokafka; faust and mode in a worker; kafka) log each retry of a
passing condition as a warning: a partition's leader being elected, a group coordinator
not yet available. In a service's log that is information for an operator; on the
screen of someone trying ``meterwatch demo`` it is a page of noise before the first
alert. With :func:`config`, every record goes to a file, and the screen shows this
project's warnings and only the libraries' errors.
"""

from __future__ import annotations

import logging
import os

LIBRARIES = ("aiokafka", "faust", "mode", "kafka")
FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class ScreenFilter(logging.Filter):
    """Lets through the project's records, and the libraries' from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.ERROR
                or record.name.split(".", 1)[0] not in LIBRARIES)


def config(path: str | os.PathLike[str], level: str = "INFO", mode: str = "a") -> dict:
    """A :func:`logging.config.dictConfig` configuration: records from ``level`` up to
    the file ``path`` (opened with ``mode``), and from WARNING up through
    :class:`ScreenFilter` to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"screen": {"()": ScreenFilter}},
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": os.fspath(path),
                     "mode": mode, "formatter": "plain", "level": level.upper()},
            "screen": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                       "filters": ["screen"], "formatter": "plain", "level": "WARNING"},
        },
        "root": {"level": level.upper(), "handlers": ["file", "screen"]},
    }
