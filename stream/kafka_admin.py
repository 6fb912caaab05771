"""Kafka administration the commands share: creating the pipeline's topics."""

from __future__ import annotations

from stream.settings import Settings


def pipeline_topics(settings: Settings) -> list[str]:
    """The topics the pipeline reads and writes (the weather topic if configured)."""
    want = [settings.readings_topic, settings.rejected_topic, settings.by_area_topic,
            settings.alerts_topic, settings.deadletter_topic]
    return want + ([settings.weather_topic] if settings.weather_topic else [])


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
