"""A worker told to stop while a poll is in flight stops cleanly: the send that meets the
stopped producer is the shutdown, not a crash; the same error while the app runs is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.errors import ProducerClosed, KafkaTimeoutError
from faust.exceptions import NotReady

from stream.worker.ingest import is_shutdown


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:
            raise RuntimeError("send failed") from e
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("exc", [ProducerClosed(), NotReady("Producer service not yet started"),
                                 _wrapped(NotReady("stopped"))],
                         ids=["aiokafka closed", "faust not ready", "wrapped"])
def test_a_stopped_producer_under_a_stopping_app_is_the_shutdown(exc):
    assert is_shutdown(SimpleNamespace(should_stop=True), exc)


@pytest.mark.parametrize("exc", [ProducerClosed(), NotReady("x")])
def test_the_same_error_while_the_app_runs_is_a_failure(exc):
    assert not is_shutdown(SimpleNamespace(should_stop=False), exc)


def test_other_errors_during_shutdown_are_still_failures():
    assert not is_shutdown(SimpleNamespace(should_stop=True), KafkaTimeoutError())
