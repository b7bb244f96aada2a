"""Importing devices: the parsers on good and hostile input, preview then confirm over HTTP (devices and events),
cancel, a second import, signed previews, a shared key, and the CSV export (no secret, no formula)."""
import io
import re
import socket

import pytest
from sqlalchemy import select

from app import crypto
from app.audit.models import AuditEvent
from app.devices import importing, keys
from app.devices.import_ssh import parse_ssh_config
from app.devices.models import Device
from app.devices.ssh import ConnectError, ShellRequest, open_shell
from app.extensions import db
from tests.support import logged_in_user

SECRET_PASSWORD = "device-secret-Pa55word!"

CONFIG = """\
# my hosts
User fallback

Host web1 web2
    HostName %h.example.org
    Port 2222
    IdentityFile ~/.ssh/id_web
    ForwardAgent yes

Host db
    HostName 10.0.0.7
    User postgres
    ProxyJump bastion

Host *.internal !secret.internal
    User inside

Host build.internal
    ForwardAgent no

Include ~/.ssh/config.d/*

Match host foo
    User matched

Host *
    User last
"""


def accept(values):
    """A check that takes every value as it is (the form's own rules are tested over HTTP)."""
    return {"name": values["name"], "host": values["host"], "port": int(values.get("port", 22)),
            "username": values.get("username", ""), "folder": values.get("folder"),
            "tags": sorted(values.get("tags", "").split())}, None


def sort_out(text, kind=None, existing=(), defaults=None):
    kind = kind or importing.detect(text)
    candidates, ignored = importing.read(text, kind)
    return importing.preview(kind, candidates, ignored, set(existing), accept, defaults)


# ---- the OpenSSH client config ------------------------------------------------------------------------------------

def test_each_name_on_a_host_line_is_a_device_with_the_first_values_that_match_it():
    result = sort_out(CONFIG)
    assert result.format == "ssh"
    made = {row.name: (row.line, row.host, row.port, row.username, row.note) for row in result.create}
    assert made == {
        "web1": (4, "web1.example.org", 2222, "fallback", "key file ~/.ssh/id_web: set the key afterwards"),
        "web2": (4, "web2.example.org", 2222, "fallback", "key file ~/.ssh/id_web: set the key afterwards"),
        "db": (10, "10.0.0.7", 22, "fallback", ""),  # the lines before the first Host come first, as in ssh
        "build.internal": (18, "build.internal", 22, "fallback", ""),
    }


def test_patterns_give_values_in_order_and_match_is_no_default():
    result = sort_out(CONFIG.replace("User fallback\n", ""))
    users = {row.name: row.username for row in result.create}
    assert users == {"web1": "last", "web2": "last", "db": "postgres", "build.internal": "inside"}


def test_include_and_match_are_refused_with_their_lines_and_other_keywords_listed():
    result = sort_out(CONFIG)
    refused = {(outcome.line, outcome.name.split()[0]): outcome.reason for outcome in result.refuse}
    assert set(refused) == {(21, "Include"), (23, "Match")}
    assert "reads no file from its own disk" in refused[(21, "Include")]
    assert result.ignored[:2] == ["ForwardAgent (lines 8, 19)", "ProxyJump (line 13)"]
    assert "*.internal (line 15), !secret.internal (line 15), * (line 26)" in result.ignored[2]


def test_a_host_token_only_ssh_expands_is_refused():
    result = sort_out("Host a\n  HostName %r.example.org\n  User ops\n")
    assert [(o.line, o.name) for o in result.refuse] == [(1, "a")] and "%r" in result.refuse[0].reason


def test_a_config_without_a_host_is_not_imported():
    with pytest.raises(importing.ImportProblem, match="No Host line"):
        importing.read("User ops\nHost *\n  Port 22\n", "ssh")


def test_keyword_equals_value_and_quotes():
    result = sort_out('Host="quoted name" plain\n  HostName = "10.0.0.9"\n  User=ops\n')
    assert [(r.name, r.host, r.username) for r in result.create] == [
        ("quoted name", "10.0.0.9", "ops"), ("plain", "10.0.0.9", "ops")]


