"""GET /activate: the page where a signed-in person approves or denies a device's user code (RFC 8628)."""

from shared import activate_page, http


@http.endpoint("activate", method="GET")
def activate(call: http.Call) -> http.Reply:
    return activate_page.page()
