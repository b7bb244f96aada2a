"""The tag rule, its error messages and the README say the same: up to 16 tags per device, each 1 to 32 characters."""
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from app.devices.forms import MAX_TAGS, TAG_LENGTH
from app.devices.models import Device
from app.extensions import db
from tests.test_device_finding import add_device

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_readme_states_the_rule_the_form_applies():
    said = " ".join(README.split())  # the sentence may wrap anywhere
    assert f"up to {MAX_TAGS} tags per device (each 1 to {TAG_LENGTH} letters, digits and" in said
    assert (MAX_TAGS, TAG_LENGTH) == (16, 32)


@pytest.mark.parametrize("tags, saved", [
    ("a" * TAG_LENGTH, ["a" * TAG_LENGTH]), (",".join(f"t{i:02d}" for i in range(MAX_TAGS)), MAX_TAGS)])
def test_the_limits_themselves_are_accepted(app, auth, client, tags, saved):
    auth.login()
    assert add_device(client, name="edge-ok", tags=tags).status_code == 200
    with app.app_context():
        device = db.session.scalar(select(Device).filter_by(name="edge-ok"))
        assert device.tags == saved if isinstance(saved, list) else len(device.tags) == saved


@pytest.mark.parametrize("tags, message", [
    ("a" * (TAG_LENGTH + 1), f"Each tag is 1 to {TAG_LENGTH} letters, digits and . _ : / -"),
    ("-lead", f"Each tag is 1 to {TAG_LENGTH} letters"),
    (",".join(f"t{i:02d}" for i in range(MAX_TAGS + 1)), f"At most {MAX_TAGS} tags per device ({MAX_TAGS + 1} given)"),
])
def test_one_over_a_limit_says_which_limit(app, auth, client, tags, message):
    auth.login()
    reply = add_device(client, name="edge-bad", tags=tags)
    html = reply.get_data(as_text=True)
    assert reply.status_code == 422 and message in html and 'value="edge-bad"' in html
    assert "up to 32" not in html
    assert not re.search(r"\bup to \d+\)", html)  # no bare number that reads as either limit
