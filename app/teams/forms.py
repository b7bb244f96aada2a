"""Forms of the teams page: a new team, a new member, a new grant, a grant's owners."""
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from app.devices.forms import TAG  # a grant's tag follows the device form's rule, or it would match no device
from app.extensions import db

from .models import GRANT_FOLDER, GRANT_TAG, Team

KIND_CHOICES = [SelectChoice(GRANT_FOLDER, "Folder"), SelectChoice(GRANT_TAG, "Tag")]
VALUE_MAX = {GRANT_FOLDER: 64, GRANT_TAG: 32}  # the widths of Device.folder and DeviceTag.tag


def _printable(field, what):
    """Strip the field's text and refuse control and other unprintable characters."""
    field.data = (field.data or "").strip()
    if not field.data.isprintable():
        raise ValidationError(f"The {what} may contain only printable characters.")


class TeamForm(FlaskForm):
    """A new team: its name."""

    name = StringField("Team name", validators=[DataRequired("Give the team a name."),
                                                Length(max=64, message="A team name has at most 64 characters.")])

    def validate_name(self, field):
        _printable(field, "team name")
        taken = db.session.scalar(select(Team.name).where(func.lower(Team.name) == field.data.lower()))
        if taken:
            raise ValidationError(f"There is already a team named {taken}.")


class MemberForm(FlaskForm):
    """A user to add to a team (choices: the users not in it yet)."""

    user_id = SelectField("Add member", coerce=int, validate_choice=True,
                          invalid_value_message="Choose a user from the list.",
                          invalid_choice_message="Choose a user who is not in this team yet.")


class OwnersForm(FlaskForm):
    """The owners whose devices a grant covers (choices: every user)."""

    owners = SelectMultipleField("Owners whose devices it covers", coerce=int, validate_choice=True,
                                 invalid_value_message="Choose owners from the list.",
                                 invalid_choice_message="Choose owners from the list "
                                                        "(one of them is no longer a user).")


class GrantForm(OwnersForm):
    """A folder or tag whose devices the team may use, the owners whose devices count, and whether the trail of
    their sessions is shared."""

    kind = SelectField("Devices by", choices=KIND_CHOICES, default=GRANT_FOLDER,
                       invalid_choice_message="Choose a folder or a tag.")
    value = StringField("Folder or tag", validators=[DataRequired("Enter a folder or tag name.")])
    shares_trail = BooleanField("Members may also read the trail of sessions on these devices")

    def validate_value(self, field):
        _printable(field, "folder or tag name")
        limit = VALUE_MAX.get(self.kind.data, 64)
        if len(field.data) > limit:
            raise ValidationError(f"A {self.kind.data} name has at most {limit} characters.")
        if self.kind.data == GRANT_TAG:
            field.data = field.data.lower()
            if not TAG.match(field.data):
                raise ValidationError("A tag starts with a letter or digit, then letters, digits or . _ : / -")
