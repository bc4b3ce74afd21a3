"""HL7 v2 REF^I12 -> validated FHIR Bundle, messages per second on one core.

Three loops over the same corpus of distinct REF^I12 messages (a referral with patient, referring
provider with NPI, two diagnoses, coverage, a PDF attachment and a note; ~1.6 kB each), in one
process pinned to one CPU:

- ``translate``: bytes -> parsed, checked (header, structure, fields, tables) -> FHIR transaction
  Bundle (``mappings.hl7v2.translate``);
- ``translate+validate`` (the headline): the same, then every resource of the Bundle validated the
  way the hub's store does before writing it (``mappings.fhir.validation.validate_resource``:
  ``fhir.resources`` R4B ``model_validate`` plus the required bindings);
- ``fhir.resources alone``: only ``model_validate`` of each resource of the already translated Bundles
  (the cost a FHIR-native pipeline pays anyway: the baseline the ratio is taken against).

Prints messages/second for each and the ratio (translate+validate / fhir.resources alone), and
writes ``bench/results/hl7v2-<UTC time>.json``::

    .venv/bin/python bench/hl7v2_to_fhir.py                  # ~15 s
    .venv/bin/python bench/hl7v2_to_fhir.py --seconds 5 --messages 500 --cpu 2
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mappings.fhir import model_class  # noqa: E402
from mappings.fhir.validation import validate_resource  # noqa: E402
from mappings.hl7v2 import OutboundHeader, referral_to_ref_i12, translate  # noqa: E402
from mappings.referral.intake import (  # noqa: E402
    AttachmentIn,
    CoverageIn,
    IdentifierIn,
    PatientIn,
    ReasonIn,
    ReferralIn,
    ReferrerIn,
    build_referral_bundle,
)

CLINIC = "Organization/clinic-1"
NOW = datetime(2024, 6, 1, 12, 0, 0)
FAMILIES = ["García", "Nakamura", "O'Brien", "Müller", "Okafor", "Nguyễn", "Smith", "Ivanova"]
PDF = base64.b64encode(b"%PDF-1.4\n" + bytes(range(256)) * 3).decode()


def corpus(count: int) -> list[bytes]:
    """``count`` distinct REF^I12 messages (made by the outbound mapping from referral models)."""
    header = OutboundHeader(
        sending_application="REFAPP",
        sending_facility="ORTHO",
        receiving_application="HUB",
        receiving_facility="REHAB",
    )
    out = []
    for i in range(count):
        referral = ReferralIn(
            identifier=IdentifierIn(system="https://ortho.example/referrals", value=f"REF-{i:06d}"),
            discipline=("PT", "OT", "SLP")[i % 3],
            patient=PatientIn(
                identifier=IdentifierIn(system="urn:oid:2.16.840.1.113883.3.72", value=f"MRN{i}"),
                family=FAMILIES[i % len(FAMILIES)],
                given=["Ana", "Maria"],
                birth_date=datetime(1950 + i % 50, 1 + i % 12, 1 + i % 28).date(),
                gender=("female", "male", "other", "unknown")[i % 4],
                phone="555-0100",
            ),
            referrer=ReferrerIn(
                npi=f"{1000000000 + i}",
                family="Mendes",
                given=["Ana"],
                organization="Ortho & Co",
                direct_address="dr@direct.ortho.example",
                fax="555-0101",
            ),
            reason=ReasonIn(icd10="M54.16", display="Radiculopathy, lumbar region"),
            coverage=CoverageIn(payer="Acme Health", member_id=f"W{i:09d}", payer_id="ACME"),
            priority=("routine", "urgent", "asap", "stat")[i % 4],
            note="Evaluate and treat\n3x/week for 4 weeks | home program",
            attachments=[AttachmentIn(title="Referral letter", content_type="application/pdf", data=PDF)],
        )
        bundle = build_referral_bundle(referral, clinic_ref=CLINIC, now=NOW + timedelta(minutes=i))
        text = referral_to_ref_i12(bundle, header=header, control_id=f"MSG{i:06d}", now=NOW)
        # a second diagnosis, as referrers often send
        text = text.replace(
            "\rOBX|", "\rDG1|2||M51.26^Other intervertebral disc displacement^I10C||||W\rOBX|", 1
        )
        out.append(text.encode("utf-8"))
    return out


def timed(label: str, items: list[Any], work: Any, seconds: float) -> dict[str, Any]:
    """Run ``work(item)`` over ``items`` round-robin for ``seconds`` (after one warm-up pass)."""
    for item in items:
        work(item)
    gc.collect()
    done = 0
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    deadline = wall_start + seconds
    while time.perf_counter() < deadline:
        for item in items:
            work(item)
        done += len(items)
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    result = {
        "label": label,
        "messages": done,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "per_second": round(done / wall, 1),
        "us_per_message": round(wall / done * 1e6, 1),
    }
    print(
        f"  {label:<24} {result['per_second']:>9.1f} msg/s  {result['us_per_message']:>8.1f} us/msg "
        f"({done} in {wall:.1f}s)",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="distinct messages in the corpus")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each loop")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = args.cpu if args.cpu is not None else (allowed[-1] if allowed else None)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    messages = corpus(args.messages)
    size = sum(len(m) for m in messages) / len(messages)
    print(f"corpus: {len(messages)} REF^I12 messages, {size:.0f} bytes on average; pinned to CPU {cpu}")

    bundles = [translate(m, clinic_ref=CLINIC, now=NOW).bundle for m in messages]
    resources = [[e["resource"] for e in b["entry"]] for b in bundles]
    for group in resources:  # the translated resources are valid FHIR R4 (else the bench is meaningless)
        for resource in group:
            errors = [i for i in validate_resource(resource) if i.severity in ("error", "fatal")]
            if errors:
                raise SystemExit(f"invalid {resource['resourceType']}: {errors}")
    per_bundle = sum(len(g) for g in resources) / len(resources)
    classes = {r["resourceType"]: model_class(r["resourceType"]) for g in resources for r in g}

    def only_translate(raw: bytes) -> None:
        translate(raw, clinic_ref=CLINIC, now=NOW)

    def translate_and_validate(raw: bytes) -> None:
        bundle = translate(raw, clinic_ref=CLINIC, now=NOW).bundle
        for entry in bundle["entry"]:
            if any(i.severity in ("error", "fatal") for i in validate_resource(entry["resource"])):
                raise AssertionError("invalid")

    def fhir_resources_alone(group: list[dict[str, Any]]) -> None:
        for resource in group:
            classes[resource["resourceType"]].model_validate(resource)

    print(f"each Bundle: {per_bundle:.1f} resources; {args.seconds:g}s per loop")
    results = [
        timed("translate", messages, only_translate, args.seconds),
        timed("translate+validate", messages, translate_and_validate, args.seconds),
        timed("fhir.resources alone", resources, fhir_resources_alone, args.seconds),
    ]
    headline, baseline = results[1]["per_second"], results[2]["per_second"]
    ratio = headline / baseline
    print(
        f"\nHL7 v2 REF^I12 -> validated FHIR Bundle: {headline:.0f} msg/s on one core; "
        f"fhir.resources model_validate of the same output alone: {baseline:.0f} Bundles/s; "
        f"ratio {ratio:.2f}"
    )

    if not args.no_save:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = ROOT / "bench" / "results" / f"hl7v2-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "benchmark": "hl7v2_to_fhir",
                    "started": stamp,
                    "git_commit": commit,
                    "python": platform.python_version(),
                    "machine": {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()},
                    "packages": {p: version(p) for p in ("hl7", "fhir.resources", "pydantic")},
                    "corpus": {
                        "messages": len(messages),
                        "average_bytes": round(size),
                        "resources_per_bundle": per_bundle,
                    },
                    "results": results,
                    "ratio_translate_validate_over_fhir_resources": round(ratio, 3),
                },
                indent=2,
            )
        )
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
