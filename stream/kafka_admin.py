"""Kafka administration the commands share: creating the pipeline's topics."""

from __future__ import annotations

from stream.settings import Settings


def topic_names(settings: Settings) -> dict[str, str]:
    """The pipeline's topics by role (the weather topic only if configured): the one
    list the worker declares its topics from and the commands create them from."""
    names = {"readings": settings.readings_topic, "by_area": settings.by_area_topic,
             "rejected": settings.rejected_topic, "alerts": settings.alerts_topic,
             "deadletter": settings.deadletter_topic}
    if settings.weather_topic:
        names["weather"] = settings.weather_topic
    return names


def pipeline_topics(settings: Settings) -> list[str]:
    """The topics the pipeline reads and writes (the weather topic if configured)."""
    return list(topic_names(settings).values())


async def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics if missing (Faust ignores absent source topics)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream.app import MAX_MESSAGE_BYTES

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, settings.topic_partitions, 1,
                        topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
               for t in pipeline_topics(settings) if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()
