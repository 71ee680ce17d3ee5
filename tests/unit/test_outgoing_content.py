"""Outgoing HTTP without sockets: URLs from addresses and path templates, body codecs."""

import pytest
from twisted.internet import task

from broker.http.content import encode_body, parse_body
from broker.http.outgoing_errors import ConnectionFailed
from broker.http.listener import Listener
from broker.http.outgoing import HTTP_OUTGOING, HTTPConnection


def connection(own=None, **config):
    section = HTTP_OUTGOING.check({"name": "x", "type": "http", **config})
    return HTTPConnection(section, task.Clock(), self_address=lambda: own)


@pytest.mark.parametrize("address, path, params, url", [
    ("https://api.example.com", "/", {}, "https://api.example.com/"),
    ("https://api.example.com/base", "/", {}, "https://api.example.com/base"),
    ("https://api.example.com/base/", "/v1/{id}", {"id": 7, "q": "a b"},
     "https://api.example.com/base/v1/7?q=a+b"),
    ("http://h:8080", "/data/EXR/{key}", {"key": "D.USD+GBP.EUR.SP00.A", "format": "csvdata"},
     "http://h:8080/data/EXR/D.USD+GBP.EUR.SP00.A?format=csvdata"),
    ("http://h", "/x", {"flag": True, "many": ["a", "b"]}, "http://h/x?flag=true&many=a&many=b"),
])
def test_urls(address, path, params, url):
    assert connection(address=address, path=path).url(params)[0] == url


def test_path_for_logs_has_no_query():
    assert connection(address="http://h", path="/x/{id}").url({"id": 1, "key": "secret"})[1] == "/x/1"


def test_config_params_are_defaults():
    conn = connection(address="http://h", path="/latest", params={"from": "EUR", "to": "USD"})
    assert conn.url({"to": "GBP"})[0] == "http://h/latest?from=EUR&to=GBP"


def test_self_address():
    conn = connection(own="http://127.0.0.1:4242", address="self/fixtures/rates/ecb", path="/daily.xml")
    assert conn.url()[0] == "http://127.0.0.1:4242/fixtures/rates/ecb/daily.xml"
    with pytest.raises(ConnectionFailed, match="not listening"):
        connection(own=None, address="self").url()


class _Host:
    def __init__(self, host, port):
        self.host, self.port = host, port


def _listening(host, port):
    listener = Listener("tcp:0", None)
    listener.port = type("Port", (), {"getHost": lambda _self: _Host(host, port)})()
    return listener


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", "http://127.0.0.1:17010"), ("0.0.0.0", "http://127.0.0.1:17010"),
    ("::", "http://[::1]:17010"), ("::1", "http://[::1]:17010"),
])
def test_own_address(host, expected):
    assert _listening(host, 17010).own_address() == expected


def test_own_address_before_listening():
    assert Listener("tcp:0", None).own_address() is None


def test_parse_empty_bodies_are_none_except_raw():
    assert parse_body("json", b"  ") is None
    assert parse_body("raw", b"") == b""


def test_parse_json_honours_the_charset():
    latin = '{"a": "é"}'.encode("latin-1")
    assert parse_body("json", latin, "application/json; charset=latin-1") == {"a": "é"}
    with pytest.raises(ValueError, match="not valid utf-8 text"):
        parse_body("json", b'{"a": "\xff"}')


def test_parse_csv_strips_a_bom_and_skips_blank_lines():
    assert parse_body("csv", b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n") == [{"a": "1", "b": "2"}]


def test_parse_csv_errors():
    with pytest.raises(ValueError, match="empty column name"):
        parse_body("csv", b"a,,c\r\n1,2,3\r\n")
    with pytest.raises(ValueError, match="malformed CSV"):
        parse_body("csv", b'a,b\r\n"unterminated,2\r\n')


def test_encode_bodies():
    assert encode_body("json", {"a": 1}) == (b'{"a":1}', "application/json")
    assert encode_body("csv", [{"a": 1, "b": 2}]) == (b"a,b\r\n1,2\r\n", "text/csv; charset=utf-8")
    assert encode_body("raw", "text")[0] == b"text"
    with pytest.raises(TypeError, match="cannot send a dict as raw"):
        encode_body("raw", {"a": 1})
