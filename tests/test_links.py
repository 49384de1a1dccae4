"""Tests for crawler/links.py: HTML detection, decoding, and link extraction."""

from __future__ import annotations

import codecs

import pytest

from crawler.links import Links, extract, is_html, source

PAGE = "http://a.example/dir/page.html"


def decode(body: bytes, content_type: str | None) -> str:
    """Text of an HTML body, in the charset `source` chooses (UTF-8 bytes decoded too)."""
    markup = source(body, content_type)
    return markup if isinstance(markup, str) else markup.decode("utf-8", errors="replace")


def links(
    html: str, page_url: str = PAGE, *, max_links: int = 1000, obey_rel_nofollow: bool = True
) -> list[str]:
    """The URLs `extract` finds in `html`."""
    return _extract(html, page_url, max_links=max_links, obey_rel_nofollow=obey_rel_nofollow).urls


def _extract(
    html: str,
    page_url: str = PAGE,
    *,
    max_links: int = 1000,
    obey_rel_nofollow: bool = True,
    x_robots_tag: str | None = None,
) -> Links:
    return extract(
        html,
        page_url,
        max_links=max_links,
        obey_rel_nofollow=obey_rel_nofollow,
        x_robots_tag=x_robots_tag,
    )


# -- is_html: by Content-Type -----------------------------------------------------------------

HTML_BODY = b"<!DOCTYPE html><html><body><a href='/x'>x</a></body></html>"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "text/html;charset=ISO-8859-1",
        "TEXT/HTML ; charset=utf-8",
        "application/xhtml+xml",
        "application/xhtml+xml; charset=utf-8",
    ],
)
def test_is_html_accepts_html_content_types(content_type: str) -> None:
    assert is_html(content_type, b"anything at all")


@pytest.mark.parametrize(
    "content_type",
    ["image/png", "text/plain", "text/plain; charset=utf-8", "application/json", "text/css"],
)
def test_is_html_trusts_a_non_html_content_type_even_for_an_html_body(content_type: str) -> None:
    assert not is_html(content_type, HTML_BODY)


# -- is_html: sniffing when the type is missing ---------------------------------------------


@pytest.mark.parametrize("content_type", [None, ""])
@pytest.mark.parametrize(
    "body",
    [
        HTML_BODY,
        b"<!doctype html>\n<title>t</title>",
        b"  \r\n\t<!DOCTYPE HTML PUBLIC '-//W3C//DTD HTML 4.01//EN'>",
        b"<html lang='en'>",
        b"<HTML>",
        b"<head><title>t</title></head>",
        b"<body>hello</body>",
    ],
)
def test_is_html_sniffs_html_when_the_type_is_missing(
    content_type: str | None, body: bytes
) -> None:
    assert is_html(content_type, body)


@pytest.mark.parametrize("content_type", [None, ""])
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR<a href='/in-png'>",
        b"%PDF-1.4 <html><a href='/in-pdf'>",
        b"plain text that mentions <html> later",
        b'{"html": "<html>"}',
    ],
)
def test_is_html_does_not_sniff_non_html_as_html(content_type: str | None, body: bytes) -> None:
    assert not is_html(content_type, body)


def test_is_html_sniffs_html_after_a_utf8_bom() -> None:
    assert is_html(None, codecs.BOM_UTF8 + b"<!DOCTYPE html><html><a href='/x'>x</a>")


def test_is_html_sniffs_html_that_starts_with_a_comment() -> None:
    assert is_html(None, b"<!-- generated -->\n<html><body><a href='/x'>x</a></body></html>")


# -- decode: HTTP charset ---------------------------------------------------------------------


def test_decode_uses_the_http_charset() -> None:
    body = "<p>Привет</p>".encode("cp1251")
    assert decode(body, "text/html; charset=windows-1251") == "<p>Привет</p>"


@pytest.mark.parametrize(
    "content_type",
    [
        'text/html; charset="KOI8-R"',
        "text/html;charset=koi8-r",
        "text/html; CHARSET = koi8-r",
        "text/html; charset='koi8-r'",
    ],
)
def test_decode_reads_the_http_charset_in_its_spellings(content_type: str) -> None:
    assert decode("Привет".encode("koi8-r"), content_type) == "Привет"


