"""The shared liberal X12 reader: separators, line breaks, envelopes, and what it reports."""

from __future__ import annotations

import pytest

from mappings.x12.reader import X12SyntaxError, read_interchanges

ISA_PIPE = "ISA|00|          |00|          |ZZ|CLEARINGHOUSE  |ZZ|THERAPYCLINIC  |260105|1200|^|00501|000000101|0|P|>~"


def _set(control: str, *body: str) -> list[str]:
    return [f"ST*999*{control}*005010X231A1~", *body, f"SE*{len(body) + 2}*{control}~"]


def _interchange(*segments: str, control: str = "000000900", groups: int = 1) -> str:
    return "".join([
        f"ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*THERAPYCLINIC  *260105*1200*^*00501*{control}*0*P*:~",
        *segments,
        f"IEA*{groups}*{control}~",
    ])


def test_separators_come_from_the_isa_and_crlf_after_terminators_is_dropped() -> None:
    text = "\r\n".join([ISA_PIPE, "GS|HN|A|B|20260105|1200|7|X|005010X214~", "ST|277|0001|005010X214~",
                        "STC|A7>562>85^A6>21|20260105~", "SE|3|0001~", "GE|1|7~", "IEA|1|000000101~", ""])
    x12 = read_interchanges(text)
    assert x12.errors == []
    separators = x12.interchanges[0].separators
    assert (separators.element, separators.component, separators.repetition, separators.segment) == ("|", ">", "^", "~")
    (ts,) = list(x12.transactions)
    (stc,) = ts.body
    assert stc.repeats(1) == ("A7>562>85", "A6>21")
    assert stc.components(1)[:2] == ("A7", "562")
    assert (ts.id, ts.version, ts.functional_id, stc.position) == ("277", "005010X214", "HN", 4)


def test_unpadded_isa_line_feed_terminators_and_a_byte_order_mark() -> None:
    text = "\ufeffISA*00**00**ZZ*CH*ZZ*TC*260105*1200*^*00501*12*0*T*:\nGS*FA*CH*TC*20260105*1200*1*X*005010X231A1\n" \
           "ST*999*0001\nAK1*HC*1\nSE*3*0001\nGE*1*1\nIEA*1*12\n"
    x12 = read_interchanges(text.encode("utf-8"))
    assert x12.errors == []
    interchange = x12.interchanges[0]
    assert (interchange.sender, interchange.receiver, interchange.usage, interchange.control_number) == (
        "CH", "TC", "T", "12")
    assert interchange.separators.segment == "\n"
    assert [s.id for s in next(iter(x12.transactions)).segments] == ["ST", "AK1", "SE"]


def test_ta1_segments_are_kept_on_their_interchange_not_reported() -> None:
    x12 = read_interchanges(_interchange("TA1*000000045*260104*1830*A*000~", groups=0))
    assert x12.errors == []
    (ta1,) = x12.interchanges[0].acknowledgements
    assert (ta1.get(1), ta1.get(4), ta1.position) == ("000000045", "A", 2)


def test_several_interchanges_in_one_file() -> None:
    one = _interchange("GS*FA*CH*TC*20260105*1200*1*X*005010X231A1~", *_set("0001", "AK1*HC*1~"), "GE*1*1~",
                       control="000000001")
    two = _interchange("GS*FA*CH*TC*20260105*1200*2*X*005010X231A1~", *_set("0002", "AK1*HC*2~"), "GE*1*2~",
                       control="000000002")
    x12 = read_interchanges(one + "\r\n" + two)
    assert x12.errors == []
    assert [i.control_number for i in x12.interchanges] == ["000000001", "000000002"]
    assert [t.control_number for t in x12.transactions] == ["0001", "0002"]


def test_each_broken_set_is_marked_and_the_others_are_read() -> None:
    text = _interchange(
        "GS*FA*CH*TC*20260105*1200*5*X*005010X231A1~",
        *_set("0001", "AK1*HC*1~")[:-1],  # no SE: the next ST opens
        *_set("0002", "AK1*HC*2~"),
        "ST*999*0003~", "AK1*HC*3~", "SE*4*0003~",  # wrong count
        "ST*999*0004~", "AK1*HC*4~", "SE*3*0005~",  # control numbers differ
        "GE*4*5~",
    )
    x12 = read_interchanges(text)
    sets = list(x12.transactions)
    assert [t.ok for t in sets] == [False, True, False, False]
    assert [(e.rule, e.segment_id, e.position, e.transaction) for e in sets[0].errors] == [
        ("x12.missing-se", "ST", 5, "0001")]
    assert [(e.rule, e.element) for e in sets[2].errors] == [("x12.se-count", 1)]
    assert [(e.rule, e.element) for e in sets[3].errors] == [("x12.control-number", 2)]
    assert [s.id for s in sets[1].body] == ["AK1"]


