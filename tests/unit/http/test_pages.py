"""The bodies the endpoints serve: pixel, pages, the unsubscribe confirmation."""

from __future__ import annotations

from mailtrack.http import pages
from mailtrack.http.messages import Response


def _header(response: Response, name: str) -> str:
    [value] = [v for k, v in response.headers if k.lower() == name.lower()]
    return value


def test_pixel_is_the_43_byte_gif_and_never_cached() -> None:
    response = pages.pixel()
    assert (response.status, response.body, _header(response, "Content-Type")) == (200, pages.GIF, "image/gif")
    assert ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0") in response.headers


def test_head_keeps_the_headers_of_get_but_drops_the_body() -> None:
    for get, head in ((pages.pixel(), pages.pixel(head=True)),
                      (pages.page(404, "T", "M"), pages.page(404, "T", "M", head=True)),
                      (pages.confirmation(None), pages.confirmation(None, head=True))):
        assert (head.status, head.headers, head.body) == (get.status, get.headers, b"")
        assert int(_header(head, "Content-Length")) == len(get.body) > 0


def test_pages_carry_the_content_security_policy_and_no_referrer() -> None:
    response = pages.page(200, "Title", "Message")
    assert _header(response, "Content-Security-Policy").startswith("default-src 'none'")
    assert _header(response, "Referrer-Policy") == "no-referrer"
    assert b"<h1>Title</h1><p>Message</p>" in response.body


def test_not_allowed_names_the_methods_in_allow() -> None:
    response = pages.not_allowed("GET, HEAD")
    assert (response.status, _header(response, "Allow")) == (405, "GET, HEAD")
    assert b"This address takes GET, HEAD." in response.body


def test_confirmation_puts_the_button_before_the_last_body_end_tag() -> None:
    landing = "<html><body><p>x</p><!-- </body> --></BODY ></html>"
    body = pages.confirmation(landing).body.decode()
    assert body.startswith("<html><body><p>x</p><!-- </body> --><form method=\"post\">")
    assert body.endswith("</form></BODY ></html>")


def test_confirmation_appends_the_button_to_a_landing_page_without_body_end() -> None:
    body = pages.confirmation("<p>Sad to see you go</p>").body.decode()
    assert body.startswith("<p>Sad to see you go</p><form method=\"post\">")
    assert 'name="List-Unsubscribe" value="One-Click"' in body


def test_confirmation_without_a_landing_page_asks_the_question() -> None:
    body = pages.confirmation("").body
    assert b"Do you want to stop receiving these emails?" in body and b'<form method="post">' in body
