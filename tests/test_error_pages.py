"""The 403 and 404 answers: the app's own page with a sentence and a way back, a short body for JSON and htmx."""
import pytest

from tests.support import logged_in_user

STOCK = ("The requested URL was not found on the server", "You don't have the permission to access")


def test_not_found_is_our_page_with_a_way_back(admin):
    response = admin.get("/no-such-page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "<h1>Not found</h1>" in page and "There is nothing here" in page
    assert 'href="/">Back to your devices</a>' in page
    assert not any(stock in page for stock in STOCK)


def test_forbidden_is_our_page_with_a_way_back(app):
    user = logged_in_user(app, "plain-user")
    response = user.get("/users/")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page and "You may not open this" in page
    assert 'href="/">Back to your devices</a>' in page
    assert not any(stock in page for stock in STOCK)


def test_nobody_logged_in_is_sent_to_the_log_in_page(client):
    page = client.get("/no-such-page").get_data(as_text=True)
    assert "There is nothing here" in page and 'href="/login">Go to the log-in page</a>' in page


def test_a_views_own_sentence_is_kept(admin):
    response = admin.get("/terminals/hostkeys/offered/12345")
    assert response.status_code == 404 and "accepted or forgotten already" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/no-such-page", "/users/"])
def test_json_and_htmx_callers_get_a_short_body(app, path):
    user = logged_in_user(app, "script-user")
    answer = user.get(path, headers={"Accept": "application/json"})
    assert answer.status_code in (403, 404) and answer.is_json
    assert set(answer.get_json()) == {"error", "message"} and answer.get_json()["message"].endswith(".")
    htmx = user.get(path, headers={"HX-Request": "true"})
    text = htmx.get_data(as_text=True)
    assert htmx.status_code == answer.status_code and htmx.mimetype == "text/plain"
    assert text == answer.get_json()["message"] and "<" not in text and len(text) < 200