def test_envelope_problems_name_segment_and_rule() -> None:
    text = _interchange(
        "GS*FA*CH*TC*20260105*1200*5*X*005010X231A1~", *_set("0001", "AK1*HC*1~"),
        "GS*FA*CH*TC*20260105*1200*6*X*005010X231A1~", *_set("0002", "AK1*HC*2~"), "GE*1*7~",
        groups=2,
    )
    found = [(e.rule, e.segment_id, e.position) for e in read_interchanges(text).errors]
    # ISA=1, GS=2, ST=3, AK1=4, SE=5, GS=6, ST=7, AK1=8, SE=9, GE=10
    assert found == [("x12.missing-ge", "GS", 6), ("x12.control-number", "GE", 10)]


def test_a_file_that_ends_inside_a_set_is_truncated() -> None:
    text = _interchange("GS*FA*CH*TC*20260105*1200*5*X*005010X231A1~", "ST*999*0001~", "AK1*HC*1~")
    text = text[: text.index("IEA")]
    x12 = read_interchanges(text)
    (ts,) = list(x12.transactions)
    assert [(e.rule, e.segment_id, e.position) for e in ts.errors] == [("x12.truncated", "AK1", 4)]


@pytest.mark.parametrize(
    "text",
    ["", "<html>", "ISA", "ISA*00*", "GS*FA*CH~ISA*00*          *00*"],
)
def test_what_is_not_an_interchange_at_all(text: str) -> None:
    with pytest.raises(X12SyntaxError) as caught:
        read_interchanges(text)
    assert caught.value.rule == "x12.interchange-header" and caught.value.position == 1


def test_each_interchange_is_split_with_its_own_separators() -> None:
    star = _interchange("GS*FA*CH*TC*20260105*1200*1*X*005010X231A1~", *_set("0001", "AK1*HC*1~"), "GE*1*1~",
                        control="000000001")
    pipe = "\n".join([ISA_PIPE, "GS|HN|CH|TC|20260105|1200|2|X|005010X214~", "ST|277|0002|005010X214~",
                       "BHT|0085|08|R|20260105|1200|TH~", "SE|3|0002~", "GE|1|2~", "IEA|1|000000101~"])
    x12 = read_interchanges(star + "\n" + pipe)
    assert x12.errors == []
    assert [i.separators.element for i in x12.interchanges] == ["*", "|"]
    assert [(t.id, t.control_number, [s.id for s in t.segments]) for t in x12.transactions] == [
        ("999", "0001", ["ST", "AK1", "SE"]), ("277", "0002", ["ST", "BHT", "SE"])]
    assert [s.position for s in next(iter(x12.interchanges[1].groups)).transactions[0].segments] == [10, 11, 12]


def test_a_later_interchange_with_a_broken_header_is_reported_and_read_with_the_previous_separators() -> None:
    one = _interchange("GS*FA*CH*TC*20260105*1200*1*X*005010X231A1~", *_set("0001", "AK1*HC*1~"), "GE*1*1~",
                       control="000000001")
    broken = "ISA*00*short~GS*FA*CH*TC*20260105*1200*2*X*005010X231A1~" + "".join(_set("0002", "AK1*HC*2~"))
    x12 = read_interchanges(one + broken + "GE*1*2~IEA*1*000000002~")
    assert x12.errors[0].rule == "x12.interchange-header" and x12.errors[0].position == 8
    assert [t.control_number for t in x12.transactions] == ["0001", "0002"]


def test_an_error_names_at_most_the_segment_id_never_the_content() -> None:
    from mappings.x12.reader import read_interchanges

    isa = "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*RECEIVER       *261204*0930*^*00501*000000001*0*T*:~"
    text = isa + "GS*HC*S*R*20261204*0930*1*X*005010X222A1~GE*0*1~IEA*1*000000001~NM1|IL|1|RIVERA|ANA~"
    errors = read_interchanges(text).errors
    assert errors and all(len(e.segment_id) <= 3 for e in errors)
    assert not any("RIVERA" in str(e) for e in errors)