def test_decode_prefers_the_http_charset_to_the_meta_charset() -> None:
    body = '<meta charset="utf-8"><a href="/дом">д</a>'.encode("cp1251")
    text = decode(body, "text/html; charset=windows-1251")
    assert "/дом" in text
    assert links(text) == ["http://a.example/%D0%B4%D0%BE%D0%BC"]


def test_decode_prefers_a_bom_to_the_http_charset() -> None:
    # As browsers do (WHATWG encoding sniffing): a BOM is the strongest evidence.
    body = codecs.BOM_UTF8 + "café".encode()
    assert decode(body, "text/html; charset=windows-1252") == "café"


# -- decode: BOM ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
)
@pytest.mark.parametrize("content_type", [None, "text/html"])
def test_decode_uses_the_bom_and_strips_it(
    bom: bytes, encoding: str, content_type: str | None
) -> None:
    html = '<p>Grüße</p><a href="/straße">s</a>'
    text = decode(bom + html.encode(encoding), content_type)
    assert text == html
    assert links(text) == ["http://a.example/stra%C3%9Fe"]


def test_decode_prefers_the_bom_to_the_meta_charset() -> None:
    html = '<meta charset="windows-1252"><p>café</p>'
    assert decode(codecs.BOM_UTF8 + html.encode(), None) == html


# -- decode: <meta> charset -------------------------------------------------------------------


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1251">',
        "<meta charset=windows-1251>",
        "<META CHARSET='WINDOWS-1251'>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">',
        '<meta content="text/html;charset=windows-1251" http-equiv="content-type">',
    ],
)
@pytest.mark.parametrize("content_type", [None, "text/html"])
def test_decode_uses_the_meta_charset(meta: str, content_type: str | None) -> None:
    html = f"<html><head>{meta}</head><body>Привет</body></html>"
    assert decode(html.encode("cp1251"), content_type) == html


def test_decode_falls_back_to_the_meta_charset_when_the_http_charset_is_unknown() -> None:
    html = '<meta charset="windows-1251"><p>Привет</p>'
    assert decode(html.encode("cp1251"), "text/html; charset=x-no-such-charset") == html


def test_decode_treats_a_meta_utf16_declaration_as_utf8() -> None:
    body = b'<html><head><meta charset="utf-16"></head><body><a href="/x">x</a></body></html>'
    assert links(decode(body, None)) == ["http://a.example/x"]


# -- decode: UTF-8 fallback, never raises -----------------------------------------------------


def test_decode_defaults_to_utf8() -> None:
    assert decode("<p>Grüße</p>".encode(), None) == "<p>Grüße</p>"


def test_decode_replaces_invalid_utf8_without_raising() -> None:
    text = decode(b'<p>bad \xff\xfe\xc3( bytes</p><a href="/x">x</a>', None)
    assert "\ufffd" in text
    assert links(text) == ["http://a.example/x"]


def test_decode_of_a_mislabelled_latin1_page_still_yields_its_links() -> None:
    body = '<p>Café crème</p><a href="/menu">menu</a><a href="/café">c</a>'.encode("latin-1")
    text = decode(body, "text/html; charset=utf-8")
    assert "\ufffd" in text
    assert links(text) == ["http://a.example/menu", "http://a.example/caf%EF%BF%BD"]


@pytest.mark.parametrize("charset", ["x-no-such-charset", "utf-99", "base64", "undefined", "idna"])
@pytest.mark.parametrize("where", ["http", "meta"])
def test_decode_of_an_unknown_or_unusable_charset_never_raises(charset: str, where: str) -> None:
    meta = f'<meta charset="{charset}">' if where == "meta" else ""
    content_type = f"text/html; charset={charset}" if where == "http" else None
    body = f'<html><head>{meta}</head><body><a href="/x">x</a></body></html>'.encode()
    text = decode(body + b"\xe9", content_type)
    assert links(text) == ["http://a.example/x"]


