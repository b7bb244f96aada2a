"""Error answers: the app's own page with a sentence and a way back for people, a short body for scripts and htmx."""
from flask import jsonify, render_template, request

from app.extensions import db

# What a person is told, in the app's words; a view that aborts with its own description says that instead.
TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here", 413: "Too large",
          422: "Not accepted", 429: "Too many attempts", 500: "Something went wrong", 503: "Not available now"}
SENTENCES = {
    400: "Gatehouse could not understand that request. Go back, reload the page and try again.",
    403: "You may not open this: it is for administrators, or it belongs to someone else.",
    404: "There is nothing here: the address is mistyped, or what it showed was deleted or is not yours to see.",
    405: "This address does not take that kind of request.",
    413: "That was too large for Gatehouse to accept.",
    422: "Gatehouse could not accept what was sent. Go back and check it.",
    429: "Too many attempts in a short time: wait a moment and try again.",
    500: "Something went wrong on the server; it is in the server's log. Try again in a moment.",
    503: "Gatehouse cannot do this right now; try again in a moment.",
}


def sentence(error, code):
    """Return what to tell the person: the view's own description, else the app's sentence for the code."""
    description = getattr(error, "description", None)
    if description and description != getattr(type(error), "description", None):
        return description  # the framework's stock text is the class's; a view's own differs
    return SENTENCES.get(code, SENTENCES[500])


def _wants_short():
    """Say whether the caller is htmx or a script asking for JSON rather than a page."""
    if request.headers.get("HX-Request") == "true":
        return True
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == "application/json"


def render_error(error):
    """Answer an error: a page for people, JSON for scripts, one line of text for htmx."""
    code = getattr(error, "code", 500) or 500
    if code >= 500:
        db.session.rollback()  # a failed transaction would make the page's own queries fail too
    title, text = TITLES.get(code, TITLES[500]), sentence(error, code)
    if _wants_short():
        if request.headers.get("HX-Request") == "true":
            return text, code, {"Content-Type": "text/plain; charset=utf-8"}
        return jsonify(error=title, message=text), code
    return render_template("error.html", code=code, title=title, message=text), code
