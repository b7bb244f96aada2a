"""Forms of the auth blueprint."""
import unicodedata

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from .accounts import password_problem, username_problem


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])

    def validate_username(self, field):
        # No username holds one, and PostgreSQL refuses a NUL in a query: refuse before looking.
        if any(unicodedata.category(char) == "Cc" for char in field.data):
            raise ValidationError("A username has no control characters.")


class PasswordForm(FlaskForm):
    """Current password and the new one, twice."""

    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField("Repeat new password",
                            validators=[DataRequired(), EqualTo("new", "The new passwords differ.")])


class NewUserForm(FlaskForm):
    """A new account: name, first password, role."""

    username = StringField("Username", validators=[DataRequired("Enter a username."), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired("Enter a password."), Length(max=1024)])
    is_admin = BooleanField("Administrator")

    def validate_username(self, field):
        problem = username_problem(field.data)
        if problem:
            raise ValidationError(problem)

    def validate_password(self, field):
        problem = password_problem(field.data)
        if problem:
            raise ValidationError(problem)