# -- source: what extract is given (UTF-8 stays bytes) ---------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('<a href="/straße">s</a>'.encode(), None),
        ('<a href="/straße">s</a>'.encode(), "text/html; charset=utf-8"),
        ('<meta charset="utf-8"><a href="/straße">s</a>'.encode(), None),
        (codecs.BOM_UTF8 + '<a href="/straße">s</a>'.encode(), "text/html; charset=latin-1"),
        (b'<meta charset="utf-16"><a href="/x">x</a>', None),
        (b'<a href="/x">x</a>', "text/html; charset=base64"),
    ],
)
def test_source_keeps_a_utf8_body_as_bytes_without_its_bom(
    body: bytes, content_type: str | None
) -> None:
    markup = source(body, content_type)
    assert markup == body.removeprefix(codecs.BOM_UTF8)
    assert links(markup) == links(decode(body, content_type))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('<a href="/дом">д</a>'.encode("cp1251"), "text/html; charset=windows-1251"),
        ('<meta charset="koi8-r"><a href="/дом">д</a>'.encode("koi8-r"), None),
        (codecs.BOM_UTF16_LE + '<a href="/дом">д</a>'.encode("utf-16-le"), "text/html"),
    ],
)
def test_source_decodes_a_body_in_another_charset(body: bytes, content_type: str | None) -> None:
    assert source(body, content_type) == decode(body, content_type)
    assert links(source(body, content_type)) == ["http://a.example/%D0%B4%D0%BE%D0%BC"]


@pytest.mark.parametrize(
    "raw",
    [
        b"caf\xe9",  # latin-1 in a UTF-8 page
        b"\xff\xfe\xc3(",
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf0\x9f\x98",  # a truncated 4-byte sequence
        b"\xc0\xaf\xf4\x90\x80\x80",  # overlong, past U+10FFFF
        b"a\x00b",
        "\U0001f600 é €".encode(),
    ],
)
def test_extract_reads_utf8_bytes_as_decode_does(raw: bytes) -> None:
    # The parser replaces invalid UTF-8 exactly as bytes.decode(errors="replace") does.
    body = b"<p>" + raw + b'</p><a href="/' + raw + b'">x</a><iframe src="' + raw + b'">'
    assert links(source(body, None)) == links(decode(body, None))
    assert links(body) == links(body.decode("utf-8", errors="replace"))


# -- extract: which elements ------------------------------------------------------------------


def test_extract_follows_a_area_frame_iframe_and_meta_refresh() -> None:
    html = """<html><head><meta http-equiv="refresh" content="5; url=/refresh"></head>
    <body><a href="/a">a</a><map><area href="/area" alt=""></map>
    <iframe src="/iframe"></iframe></body></html>"""
    assert links(html) == [
        "http://a.example/refresh",
        "http://a.example/a",
        "http://a.example/area",
        "http://a.example/iframe",
    ]


def test_extract_follows_frames_of_a_frameset() -> None:
    html = '<html><frameset><frame src="/left"><frame src="right.html"></frameset></html>'
    assert links(html) == ["http://a.example/left", "http://a.example/dir/right.html"]


@pytest.mark.parametrize("rel", ["alternate", "next", "prev", "canonical", "Next", "CANONICAL"])
def test_extract_follows_link_elements_with_a_navigational_rel(rel: str) -> None:
    assert links(f'<link rel="{rel}" href="/target">') == ["http://a.example/target"]


@pytest.mark.parametrize(
    "rel", ["stylesheet", "icon", "shortcut icon", "preload", "dns-prefetch", "manifest", ""]
)
def test_extract_ignores_link_elements_with_other_rels(rel: str) -> None:
    assert links(f'<link rel="{rel}" href="/resource">') == []


def test_extract_ignores_a_link_element_without_rel() -> None:
    assert links('<link href="/resource">') == []


def test_extract_ignores_an_alternate_stylesheet() -> None:
    assert links('<link rel="alternate stylesheet" href="/dark.css" title="Dark">') == []


def test_extract_ignores_elements_that_only_load_resources() -> None:
    html = """<img src="/img.png"><script src="/app.js"></script><video src="/v.mp4"></video>
    <form action="/submit"></form><a>no href</a><iframe>no src</iframe>"""
    assert links(html) == []


# -- extract: meta refresh ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "5; url=/x",
        "5;url=/x",
        "0; URL=/x",
        "5;URL='/x'",
        '5; url="/x"',
        "5, url=/x",
        "5 ; url = /x ",
        "  5;  Url=/x",
        "5; /x",
        "url=/x",
        "0;url=http://a.example/x",
    ],
)
def test_extract_follows_meta_refresh_in_its_spellings(content: str) -> None:
    quoted = content.replace("'", "&#39;").replace('"', "&quot;")
    for http_equiv in ("refresh", "Refresh", "REFRESH"):
        html = f"<meta http-equiv=\"{http_equiv}\" content='{quoted}'>"
        assert links(html) == ["http://a.example/x"], http_equiv


