"""Image references: the grammar, its error messages, and round-trips (property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jindr_nb.errors import InvalidReference
from jindr_nb.refs import Ref, is_loopback, parse_ref, parse_registry, scheme_for

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("archy", Ref("localhost:5001", "archy", "latest")),
        ("archy:v1", Ref("localhost:5001", "archy", "v1")),
        ("team/app-x/svc_1:1.2.3", Ref("localhost:5001", "team/app-x/svc_1", "1.2.3")),
        ("e/a__b.c--d", Ref("localhost:5001", "e/a__b.c--d", "latest")),
        ("a__b.c--d/e", None),
        (f"archy@{D}", Ref("localhost:5001", "archy", None, D)),
        (f"archy:v1@{D}", Ref("localhost:5001", "archy", "v1", D)),
        ("localhost/archy", Ref("localhost", "archy", "latest")),
        ("localhost:5002/archy:x", Ref("localhost:5002", "archy", "x")),
        ("127.0.0.1:5000/a/b", Ref("127.0.0.1:5000", "a/b", "latest")),
        ("[::1]:5000/a:t", Ref("[::1]:5000", "a", "t")),
        ("registry.example.com/x", Ref("registry.example.com", "x", "latest")),
        ("Registry.Example.com:443/x", Ref("Registry.Example.com:443", "x", "latest")),
        ("myhost:5000/x", Ref("myhost:5000", "x", "latest")),
        ("library/ubuntu", Ref("localhost:5001", "library/ubuntu", "latest")),
        ("x:" + "t" * 128, Ref("localhost:5001", "x", "t" * 128)),
        ("sha512x@sha512:" + "b" * 128, Ref("localhost:5001", "sha512x", None, "sha512:" + "b" * 128)),
    ],
)
def test_parses(text: str, expected: Ref | None) -> None:
    if expected is None:  # a first component with "." is a host, as in Docker
        with pytest.raises(InvalidReference, match=f'invalid registry host "a__b.c--d" in "{text}"'):
            parse_ref(text)
        return
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("archy:Latest!", 'invalid tag "Latest!" in "archy:Latest!"'),
        ("Archy", 'invalid repository component "Archy"'),
        ("a/B/c", 'invalid repository component "B"'),
        ("a..b", 'invalid repository component "a..b"'),
        ("a___b", 'invalid repository component "a___b"'),
        ("-a", 'invalid repository component "-a"'),
        ("a/", 'invalid repository component ""'),
        ("x:" + "t" * 129, "longer than 128"),
        ("x:.t", 'invalid tag ".t"'),
        ("x@sha256:abc", "needs 64 lower-case hex"),
        ("x@sha256:" + "A" * 64, "needs 64 lower-case hex"),
        ("x@md5:" + "a" * 32, 'algorithm "md5"'),
        ("x@" + "a" * 64, "expected algorithm:hex"),
        ("x@a@b", 'more than one "@"'),
        ("host:99999/x", 'invalid port "99999" in "host:99999/x"'),
        ("host:0/x", 'invalid port "0"'),
        ("host:/x", "empty port"),
        ("[::zz]:5000/x", "is not an IPv6 address"),
        ("[::1/x", 'unclosed "["'),
        ("bad_host.com/x", 'invalid registry host "bad_host.com"'),
        ("", "empty image reference"),
        (" x", "whitespace"),
        ("x y", "whitespace"),
        (":tag", "repository name is empty"),
        ("a" * 256, "longer than 255"),
    ],
)
def test_rejects_with_the_bad_part_named(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_ref(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_bare_repository_for_listing_keeps_no_tag() -> None:
    assert parse_ref("archy", default_tag=None) == Ref("localhost:5001", "archy")
    assert parse_ref("archy", "127.0.0.1:9", default_tag=None).registry == "127.0.0.1:9"


def test_value_object_copies() -> None:
    ref = parse_ref("a:b")
    assert ref.with_tag("c") == Ref("localhost:5001", "a", "c")
    assert ref.with_digest(D).reference == D
    assert ref.with_registry("h:1").name == "h:1/a"
    with pytest.raises(InvalidReference):
        ref.with_tag("bad tag")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("registry", "scheme"),
    [
        ("localhost:5001", "http"),
        ("127.0.0.5:80", "http"),
        ("[::1]:5000", "http"),
        ("example.com", "https"),
        ("10.0.0.1:5000", "https"),
    ],
)
def test_scheme_is_http_only_for_loopback(registry: str, scheme: str) -> None:
    assert scheme_for(parse_registry(registry)) == scheme
    assert is_loopback(registry) == (scheme == "http")
    assert scheme_for("example.com", {"example.com"}) == "http"


def test_registry_with_scheme_is_refused_with_advice() -> None:
    with pytest.raises(InvalidReference, match="without a scheme"):
        parse_registry("http://localhost:5001")


component = st.from_regex(r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,6}){0,2}", fullmatch=True)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
hosts = st.sampled_from(["", "localhost:5001/", "127.0.0.1:5000/", "[::1]:5000/", "reg.example.com/", "h:1/"])
digests = st.one_of(st.just(""), st.from_regex(r"@sha256:[a-f0-9]{64}", fullmatch=True))


@settings(max_examples=300, deadline=None)
@given(hosts, st.lists(component, min_size=1, max_size=3), st.one_of(st.just(""), tags.map(":{}".format)), digests)
def test_valid_references_round_trip(host: str, path: list[str], tag: str, digest: str) -> None:
    # Without a host, a first component with "." names a host (Docker's rule), not a path.
    assume(host or "." not in path[0])
    text = host + "/".join(path) + tag + digest
    ref = parse_ref(text)
    assert parse_ref(str(ref)) == ref
    assert ref.repository == "/".join(path)
    if host:
        assert str(ref).startswith(host)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_anything_accepted_round_trips_and_anything_else_is_one_clear_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidReference as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert parse_ref(str(ref)) == ref
