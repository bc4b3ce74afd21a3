"""IHE XDM packages (ITI TF-1 16, TF-3 4.2): build ours, read other systems'. Pure: ids and times passed in.

Ours::

    INDEX.HTM, README.TXT
    IHE_XDM/SUBSET01/METADATA.XML   ebRIM 3.0 SubmitObjectsRequest: one SubmissionSet, one
                                    DocumentEntry per document (uniqueId, hash SHA-1, size, mimeType,
                                    creationTime, patientId, sourcePatientId, class/type/formatCode,
                                    author), HasMember associations
    IHE_XDM/SUBSET01/DOC0001.PDF    the documents, named by the DocumentEntry's ``URI`` slot
    IHE_XDM/SUBSET01/DOC0002.XML

Reading (:func:`unpack`): any ``IHE_XDM/<subset>/`` folder (any case); document paths from the
``URI`` slot of each DocumentEntry (also the ``n|part`` split form); without METADATA.XML, every
file of the subset folders. A zip without an ``IHE_XDM`` folder is not XDM (:func:`unpack` -> None).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from xml.etree import ElementTree as ET

__all__ = ["Code", "XdmDocument", "XdmError", "XdmSubmission", "ReadDocument", "build", "unpack"]

RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
DOCUMENT_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
CLASS_CODE: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE_CODE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT_CODE: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
CONTENT_TYPE_CODE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
DOC_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
DOC_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOC_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
MAX_ENTRY_BYTES: Final = 50 * 1024 * 1024
_FIXED_TIME: Final = (2000, 1, 1, 0, 0, 0)  # zip entry times: the package bytes depend on content only
_EXTENSIONS: Final = {"application/pdf": "PDF", "text/xml": "XML", "application/xml": "XML",
                      "text/plain": "TXT", "text/html": "HTM"}
_TYPES_BY_EXTENSION: Final = {".pdf": "application/pdf", ".xml": "text/xml", ".txt": "text/plain",
                              ".htm": "text/html", ".html": "text/html", ".jpg": "image/jpeg",
                              ".jpeg": "image/jpeg", ".png": "image/png", ".tif": "image/tiff",
                              ".tiff": "image/tiff"}


class XdmError(ValueError):
    """A package we cannot read (not a zip, too large, broken metadata); message without content."""


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str  # codingScheme slot (an OID or a URI)
    display: str


@dataclass(frozen=True)
class XdmDocument:
    content: bytes = field(repr=False)
    mime_type: str
    unique_id: str  # an OID
    creation_time: str  # HL7 DTM, UTC: YYYYMMDDHHMMSS
    title: str
    class_code: Code
    type_code: Code
    format_code: Code


@dataclass(frozen=True)
class XdmSubmission:
    unique_id: str  # OID of the submission set
    source_id: str  # OID of the sending system
    submission_time: str  # HL7 DTM, UTC
    patient_id: str  # CX: id^^^&assigning-authority-oid&ISO
    source_patient_id: str  # CX, the sender's own id
    author_person: str  # XCN, e.g. ^Lee^Ann^^^
    author_institution: str  # XON
    content_type: Code
    documents: Sequence[XdmDocument]
    intended_recipient: str = ""  # Direct address of the recipient
    author_telecom: str = ""  # the sender's Direct address


@dataclass(frozen=True)
class ReadDocument:
    """A document read from a package: where it was, its bytes, and what the metadata said."""

    path: str
    content: bytes = field(repr=False)
    mime_type: str
    unique_id: str | None = None
    title: str | None = None
    hash_matches: bool | None = None  # None: no hash in the metadata


def _q(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


def _slot(parent: ET.Element, name: str, *values: str) -> None:
    slot = ET.SubElement(parent, _q("Slot"), name=name)
    value_list = ET.SubElement(slot, _q("ValueList"))
    for value in values:
        ET.SubElement(value_list, _q("Value")).text = value


def _name(parent: ET.Element, text: str) -> None:
    ET.SubElement(ET.SubElement(parent, _q("Name")), _q("LocalizedString"), value=text)


def _classification(parent: ET.Element, object_id: str, scheme: str, ident: str, code: Code) -> None:
    node = ET.SubElement(parent, _q("Classification"), id=ident, classificationScheme=scheme,
                         classifiedObject=object_id, nodeRepresentation=code.code,
                         objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification")
    _slot(node, "codingScheme", code.scheme)
    _name(node, code.display)


def _author(parent: ET.Element, object_id: str, scheme: str, ident: str, submission: XdmSubmission) -> None:
    node = ET.SubElement(parent, _q("Classification"), id=ident, classificationScheme=scheme,
                         classifiedObject=object_id, nodeRepresentation="")
    _slot(node, "authorPerson", submission.author_person)
    _slot(node, "authorInstitution", submission.author_institution)
    if submission.author_telecom:
        _slot(node, "authorTelecommunication", f"^^Internet^{submission.author_telecom}")


def _external_id(parent: ET.Element, object_id: str, scheme: str, ident: str, value: str, name: str) -> None:
    node = ET.SubElement(parent, _q("ExternalIdentifier"), id=ident, identificationScheme=scheme,
                         registryObject=object_id, value=value)
    _name(node, name)


def _file_name(index: int, mime_type: str) -> str:
    return f"DOC{index:04d}.{_EXTENSIONS.get(mime_type, 'BIN')}"


def metadata(submission: XdmSubmission) -> bytes:
    """METADATA.XML of ``submission`` (documents named DOC0001... in their order)."""
    ET.register_namespace("lcm", LCM)
    ET.register_namespace("rim", RIM)
    root = ET.Element(f"{{{LCM}}}SubmitObjectsRequest")
    objects = ET.SubElement(root, _q("RegistryObjectList"))
    for index, document in enumerate(submission.documents, start=1):
        doc_id = f"Document{index:02d}"
        entry = ET.SubElement(objects, _q("ExtrinsicObject"), id=doc_id, mimeType=document.mime_type,
                              objectType=DOCUMENT_ENTRY)
        _slot(entry, "creationTime", document.creation_time)
        _slot(entry, "hash", hashlib.sha1(document.content, usedforsecurity=False).hexdigest())
        _slot(entry, "languageCode", "en-US")
        _slot(entry, "size", str(len(document.content)))
        _slot(entry, "sourcePatientId", submission.source_patient_id)
        _slot(entry, "URI", _file_name(index, document.mime_type))
        _name(entry, document.title)
        _author(entry, doc_id, DOC_AUTHOR, f"{doc_id}-author", submission)
        _classification(entry, doc_id, CLASS_CODE, f"{doc_id}-class", document.class_code)
        _classification(entry, doc_id, FORMAT_CODE, f"{doc_id}-format", document.format_code)
        _classification(entry, doc_id, TYPE_CODE, f"{doc_id}-type", document.type_code)
        _external_id(entry, doc_id, DOC_PATIENT_ID, f"{doc_id}-pid", submission.patient_id,
                     "XDSDocumentEntry.patientId")
        _external_id(entry, doc_id, DOC_UNIQUE_ID, f"{doc_id}-uid", document.unique_id,
                     "XDSDocumentEntry.uniqueId")
    package = ET.SubElement(objects, _q("RegistryPackage"), id="SubmissionSet01",
                            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage")
    _slot(package, "submissionTime", submission.submission_time)
    if submission.intended_recipient:
        _slot(package, "intendedRecipient", f"||^^Internet^{submission.intended_recipient}")
    _name(package, "Plan of care")
    _author(package, "SubmissionSet01", SS_AUTHOR, "SubmissionSet01-author", submission)
    _classification(package, "SubmissionSet01", CONTENT_TYPE_CODE, "SubmissionSet01-content",
                    submission.content_type)
    _external_id(package, "SubmissionSet01", SS_UNIQUE_ID, "SubmissionSet01-uid", submission.unique_id,
                 "XDSSubmissionSet.uniqueId")
    _external_id(package, "SubmissionSet01", SS_SOURCE_ID, "SubmissionSet01-src", submission.source_id,
                 "XDSSubmissionSet.sourceId")
    _external_id(package, "SubmissionSet01", SS_PATIENT_ID, "SubmissionSet01-pid", submission.patient_id,
                 "XDSSubmissionSet.patientId")
    ET.SubElement(objects, _q("Classification"), id="SubmissionSet01-node", classifiedObject="SubmissionSet01",
                  classificationNode=SUBMISSION_SET_NODE)
    for index in range(1, len(submission.documents) + 1):
        association = ET.SubElement(objects, _q("Association"), id=f"Association{index:02d}",
                                    associationType=HAS_MEMBER, sourceObject="SubmissionSet01",
                                    targetObject=f"Document{index:02d}")
        _slot(association, "SubmissionSetStatus", "Original")
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text


def _index(submission: XdmSubmission) -> bytes:
    rows = "".join(
        f'<li><a href="IHE_XDM/SUBSET01/{_file_name(i, d.mime_type)}">{_html(d.title)}</a></li>'
        for i, d in enumerate(submission.documents, start=1)
    )
    return (f"<html><head><title>XDM package</title></head><body><h1>Contents</h1><ul>{rows}</ul>"
            f'<p><a href="README.TXT">README.TXT</a></p></body></html>').encode()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _readme(submission: XdmSubmission) -> bytes:
    return ("This media holds an IHE XDM (Cross-Enterprise Document Media Interchange) package.\r\n"
            f"Sent by: {submission.author_institution.split('^')[0]}\r\n"
            "Open INDEX.HTM to see its documents; IHE_XDM/SUBSET01/METADATA.XML describes them.\r\n").encode()


def build(submission: XdmSubmission) -> bytes:
    """The zip of ``submission``; the same submission gives the same bytes."""
    if not submission.documents:
        raise ValueError("an XDM package needs at least one document")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            archive.writestr(zipfile.ZipInfo(name, date_time=_FIXED_TIME), data,
                             compress_type=zipfile.ZIP_DEFLATED)

        add("INDEX.HTM", _index(submission))
        add("README.TXT", _readme(submission))
        add("IHE_XDM/SUBSET01/METADATA.XML", metadata(submission))
        for index, document in enumerate(submission.documents, start=1):
            add(f"IHE_XDM/SUBSET01/{_file_name(index, document.mime_type)}", document.content)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ reading


def _slot_values(element: ET.Element, name: str) -> list[str]:
    for slot in element.iter(_q("Slot")):
        if slot.get("name") == name:
            return [value.text or "" for value in slot.iter(_q("Value"))]
    return []


def _uri(values: list[str]) -> str | None:
    """The ``URI`` slot: one value, or ``1|part``, ``2|part``... to be joined in order."""
    if not values:
        return None
    if len(values) > 1 and all("|" in v and v.split("|", 1)[0].isdigit() for v in values):
        ordered = sorted(values, key=lambda v: int(v.split("|", 1)[0]))
        return "".join(v.split("|", 1)[1] for v in ordered)
    return values[0]


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_ENTRY_BYTES:
        raise XdmError("a package entry is too large")
    try:
        with archive.open(info) as entry:
            data = entry.read(MAX_ENTRY_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError):
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression method
        raise XdmError("a package entry cannot be read") from None
    if len(data) > MAX_ENTRY_BYTES:
        raise XdmError("a package entry is too large")
    return data


def _mime_for(path: str) -> str:
    return _TYPES_BY_EXTENSION.get(posixpath.splitext(path)[1].lower(), "application/octet-stream")


def unpack(data: bytes) -> list[ReadDocument] | None:
    """The documents of an XDM zip; None when ``data`` is a zip without ``IHE_XDM/`` (or not a zip)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        return None
    with archive:
        by_path = {info.filename.lower(): info for info in archive.infolist() if not info.is_dir()}
        subsets = sorted({p.split("/")[1] for p in by_path if p.startswith("ihe_xdm/") and p.count("/") >= 2})
        if not subsets:
            return None
        documents: list[ReadDocument] = []
        for subset in subsets:
            folder = f"ihe_xdm/{subset}/"
            meta = by_path.get(folder + "metadata.xml")
            if meta is None:
                for path, info in sorted(by_path.items()):
                    if path.startswith(folder):
                        documents.append(ReadDocument(info.filename, _read(archive, info), _mime_for(path)))
                continue
            try:
                root = ET.fromstring(_read(archive, meta))  # noqa: S314 - expat: no external entities
            except ET.ParseError:
                raise XdmError("METADATA.XML is not well-formed XML") from None
            for entry in root.iter(_q("ExtrinsicObject")):
                uri = _uri(_slot_values(entry, "URI"))
                if not uri:
                    continue
                target = posixpath.normpath(posixpath.join(folder, uri.lower()))
                found = by_path.get(target)
                if found is None or not target.startswith(folder):
                    raise XdmError("METADATA.XML names a document the package does not hold")
                content = _read(archive, found)
                hashes = _slot_values(entry, "hash")
                unique_ids = [e.get("value") for e in entry.iter(_q("ExternalIdentifier"))
                              if e.get("identificationScheme") == DOC_UNIQUE_ID]
                name = entry.find(f"{_q('Name')}/{_q('LocalizedString')}")
                documents.append(ReadDocument(
                    path=found.filename,
                    content=content,
                    mime_type=entry.get("mimeType") or _mime_for(target),
                    unique_id=unique_ids[0] if unique_ids else None,
                    title=name.get("value") if name is not None else None,
                    hash_matches=(hashes[0].lower() == hashlib.sha1(content, usedforsecurity=False).hexdigest())
                    if hashes else None,
                ))
        return documents