@pytest.mark.parametrize("content", ["5", "0", "", " "])
def test_extract_ignores_meta_refresh_without_a_url(content: str) -> None:
    assert links(f'<meta http-equiv="refresh" content="{content}">') == []


def test_extract_ignores_a_meta_with_content_but_no_refresh() -> None:
    assert links('<meta name="description" content="5; url=/x">') == []


def test_extract_follows_meta_refresh_with_a_fractional_delay() -> None:
    assert links('<meta http-equiv="refresh" content="0.5; url=/x">') == ["http://a.example/x"]


# -- extract: resolution against the page and <base href> -----------------------------------


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("other.html", "http://a.example/dir/other.html"),
        ("./sub/x", "http://a.example/dir/sub/x"),
        ("../up", "http://a.example/up"),
        ("/abs", "http://a.example/abs"),
        ("?q=1", "http://a.example/dir/page.html?q=1"),
        ("//b.example/p", "http://b.example/p"),
        ("https://c.example/q?x=1", "https://c.example/q?x=1"),
        ("HTTP://D.example/", "http://D.example/"),
    ],
)
def test_extract_resolves_against_the_page_url(href: str, expected: str) -> None:
    assert links(f'<a href="{href}">x</a>') == [expected]


def test_extract_resolves_against_the_final_page_url_it_is_given() -> None:
    assert links('<a href="x">x</a>', "https://b.example/moved/here") == [
        "https://b.example/moved/x"
    ]


def test_extract_resolves_against_an_absolute_base() -> None:
    html = '<head><base href="https://b.example/root/"></head><a href="x">x</a><a href="/y">y</a>'
    assert links(html) == ["https://b.example/root/x", "https://b.example/y"]


def test_extract_resolves_a_relative_base_against_the_page_url() -> None:
    html = '<head><base href="../other/"></head><a href="x">x</a>'
    assert links(html) == ["http://a.example/other/x"]


def test_extract_uses_only_the_first_base_href() -> None:
    html = """<head><base target="_blank"><base href="/first/"><base href="/second/"></head>
    <a href="x">x</a>"""
    assert links(html) == ["http://a.example/first/x"]


def test_extract_does_not_report_the_base_href_as_a_link() -> None:
    assert links('<base href="https://b.example/">') == []


def test_extract_applies_the_base_to_links_before_it() -> None:
    html = '<body><a href="x">x</a><base href="/other/"><a href="y">y</a></body>'
    assert links(html) == ["http://a.example/other/x", "http://a.example/other/y"]


# -- extract: fragments, schemes, duplicates --------------------------------------------------


def test_extract_drops_fragments_and_collapses_what_is_left() -> None:
    html = '<a href="/p#one">1</a><a href="/p#two">2</a><a href="/q?x=1#frag">3</a>'
    assert links(html) == ["http://a.example/p", "http://a.example/q?x=1"]


@pytest.mark.parametrize("href", ["#top", "#", "  #x  ", ""])
def test_extract_ignores_pure_fragment_and_empty_links(href: str) -> None:
    assert links(f'<a href="{href}">x</a>') == []


@pytest.mark.parametrize(
    "href",
    [
        "javascript:void(0)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "mailto:someone@a.example",
        "data:text/html,<a href='http://x/'>",
        "tel:+441234567",
        "ftp://a.example/file",
        "file:///etc/passwd",
        "about:blank",
    ],
)
def test_extract_skips_non_http_schemes(href: str) -> None:
    html = f'<a href="{href}">x</a><iframe src="{href}"></iframe><a href="/ok">ok</a>'
    assert links(html) == ["http://a.example/ok"]


def test_extract_collapses_duplicates_in_first_seen_order() -> None:
    html = """<a href="/b">b</a><a href="/a">a</a><a href="/b">b again</a>
    <link rel="next" href="/a"><iframe src="http://a.example/c"></iframe><a href="/c">c</a>"""
    assert links(html) == ["http://a.example/b", "http://a.example/a", "http://a.example/c"]


# -- extract: rel=nofollow --------------------------------------------------------------------


NOFOLLOW_HTML = """<a href="/plain">p</a>
<a href="/nf" rel="nofollow">n</a>
<a href="/ext-nf" rel="external nofollow">e</a>
<a href="/upper-nf" rel="NoFollow">u</a>
<map><area href="/area-nf" rel="nofollow"></map>
<a href="/not-nf" rel="nofollowers noopener">x</a>"""


