"""Key rotation for secrets at rest: re-encrypt with the current HUB_SECRET_KEY everything that an
older key (HUB_SECRET_KEY_PREVIOUS) can still read."""

from __future__ import annotations

from sqlalchemy import or_, select

from hub.crypto import cipher_for
from hub.settings import Settings
from hub.store.models import ConnectorInstance, DeliveryJob, Message
from hub.unit_of_work import unit_of_work

BATCH = 500


def rotate(settings: Settings) -> dict[str, int]:
    box = cipher_for(settings)
    counts = {"connectors": 0, "payloads": 0}
    with unit_of_work(settings) as session:
        for instance in session.scalars(select(ConnectorInstance)):
            instance.config = box.rotate(instance.config.encode()).decode()
            counts["connectors"] += 1
        for job in session.scalars(select(DeliveryJob).where(DeliveryJob.issued_links.is_not(None))):
            if job.issued_links:  # a partner's links (e.g. a patient's sign-in link), counted as payloads
                job.issued_links = box.rotate(job.issued_links.encode()).decode()
                counts["payloads"] += 1
    last = ""
    while True:
        with unit_of_work(settings) as session:
            rows = list(session.scalars(
                select(Message)
                .where(Message.id > last,
                       or_(Message.raw_payload.is_not(None), Message.translated_payload.is_not(None)))
                .order_by(Message.id).limit(BATCH)
            ))
            for message in rows:
                if message.raw_payload:
                    message.raw_payload = box.rotate(message.raw_payload.encode()).decode()
                if message.translated_payload:
                    message.translated_payload = box.rotate(message.translated_payload.encode()).decode()
                counts["payloads"] += 1
        if len(rows) < BATCH:
            return counts
        last = rows[-1].id
