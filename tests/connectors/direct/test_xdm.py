"""XDM packages: ours read back, and packages laid out the way other systems make them."""

from __future__ import annotations

import hashlib
import io
import zipfile
from xml.etree import ElementTree as ET

from connectors.direct import xdm

PDF = b"%PDF-1.4\n% plan of care\n%%EOF\n"
CDA = b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>"
LOINC = "2.16.840.1.113883.6.1"


def _submission(*documents: xdm.XdmDocument) -> xdm.XdmSubmission:
    return xdm.XdmSubmission(
        unique_id="2.25.1001", source_id="2.25.1", submission_time="20261204010203",
        patient_id="MRN-7^^^&2.25.99&ISO", source_patient_id="MRN-7^^^&2.25.99&ISO",
        author_person="^Lee^Ann^^^", author_institution="Riverside Rehab",
        content_type=xdm.Code("18776-5", LOINC, "Plan of care note"),
        documents=documents, intended_recipient="drsmith@direct.physician.test",
        author_telecom="clinic@direct.clinic.test",
    )


def _document(content: bytes, mime: str, uid: str) -> xdm.XdmDocument:
    return xdm.XdmDocument(
        content=content, mime_type=mime, unique_id=uid, creation_time="20261204010203", title="Plan of care",
        class_code=xdm.Code("18776-5", LOINC, "Plan of care note"),
        type_code=xdm.Code("18776-5", LOINC, "Plan of care note"),
        format_code=xdm.Code("urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3",
                             "mimeType Sufficient"),
    )


def test_our_package_round_trips_with_its_metadata() -> None:
    package = xdm.build(_submission(_document(PDF, "application/pdf", "2.25.11"),
                                    _document(CDA, "text/xml", "2.25.12")))
    assert package == xdm.build(_submission(_document(PDF, "application/pdf", "2.25.11"),
                                            _document(CDA, "text/xml", "2.25.12")))
    names = zipfile.ZipFile(io.BytesIO(package)).namelist()
    assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"} <= set(names)
    documents = xdm.unpack(package)
    assert documents is not None
    assert [(d.content, d.mime_type, d.unique_id, d.hash_matches) for d in documents] == [
        (PDF, "application/pdf", "2.25.11", True), (CDA, "text/xml", "2.25.12", True)]
    meta = ET.fromstring(zipfile.ZipFile(io.BytesIO(package)).read("IHE_XDM/SUBSET01/METADATA.XML"))
    entry = next(meta.iter(f"{{{xdm.RIM}}}ExtrinsicObject"))
    slots = {s.get("name"): [v.text for v in s.iter(f"{{{xdm.RIM}}}Value")]
             for s in entry.findall(f"{{{xdm.RIM}}}Slot")}
    assert slots["hash"] == [hashlib.sha1(PDF).hexdigest()] and slots["size"] == [str(len(PDF))]
    assert slots["URI"] == ["DOC0001.PDF"] and slots["sourcePatientId"] == ["MRN-7^^^&2.25.99&ISO"]
    schemes = {c.get("classificationScheme") for c in entry.iter(f"{{{xdm.RIM}}}Classification")}
    assert {xdm.CLASS_CODE, xdm.TYPE_CODE, xdm.FORMAT_CODE, xdm.DOC_AUTHOR} <= schemes
    assert len(list(meta.iter(f"{{{xdm.RIM}}}Association"))) == 2


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


OTHER_METADATA = f"""<?xml version="1.0"?>
<SubmitObjectsRequest xmlns="{xdm.LCM}" xmlns:rim="{xdm.RIM}"><rim:RegistryObjectList>
<rim:ExtrinsicObject id="urn:uuid:1" mimeType="application/pdf" objectType="{xdm.DOCUMENT_ENTRY}">
<rim:Slot name="URI"><rim:ValueList><rim:Value>1|docs/signed</rim:Value><rim:Value>2|_plan.pdf</rim:Value>
</rim:ValueList></rim:Slot>
<rim:Name><rim:LocalizedString value="Signed plan"/></rim:Name>
<rim:ExternalIdentifier identificationScheme="{xdm.DOC_UNIQUE_ID}" value="1.2.3.4" id="e1" registryObject="urn:uuid:1"/>
</rim:ExtrinsicObject></rim:RegistryObjectList></SubmitObjectsRequest>""".encode()


def test_package_made_differently_is_read_from_its_uri_slots() -> None:
    package = _zip({"ihe_xdm/EHRSUBSET7/METADATA.XML": OTHER_METADATA,
                    "ihe_xdm/EHRSUBSET7/docs/signed_plan.pdf": PDF,
                    "ihe_xdm/EHRSUBSET7/STYLE.XSL": b"<xsl/>",
                    "index.htm": b"<html/>", "vendor/extra.bin": b"\x00"})
    documents = xdm.unpack(package)
    assert documents is not None and len(documents) == 1
    assert documents[0].content == PDF and documents[0].unique_id == "1.2.3.4"
    assert documents[0].title == "Signed plan" and documents[0].hash_matches is None


def test_package_without_metadata_lists_its_files() -> None:
    documents = xdm.unpack(_zip({"IHE_XDM/SUBSET02/PLAN.PDF": PDF, "README.TXT": b"hello"}))
    assert documents is not None
    assert [(d.path, d.mime_type) for d in documents] == [("IHE_XDM/SUBSET02/PLAN.PDF", "application/pdf")]


def test_not_xdm() -> None:
    assert xdm.unpack(_zip({"plan.pdf": PDF})) is None
    assert xdm.unpack(PDF) is None