# ---- CSV ----------------------------------------------------------------------------------------------------------

def test_csv_with_header_tags_folder_and_a_cell_over_two_lines():
    text = ('Name,Host,Port,User,Folder,Tags,Comment\n'
            'web1,10.0.0.1,22,ops,Core routers,prod;dc1,first\n'
            '\n'
            'web2,10.0.0.2,,ops,,"prod dc2",\n'
            'db2,10.0.0.3,22,ops,,"dc3\nprod",\n'
            'db3,10.0.0.4,22,ops,,,,extra\n')
    result = sort_out(text)
    assert result.format == "csv"
    assert [(r.line, r.name, r.port, r.folder, r.tags) for r in result.create] == [
        (2, "web1", 22, "Core routers", ["dc1", "prod"]), (4, "web2", 22, None, ["dc2", "prod"]),
        (5, "db2", 22, None, ["dc3", "prod"])]
    assert [(o.line, o.name) for o in result.refuse] == [(7, "db3")]
    assert result.refuse[0].reason == "8 cells, but the header names 7 columns."
    assert result.ignored == ["column 'Comment'"]


def test_csv_separated_by_semicolons():
    result = sort_out("name;host;user;tags\nweb1;10.0.0.1;ops;a b\n")
    assert [(r.name, r.tags) for r in result.create] == [("web1", ["a", "b"])]


@pytest.mark.parametrize("text, message", [
    ("name,port\nweb1,22\n", "should be a header naming at least the columns name and host"),
    ("name,host,host\nweb1,a,b\n", "names a column twice"),
    ('name,host\n"web1,10.0.0.1\n', "cannot be read at line"),
])
def test_a_csv_that_cannot_be_read_is_refused_whole(text, message):
    with pytest.raises(importing.ImportProblem, match=message):
        importing.read(text, "csv")


# ---- duplicates and hostile input ---------------------------------------------------------------------------------

def test_duplicates_in_the_list_and_in_the_file_are_skipped():
    result = sort_out("name,host,user\nweb1,a,ops\nWeb2,b,ops\nweb2,c,ops\n", existing={"web1"})
    assert [(o.line, o.name, o.reason) for o in result.skip] == [
        (2, "web1", "A device of this name is already in your list."), (4, "web2", "Also on line 3: that one is kept.")]
    assert [r.name for r in result.create] == ["Web2"] and result.counts == {"created": 1, "skipped": 2, "refused": 0}


def test_defaults_fill_only_what_is_missing():
    result = sort_out("name,host,user,folder\na,h1,,\nb,h2,root,lab\n", defaults={"username": "ops", "folder": "New"})
    assert [(r.username, r.folder) for r in result.create] == [("ops", "New"), ("root", "lab")]


@pytest.mark.parametrize("row, reason", [
    ("=HYPERLINK(1),10.0.0.1,ops", "The name starts with '='"),
    ("+cmd,10.0.0.1,ops", "The name starts with '+'"),
    ("@SUM(1),10.0.0.1,ops", "The name starts with '@'"),
    ("web,-oProxyCommand=x,ops", "The host starts with '-'"),
    ("web,10.0.0.1,=cmd", "The user starts with '='"),
    ("web,10.0.0.1;reboot,ops", "The host holds shell characters (;)"),
    ("web,`id`.example.org,ops", "The host holds shell characters (`)"),
    ("web,a|b&c,ops", "The host holds shell characters (& |)"),
    ('web,"a b",ops', "The host holds a space"),
    ("web,p\u0430ypal.com,ops", "The host holds letters outside ASCII"),
    ("<script>alert(1)</script>,10.0.0.1,ops", "Not a valid device name"),
])
def test_hostile_values_are_refused_per_line(row, reason):
    result = sort_out(f"name,host,user\nfine,10.0.0.9,ops\n{row}\n")
    assert [r.name for r in result.create] == ["fine"]
    assert [o.line for o in result.refuse] == [3] and result.refuse[0].reason.startswith(reason)


