"""The device form and its validation."""
import ipaddress
import re

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms.fields.choices import SelectChoice
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
TAG_LENGTH = 32  # characters in one tag (the column's width)
TAG = re.compile(rf"^[a-z0-9][a-z0-9._:/-]{{0,{TAG_LENGTH - 1}}}$")  # tags are stored in lower case
MAX_TAGS = 16  # tags on one device

AUTH_CHOICES = [SelectChoice("password", "Password"), SelectChoice("key", "Private key (paste or upload)"),
                SelectChoice("generate", "Generate a new key pair")]
KEY_TYPE_CHOICES = [SelectChoice("ed25519", "Ed25519"), SelectChoice("rsa4096", "RSA 4096")]


def normalise_host(value):
    """Return the host without brackets or spaces, or raise ValueError."""
    host = (value or "").strip().strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
        raise ValueError("Enter a host name or an IPv4/IPv6 address.")
    return host.lower().rstrip(".")


class TagsField(StringField):
    """Tags typed on one line, split by commas or spaces; the data is a list once validated."""

    def _value(self):
        return ", ".join(self.data) if isinstance(self.data, list) else (self.data or "")


class DeviceForm(FlaskForm):
    """Name, address, SSH user and one kind of credential."""

    name = StringField("Name", validators=[DataRequired("Give the device a name."), Length(max=64)])
    host = StringField("Host", validators=[DataRequired("Enter a host name or address."), Length(max=255)])
    port = IntegerField("Port", default=22, validators=[NumberRange(1, 65535, "Port must be between 1 and 65535.")])
    username = StringField("SSH user", validators=[DataRequired("Enter the SSH user name."), Length(max=64)])
    folder = StringField("Folder", validators=[Optional(), Length(max=64)])
    tags = TagsField("Tags", validators=[Optional(), Length(max=600)])
    auth_type = SelectField("Authentication", choices=AUTH_CHOICES, default="password")
    password = PasswordField("Password", validators=[Optional(), Length(max=1024)])
    private_key = TextAreaField("Private key", validators=[Optional(), Length(max=32768)])
    key_file = FileField("or upload a key file")
    passphrase = PasswordField("Key passphrase", validators=[Optional(), Length(max=1024)])
    key_type = SelectField("Key type", choices=KEY_TYPE_CHOICES, default="ed25519")
    # The file manager (SFTP) beside its terminals; only an admin's form shows it, and only theirs may change it.
    allow_file_transfer = BooleanField("Allow file transfer (SFTP)", default=True)

    def validate_name(self, field):
        field.data = field.data.strip()
        if not _PRINTABLE.match(field.data):
            raise ValidationError("The name may not contain control characters.")

    def validate_folder(self, field):
        field.data = " ".join((field.data or "").split()) or None
        if field.data and not _PRINTABLE.match(field.data):
            raise ValidationError("The folder may not contain control characters.")

    def validate_tags(self, field):
        """Split on commas and spaces into a sorted, unique list of tags."""
        names = sorted({name.lower() for name in re.split(r"[,\s]+", field.data or "") if name})
        bad = [name for name in names if not TAG.match(name)]
        if bad:
            raise ValidationError(f"Each tag is 1 to {TAG_LENGTH} letters, digits and . _ : / - "
                                  f"(starting with a letter or digit): {bad[0][:40]!r} is not.")
        if len(names) > MAX_TAGS:
            raise ValidationError(f"At most {MAX_TAGS} tags per device ({len(names)} given).")
        field.data = names

    def validate_host(self, field):
        try:
            field.data = normalise_host(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def validate_username(self, field):
        field.data = field.data.strip()
        if not re.match(r"^[^\s\x00-\x1f\x7f:@]+$", field.data):
            raise ValidationError("The SSH user may not contain spaces, ':', '@' or control characters.")
