"""The query fast path (no percent-escapes, no '+') parses exactly as urllib's parse_qsl."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from chargebrain.api.request import parse_query_pairs

PLAIN = st.text(alphabet=st.sampled_from("ab=&;cmd_0 .é"), max_size=30)


@given(PLAIN)
def test_the_fast_path_is_parse_qsl(query):
    assert parse_query_pairs(query) == parse_qsl(query, keep_blank_values=True)


def test_escaped_queries_still_decode():
    assert parse_query_pairs("cmd=get_dev_info&name=a%20b+c") == [
        ("cmd", "get_dev_info"), ("name", "a b c")]
    assert parse_query_pairs("cmd%3Dmodbus%26device%3Devse") == [
        ("cmd", "modbus"), ("device", "evse")]