def test_extract_skips_rel_nofollow_links_by_default() -> None:
    found = _extract(NOFOLLOW_HTML)
    assert found.urls == ["http://a.example/plain", "http://a.example/not-nf"]
    assert not found.nofollow


def test_extract_follows_rel_nofollow_links_when_not_obeying_it() -> None:
    assert links(NOFOLLOW_HTML, obey_rel_nofollow=False) == [
        "http://a.example/plain",
        "http://a.example/nf",
        "http://a.example/ext-nf",
        "http://a.example/upper-nf",
        "http://a.example/area-nf",
        "http://a.example/not-nf",
    ]


# -- extract: page-level nofollow ------------------------------------------------------------


@pytest.mark.parametrize(
    "meta",
    [
        '<meta name="robots" content="nofollow">',
        '<meta name="ROBOTS" content="NOFOLLOW">',
        '<meta name="robots" content="noindex, nofollow">',
        '<META NAME="Robots" CONTENT="NoIndex,NoFollow">',
    ],
)
@pytest.mark.parametrize("obey_rel_nofollow", [True, False])
def test_extract_obeys_meta_robots_nofollow(meta: str, obey_rel_nofollow: bool) -> None:
    html = f'<html><head>{meta}</head><body><a href="/a">a</a><a href="/b">b</a></body></html>'
    found = _extract(html, obey_rel_nofollow=obey_rel_nofollow)
    assert found.urls == []
    assert found.nofollow


def test_extract_clears_links_seen_before_a_meta_robots_nofollow() -> None:
    html = '<a href="/before">x</a><meta name="robots" content="nofollow"><a href="/after">y</a>'
    found = _extract(html)
    assert (found.urls, found.nofollow) == ([], True)


@pytest.mark.parametrize(
    "meta",
    [
        '<meta name="robots" content="noindex">',
        '<meta name="robots" content="index, follow">',
        '<meta name="description" content="nofollow">',
    ],
)
def test_extract_follows_links_when_meta_robots_allows(meta: str) -> None:
    found = _extract(f'<head>{meta}</head><a href="/a">a</a>')
    assert (found.urls, found.nofollow) == (["http://a.example/a"], False)


@pytest.mark.parametrize(
    "header", ["nofollow", "NOFOLLOW", "noindex, nofollow", "noarchive,nofollow"]
)
def test_extract_obeys_x_robots_tag_nofollow(header: str) -> None:
    found = _extract('<a href="/a">a</a>', x_robots_tag=header)
    assert (found.urls, found.nofollow) == ([], True)


@pytest.mark.parametrize("header", [None, "", "noindex", "noarchive, nosnippet"])
def test_extract_follows_links_when_x_robots_tag_allows(header: str | None) -> None:
    found = _extract('<a href="/a">a</a>', x_robots_tag=header)
    assert (found.urls, found.nofollow) == (["http://a.example/a"], False)


def test_extract_obeys_meta_robots_nofollow_after_max_links() -> None:
    html = "".join(f'<a href="/p{i}">x</a>' for i in range(5))
    html += '<meta name="robots" content="nofollow">'
    found = _extract(html, max_links=2)
    assert (found.urls, found.nofollow) == ([], True)


# -- extract: max_links ---------------------------------------------------------------------


def test_extract_cuts_a_page_of_10000_links_at_max_links() -> None:
    html = "<html><body>" + "".join(f'<a href="/p{i}">{i}</a>' for i in range(10_000))
    found = _extract(html, max_links=1000)
    assert len(found.urls) == 1000
    assert found.urls == [f"http://a.example/p{i}" for i in range(1000)]
    assert found.truncated


def test_extract_is_not_truncated_at_exactly_max_links() -> None:
    html = "".join(f'<a href="/p{i}">x</a>' for i in range(3))
    found = _extract(html, max_links=3)
    assert (len(found.urls), found.truncated) == (3, False)


def test_extract_does_not_count_duplicates_or_skipped_links_against_max_links() -> None:
    html = """<a href="/a">a</a><a href="/a#x">a</a><a href="mailto:x@y">m</a>
    <a href="#top">t</a><a href="/b" rel="nofollow">n</a><a href="/b">b</a><a href="/a">a</a>"""
    found = _extract(html, max_links=2)
    assert found.urls == ["http://a.example/a", "http://a.example/b"]
    assert not found.truncated


