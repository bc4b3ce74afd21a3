"""The plan of care by fax and by Direct in ``hub demo``: sent for signature, and the signed pages back.

The demo's certification Task is routed to two more connectors: ``referrer-fax`` (the fax vendor
sandbox, which faxes it to the referrer's fax number and reports the fax delivered to the hub's
webhook) and ``referrer-direct`` (the sandbox HISP, to the referrer's Direct address). The referrer
answers on both channels with the signed pages: the fax vendor posts its receive webhook to the hub
(``POST /inbound/default/fax/referrer-fax``), the HISP sends a signed, encrypted reply to the hub's
SMTP listener (``hub direct referrer-direct``, started here). Each is stored as a DocumentReference
before it is answered.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import httpx

from hub import processes
from hub.documents.intake import intake_state

__all__ = ["CLINIC_FAX", "REFERRER_FAX", "ChannelError", "Channels"]

REFERRER_FAX = "+15035550147"
CLINIC_FAX = "+15035550100"
FAX_WEBHOOK_SECRET = "demo-fax-vendor-webhook-secret"
FAX_PATH = "/inbound/default/fax/referrer-fax"
#: the certification Tasks (not the referral's Task) go to the referrer by fax and by Direct
CERTIFICATIONS = "code.coding.where(code='certification').exists() and status = 'requested'"


class ChannelError(RuntimeError):
    """A step of the fax or Direct round trip failed (the demo says so and stops)."""


def _answer(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise ChannelError(f"{what} failed: HTTP {response.status_code} {response.text[:300]}")


class Channels:
    """The fax vendor sandbox and the sandbox HISP, their connectors and routes, and ``hub direct``."""

    def __init__(self, fax: Any, hisp: Any, base: str, env: dict[str, str], data_dir: Any) -> None:
        self.fax = fax
        self.hisp = hisp
        self.base = base
        self.env = env
        self.data_dir = data_dir
        self.listener: subprocess.Popen[bytes] | None = None
        self.listener_port = 0

    def wire(self, client: httpx.Client) -> None:
        _answer(client.put("/admin/api/connectors/referrer-fax", json={
            "name": "referrer-fax", "kind": "fax",
            "config": {"profile": self.fax.profile_name, "base_url": self.fax.url, "api_key": "demo-fax-key",
                       "api_secret": "demo-fax-secret", "webhook_secret": FAX_WEBHOOK_SECRET,
                       "sender_fax": CLINIC_FAX, "clinic_name": "Riverside Rehab",
                       "callback_url": self.base + FAX_PATH},
            "max_attempts": 5, "backoff_base_seconds": 0.5}), "the fax connector")
        _answer(client.put("/admin/api/connectors/referrer-direct", json={
            "name": "referrer-direct", "kind": "direct", "config": self.hisp.connector_config(),
            "max_attempts": 5, "backoff_base_seconds": 0.5}), "the Direct connector")
        for name, connector in (("certifications-by-fax", "referrer-fax"),
                                ("certifications-by-direct", "referrer-direct")):
            _answer(client.post("/admin/api/routes", json={"name": name, "resource_type": "Task",
                                                          "connector": connector, "filter": CERTIFICATIONS,
                                                          "interactions": ["create"]}),
                    f"route {name}")

    def listen(self, log: Any) -> int:
        """Start ``hub direct referrer-direct`` on a free port; its port."""
        self.listener = processes.spawn(processes.hub_command("direct", "referrer-direct", "--port", "0"),
                                        cwd=self.data_dir, env=self.env, stdout=subprocess.PIPE, stderr=log)
        assert self.listener.stdout is not None
        line = self.listener.stdout.readline().decode()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found is None:
            raise ChannelError("hub direct did not start; see the hub log")
        self.listener_port = int(found.group(1))
        return self.listener_port

    def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            processes.stop(listener, timeout=10)
            if listener.stdout is not None:
                listener.stdout.close()

    def signed_back(self, client: httpx.Client, wait: Callable[[Callable[[], Any], float, str], Any]) -> list[str]:
        """Wait for the plan by fax and by Direct, answer both with the signed pages; lines to show."""
        wait(lambda: self.fax.sent, 60, "the plan of care by fax")
        [received] = wait(lambda: self.hisp.received, 60, "the plan of care by Direct")
        faxed = self.fax.sent[0]
        signed = faxed.files[0]  # the pages the referrer signs and sends back
        status = self.fax.inject_inbound(self.base + FAX_PATH, signed, sender=REFERRER_FAX, recipient=CLINIC_FAX)
        if status != 202:
            raise ChannelError(f"the signed fax was not stored (HTTP {status})")
        self.hisp.send_signed_plan(received, signed, host="127.0.0.1", port=self.listener_port)  # 250: stored
        lines = [f"plan of care faxed (fax {faxed.fax_id}, {len(faxed.files)} file(s)) and sent by Direct "
                 f"({received.message_id}); the signed pages came back by fax (stored, HTTP 202) and by "
                 "Direct (stored, SMTP 250)"]
        for channel, source in (("fax", "referrer-fax"), ("Direct", "referrer-direct")):
            lines.append(f"signed pages by {channel}: {', '.join(self._documents(client, source)) or 'none'}")
        return lines

    @staticmethod
    def _documents(client: httpx.Client, source: str) -> list[str]:
        """The DocumentReferences the messages of ``source`` stored, with their intake state."""
        messages = client.get("/admin/api/messages", params={"limit": 500}).json()["items"]
        found = []
        for reference in sorted({str(m["resource"]) for m in messages if m.get("source") == source
                                 and str(m.get("resource") or "").startswith("DocumentReference/")}):
            document = client.get(f"/fhir/{reference}").json()
            found.append(f"{reference} (intake: {intake_state(document) or 'none'})")
        return found
