"""The viewer's count: up to a bound (a free text's sooner), said as "more than N" with a pager that walks past it;
a page that is not full gives the exact total without a count."""
import re

from app.audit import query
from app.audit.events import record
from tests.support import AuthActions


def test_a_free_text_is_counted_up_to_its_bound_and_says_so(any_app, monkeypatch):
    with any_app.app_context():
        for i in range(30):
            record("device.created", f"created device edge{i}", actor="admin")
        record("device.created", "created device web42 (10.0.0.42:22)", actor="ops")
        record("device.created", "created device web43 (10.0.0.43:22)", actor="ops")
    monkeypatch.setattr(query, "TEXT_COUNT_BOUND", 5)
    monkeypatch.setattr(query, "COUNT_BOUND", 1000)
    admin = any_app.test_client()
    assert AuthActions(admin).login().status_code == 302
    for term in ("e", "edge"):  # a scan ("e" is in nearly every event) and an indexed term, beside a user
        html = admin.get(f"/audit/rows?q={term}&user=admin&size=25").get_data(as_text=True)
        assert "more than 5 events, page 1</p>" in html, term
        assert html.count('data-action="') == 25  # the page itself is whole
    assert "1 event, page 1 of 1" in admin.get("/audit/rows?q=web42").get_data(as_text=True)  # a short page
    assert "2 events, page 1 of 1" in admin.get("/audit/rows?q=b4").get_data(as_text=True)  # a short scanned page
    # Without a free text the (larger) bound of every filter applies.
    assert "32 events, page 1 of 2" in admin.get("/audit/rows?action=device.created&size=25").get_data(as_text=True)


def test_a_broad_filter_is_counted_up_to_a_bound_and_the_pager_walks_past_it(app, admin, monkeypatch):
    with app.app_context():
        for i in range(60):
            record("auth.logout", f"user logged out #{i}", actor="admin")
    monkeypatch.setattr(query, "COUNT_BOUND", 30)

    def shown(page):
        html = admin.get(f"/audit/rows?action=auth.logout&size=25&page={page}").get_data(as_text=True)
        return (re.search(r'<p class="audit-total">([^<]*)</p>', html).group(1),
                re.findall(r'hx-get="[^"]*page=(\d+)[^"]*"[^>]*>([^<]*)</a>', html))

    total, links = shown(1)
    assert total == "more than 30 events, page 1"  # 31 or more: no "of", and no link says "last"
    assert links == [("2", "2"), ("2", "next ›")]
    total, links = shown(2)  # a full page: one more is offered
    assert total == "more than 30 events, page 2" and ("3", "next ›") in links
    total, links = shown(3)  # a short page is the last, and tells the exact total
    assert total == "60 events, page 3 of 3" and ("3", "next ›") not in links and ("4", "next ›") not in links
    assert query.Page([], query.AtLeast(30), 4, 25).pages == 4  # past the end: nothing further offered
