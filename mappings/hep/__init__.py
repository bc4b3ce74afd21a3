"""The home exercise program (HEP) vendor's formats <-> FHIR R4 (the vendor contract).

* :mod:`.program` -- a CarePlan's home exercise activities and its Patient -> the vendor's patient
  and program bodies (what the ``hep`` connector pushes), and the stable exercise ids the
  vendor's webhooks name the CarePlan activities by.

Pure like every mapping: no I/O, no settings, no clock, no random ids.
"""
