"""Untrusted text made safe to read: characters that hide, reorder or break what is shown become visible escapes.

A name typed at the log-in form (or sent by a single sign-on provider) is stored as typed, since the audit
trail keeps the raw value under its hash. Shown as typed, though, U+202E (right-to-left override) turns
"\\u202enimda" into "admin" on screen, a zero-width space makes two names look the same and U+2028 starts a new
line in a syslog file. Everything that shows or forwards such text goes through this module instead:
`reveal` for pages (each escape marked up, so it cannot be confused with the same letters typed), `reveal_text`
for plain text (the backslash doubled, so "\\u202e" typed is told apart from the character).
"""
import unicodedata

from markupsafe import Markup, escape

# Unicode's control (Cc), format (Cf: bidi controls, zero-width characters, BOM, tag characters) and
# line/paragraph separator (Zl, Zp) categories: none of them shows as itself; each can reorder, hide or split text.
# The ordinary tab is one of them too: a tab in a name lines it up with a different one.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def is_hidden(char):
    """Say whether a character does not show as itself (a control, format or separator character)."""
    return unicodedata.category(char) in HIDDEN_CATEGORIES


def escape_char(char):
    """Return the escape of one character: \\u202e, or \\U000e0041 beyond the first 65 536 code points."""
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def describe(char):
    """Return the code point and name of a character, e.g. 'U+202E RIGHT-TO-LEFT OVERRIDE'."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"


def has_hidden(text):
    """Say whether text holds any character that does not show as itself."""
    return text is not None and any(is_hidden(char) for char in str(text))


def reveal_text(text):
    """Return text with hidden characters as escapes and the backslash doubled (syslog, CSV, confirmation texts)."""
    if text is None:
        return ""
    text = str(text)
    if not has_hidden(text) and "\\" not in text:
        return text
    return "".join(escape_char(char) if is_hidden(char) else "\\\\" if char == "\\" else char for char in text)


def reveal(text):
    """Return HTML of text with each hidden character shown as a marked escape that names it (pages)."""
    if text is None:
        return Markup("")
    text = str(text)
    if not has_hidden(text):
        return escape(text)
    parts = []
    for char in text:
        if is_hidden(char):
            parts.append(Markup('<span class="hidden-char" title="{}">{}</span>').format(describe(char),
                                                                                        escape_char(char)))
        else:
            parts.append(escape(char))
    return Markup("").join(parts)


def json_reveal(encoded):
    """Write the hidden characters of JSON text as JSON escapes: the same values once parsed, visible when read."""
    if not has_hidden(encoded):
        return encoded
    out = []
    for char in encoded:
        if not is_hidden(char):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:  # JSON escapes beyond the first 65 536 code points as a UTF-16 surrogate pair
            high, low = divmod(ord(char) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
    return "".join(out)


def init_app(app):
    """Make reveal and reveal_text available to every template as filters."""
    app.add_template_filter(reveal, "reveal")
    app.add_template_filter(reveal_text, "reveal_text")