def test_shell_characters_on_a_host_line_make_names_that_are_refused():
    result = sort_out("Host web;reboot -rf\n  User ops\n")
    assert result.create == [] and [o.name for o in result.refuse] == ["web;reboot", "-rf"]


@pytest.mark.parametrize("data, message", [
    (b"x" * (importing.MAX_BYTES + 1), "at most 400 KiB"),
    (b"Host a\n\x00\x01binary", "binary file"),
    ("Host caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 9"),
    (b"Host a\n" * (importing.MAX_LINES + 1), f"more than {importing.MAX_LINES} lines"),
])
def test_a_hostile_file_is_refused_whole(data, message):
    with pytest.raises(importing.ImportProblem, match=re.escape(message)):
        importing.decode(data)


def test_the_line_limit_is_inclusive():
    assert importing.decode(b"#\n" * importing.MAX_LINES).count("\n") == importing.MAX_LINES


def test_a_byte_order_mark_is_dropped():
    assert importing.decode("\ufeffname,host\n".encode("utf-8")) == "name,host\n"


def test_too_many_devices_in_one_file():
    text = "".join(f"Host h{i}\n" for i in range(importing.MAX_DEVICES + 1))
    with pytest.raises(importing.ImportProblem, match="at most 1000 are imported at once"):
        importing.read(text, "ssh")


def test_parse_keeps_the_line_where_a_value_was_set():
    candidates, _ = parse_ssh_config("Host a\n  User ops\n\n  Port 99999\n")
    assert candidates[0].lines == {"username": 2, "port": 4}


# ---- over HTTP: preview, confirm, cancel --------------------------------------------------------------------------

def post(client, path, data, **kwargs):
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)


def preview(client, text=None, upload=None, **fields):
    data = {"text": text or "", "format": "auto", "user": "", "folder": "", **fields}
    if upload is not None:
        data["file"] = (io.BytesIO(upload), "hosts.conf")
    return post(client, "/devices/import", data, content_type="multipart/form-data")


