"""Log in, log out, change password, users."""