def test_extract_of_an_empty_page_finds_nothing() -> None:
    found = _extract("")
    assert (found.urls, found.truncated, found.nofollow) == ([], False, False)


# -- extract: messy input ---------------------------------------------------------------------


def test_extract_tolerates_malformed_html() -> None:
    html = """<html><body><div><p>unclosed <b>bold <a href=/unquoted>u</a>
    <table><tr><td><a href='/in-table'>t</a></table></div></div></span>
    <a href="/after-junk" <<>>>x</a><a href="/last">l"""
    assert links(html) == [
        "http://a.example/unquoted",
        "http://a.example/in-table",
        "http://a.example/after-junk",
        "http://a.example/last",
    ]


def test_extract_finds_links_among_garbage_bytes() -> None:
    body = b"\x00\x89PNG\r\n\x1a\n\xff\xfe\x00\xc3(<p>\x80\x81<a href='/one'>1</a>\x00\xf0\x28"
    body += b'<a href="/two">\xe9</a>\xfe\xff'
    text = decode(body, "text/html")
    assert "\ufffd" in text
    assert links(text) == ["http://a.example/one", "http://a.example/two"]


@pytest.mark.parametrize("href", [" /x", "/x ", "\n\t /x \r\n"])
def test_extract_strips_whitespace_around_hrefs(href: str) -> None:
    assert links(f'<a href="{href}">x</a>') == ["http://a.example/x"]


def test_extract_handles_uppercase_tags_and_attributes() -> None:
    html = """<HTML><HEAD><BASE HREF="/b/"><LINK REL="NEXT" HREF="n"></HEAD><BODY>
    <A HREF="a">a</A><AREA HREF="ar"><IFRAME SRC="if"></IFRAME>
    <META HTTP-EQUIV="REFRESH" CONTENT="1; URL=r"></BODY></HTML>"""
    assert links(html) == [
        "http://a.example/b/n",
        "http://a.example/b/a",
        "http://a.example/b/ar",
        "http://a.example/b/if",
        "http://a.example/b/r",
    ]


def test_extract_keeps_ipv6_literal_hosts() -> None:
    html = '<a href="http://[::1]:8080/p#f">1</a><a href="https://[2001:db8::1]/q">2</a>'
    assert links(html) == ["http://[::1]:8080/p", "https://[2001:db8::1]/q"]


def test_extract_resolves_against_an_ipv6_page_url() -> None:
    assert links('<a href="x">x</a>', "http://[::1]:8080/dir/") == ["http://[::1]:8080/dir/x"]


@pytest.mark.parametrize(
    "href", ["http://[::1", "http://[zz]/", "http://]x/", "//[::1/x", "https://[::1/"]
)
def test_extract_skips_unparsable_hrefs_without_raising(href: str) -> None:
    html = f'<a href="{href}">bad</a><iframe src="{href}"></iframe><a href="/ok">ok</a>'
    assert links(html) == ["http://a.example/ok"]


@pytest.mark.parametrize("href", ["http://h.example:abc/", "http://h.example:99999/"])
def test_extract_skips_hrefs_with_an_invalid_port(href: str) -> None:
    assert links(f'<a href="{href}">bad</a><a href="/ok">ok</a>') == ["http://a.example/ok"]


def test_links_come_without_userinfo_and_with_ipv4_hosts_as_dotted_quads() -> None:
    page = b"""<a href="http://user:pw@b.example/x">1</a>
    <a href="//token@c.example/">2</a> <a href="http://0177.0.0.1:81/y#f">3</a>
    <a href="http://0x7f.1/z">4</a> <link rel="next" href="http://2130706433/n">
    <a href="http://1.2.3.999/">bad</a> <a href="http://b.example/x">dup of 1</a>"""
    found = extract(page, "http://a.example/", max_links=100)
    assert found.urls == [
        "http://b.example/x",
        "http://c.example/",
        "http://127.0.0.1:81/y",
        "http://127.0.0.1/z",
        "http://127.0.0.1/n",
    ]
    assert extract(b'<a href="p">p</a>', "http://u:p@0x7f.1/d/", max_links=9).urls == [
        "http://127.0.0.1/d/p"
    ]
