"""GET /activate/assets?file=: the activation page's script and style and the Firebase JS SDK it uses.

Only the allow-listed files of static/ are served (the SDK's two files there link to node_modules/firebase,
which scripts/setup installs; staging copies their contents), cacheable for five minutes.
"""

from shared import activate_page, http


@http.endpoint("activate/assets", method="GET")
def activate_assets(call: http.Call) -> http.Reply:
    return activate_page.asset(activate_page.static_beside(__file__), call.query)