def token_of(response):
    return re.search(r'name="preview" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def confirm(client, response, credentials="none"):
    return post(client, "/devices/import/confirm", {"preview": token_of(response), "credentials": credentials})


def events(app, action):
    with app.app_context():
        found = db.session.scalars(select(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return found


def devices(app):
    with app.app_context():
        found = db.session.scalars(select(Device).order_by(Device.name)).all()
        db.session.expunge_all()
        return found


SMALL = "Host web1 web2\n  HostName 10.0.0.5\n  User ops\n  Port 2201\nHost web1\n  User other\nHost bad;host\n"


def test_the_import_page_offers_file_paste_and_format(admin):
    page = admin.get("/devices/import")
    assert page.status_code == 200
    for needle in (b'type="file"', b'name="text"', b'<option value="csv"', b"/devices/export.csv"):
        assert needle in page.data


def test_preview_then_confirm_creates_the_devices_and_their_events(app, admin):
    shown = preview(admin, SMALL)
    assert shown.status_code == 200
    counts = re.findall(r"<strong>(\d+)</strong> (to create|skipped|refused)", shown.get_data(as_text=True))
    assert counts == [("2", "to create"), ("1", "skipped"), ("1", "refused")]
    assert devices(app) == [] and events(app, "device.imported") == []  # a preview creates nothing
    done = confirm(admin, shown)
    assert done.status_code == 200 and b"2 devices\n    created, 1 skipped, 1 refused." in done.data
    made = devices(app)
    assert [(d.name, d.host, d.port, d.username, d.password_enc, d.private_key_enc) for d in made] == [
        ("web1", "10.0.0.5", 2201, "ops", None, None), ("web2", "10.0.0.5", 2201, "ops", None, None)]
    created = events(app, "device.created")
    assert [e.target for e in created] == ["web1 (10.0.0.5:2201)", "web2 (10.0.0.5:2201)"]
    assert set(created[0].details) == {"auth_type", "fields"} and created[0].details["auth_type"] == "password"
    imported = events(app, "device.imported")
    assert len(imported) == 1
    assert imported[0].details == {"format": "ssh", "created": 2, "skipped": 1, "refused": 1, "shared_key": None}


def test_created_events_have_the_form_shape(app, admin):
    post(admin, "/devices/", {"name": "by-form", "host": "10.0.0.1", "port": "22", "username": "ops",
                              "folder": "lab", "tags": "a b", "auth_type": "password", "password": SECRET_PASSWORD})
    confirm(admin, preview(admin, "name,host,user,folder,tags\nby-csv,10.0.0.2,ops,lab,a;b\n"))
    form_event, import_event = events(app, "device.created")
    assert set(form_event.details) == set(import_event.details) == {"auth_type", "fields", "folder", "tags"}
    assert import_event.details["tags"] == form_event.details["tags"] == ["a", "b"]
    assert set(import_event.details["fields"]) == set(form_event.details["fields"]) - {"credential"}


def test_cancel_creates_nothing_and_records_nothing(app, admin):
    shown = preview(admin, SMALL)
    assert b'id="import-cancel"' in shown.data
    assert admin.get("/devices/import").status_code == 200  # Cancel is a link back to the form
    assert devices(app) == [] and events(app, "device.imported") == [] and events(app, "device.created") == []


def test_a_second_import_of_the_same_file_skips_all(app, admin):
    confirm(admin, preview(admin, upload=SMALL.encode()))
    again = preview(admin, upload=SMALL.encode())
    assert b"<strong>0</strong> to create" in again.data and b"There is nothing to create." in again.data
    assert again.data.count(b"A device of this name is already in your list.") == 3  # web1 twice, web2
    assert len(devices(app)) == 2


def test_confirming_twice_creates_once(app, admin):
    shown = preview(admin, SMALL)
    confirm(admin, shown)
    second = confirm(admin, shown)
    assert b"0 devices\n    created, 3 skipped, 1 refused." in second.data
    assert len(devices(app)) == 2 and len(events(app, "device.created")) == 2


@pytest.mark.parametrize("change", ["altered", "other user"])
def test_a_preview_is_signed_for_its_user(app, admin, change):
    shown = preview(admin, SMALL)
    token = token_of(shown)
    if change == "altered":
        client, token = admin, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    else:
        client = logged_in_user(app, "mallory")
    refused = post(client, "/devices/import/confirm", {"preview": token, "credentials": "none"})
    assert refused.status_code == 400 and b"too old or was changed" in refused.data
    assert devices(app) == [] and events(app, "device.imported") == []


def test_one_new_key_pair_for_all_of_them(app, admin):
    done = confirm(admin, preview(admin, SMALL), credentials="ed25519")
    made = devices(app)
    public = re.search(rb'<textarea readonly rows="3"[^>]*>([^<]+)</textarea>', done.data).group(1).decode()
    assert public.startswith("ssh-ed25519 ") and {d.public_key for d in made} == {public}
    assert all(d.auth_type == "key" for d in made) and made[0].private_key_enc != made[1].private_key_enc
    with app.app_context():
        private = keys.load_private_key(crypto.decrypt(made[0].private_key_enc, "private_key"))
    assert private.get_base64() == public.split()[1] and b"PRIVATE KEY" not in done.data
    assert events(app, "device.imported")[0].details["shared_key"] == "ssh-ed25519"
    assert [e.details["key"] for e in events(app, "device.created")] == ["ssh-ed25519"] * 2


def test_the_form_rules_apply_and_hostile_names_are_shown_as_text(app, admin):
    text = ("name,host,port,user,tags\n<script>alert(1)</script>,10.0.0.1,22,ops,\nok,10.0.0.2,70000,ops,\n"
            "ok2,10.0.0.3,22,ops,BAD!tag\nok3,10.0.0.4,22,,\n")
    shown = preview(admin, text)
    body = shown.get_data(as_text=True)
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert re.findall(r'<td class="line" data-label="Line">(\d+)</td>', body) == ["2", "3", "4", "5"]
    for reason in ("Not a valid device name", "Port must be between 1 and 65535.", "Each tag is 1 to 32",
                   "No SSH user: add a User line"):
        assert reason in body
    assert b"There is nothing to create." in shown.data


@pytest.mark.parametrize("data, message", [
    (b"Host a\n\x00binary", b"This is a binary file"),
    (b"x" * (importing.MAX_BYTES + 1), b"at most 400 KiB"),
    (b"\xff\xfeH\x00o\x00s\x00t\x00", b"binary file"),
    (b"", b"Choose a file or paste the list first."),
])
def test_a_hostile_upload_gives_a_clear_error_and_creates_nothing(app, admin, data, message):
    refused = preview(admin, "kept text", upload=data, user="ops") if data else preview(admin, "", user="ops")
    assert refused.status_code == 422 and message in refused.data
    assert b'value="ops"' in refused.data  # what was typed stays
    assert devices(app) == [] and events(app, "device.imported") == []


def test_the_format_can_be_chosen(admin):
    shown = preview(admin, "Host a\n  User ops\n", format="csv")
    assert shown.status_code == 422 and b"should be a header naming at least" in shown.data


def test_anyone_logged_in_imports_into_their_own_list(app):
    user = logged_in_user(app, "ulla")
    confirm(user, preview(user, "Host mine\n  User ops\n"))
    with app.app_context():
        owner = db.session.scalar(select(Device.owner_id).filter_by(name="mine"))
        from app.auth.models import User
        assert db.session.get(User, owner).username == "ulla"


def test_the_import_needs_a_log_in(client):
    assert client.get("/devices/import").status_code in (302, 401)


# ---- the export ---------------------------------------------------------------------------------------------------

def test_export_has_no_secret_and_neutralises_formulas(app, admin):
    post(admin, "/devices/", {"name": "=HYPERLINK(\"http://x\")", "host": "10.0.0.1", "port": "22",
                              "username": "ops", "folder": "+folder", "tags": "prod", "auth_type": "password",
                              "password": SECRET_PASSWORD})
    confirm(admin, preview(admin, "name,host,user\nplain,10.0.0.2,ops\n"))
    exported = admin.get("/devices/export.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="gatehouse-devices-\d{4}-\d{2}-\d{2}\.csv"',
                        exported.headers["Content-Disposition"])
    assert exported.get_data(as_text=True).splitlines() == [
        "name,host,port,user,folder,tags,auth,owner",
        '"\'=HYPERLINK(""http://x"")",10.0.0.1,22,ops,\'+folder,prod,password,admin',
        "plain,10.0.0.2,22,ops,,,none,admin"]
    assert SECRET_PASSWORD.encode() not in exported.data and b"PRIVATE" not in exported.data
    assert [e.details for e in events(app, "device.exported")] == [{"count": 2}]


def test_an_exported_list_imports_back_as_duplicates(app, admin):
    confirm(admin, preview(admin, "name,host,port,user,folder,tags\na,10.0.0.1,2200,ops,lab,x;y\n"))
    again = preview(admin, admin.get("/devices/export.csv").get_data(as_text=True))
    assert b"<strong>1</strong> skipped" in again.data and b"column &#39;auth&#39;" in again.data


# ---- a device without credentials ----------------------------------------------------------------------------------

def test_a_device_without_credentials_is_never_dialled():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(ConnectError) as raised:
            open_shell(ShellRequest("127.0.0.1", port, "ops", timeout=2))
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody knocked
    finally:
        listener.close()
    assert raised.value.reason == "no_credentials"
    assert raised.value.message == f"No credentials stored for ops@127.0.0.1:{port}: set them in Edit."


def test_the_connection_test_of_an_imported_device_says_none_are_stored(app, admin):
    confirm(admin, preview(admin, "Host bare\n  HostName 127.0.0.1\n  User ops\n"))
    device_id = devices(app)[0].id
    tested = post(admin, f"/devices/{device_id}/test", {"name": "bare", "host": "127.0.0.1", "port": "22",
                                                         "username": "ops", "auth_type": "password"})
    assert tested.status_code == 422 and b"No credentials stored for bare yet." in tested.data
