"""POST /keys/report-leak: revoke leaked keys. Anyone, with no credential; limited per client address."""

from shared import http, leaks


@http.endpoint("keys/report-leak")
def keys_report_leak(call: http.Call) -> http.Reply:
    body = call.body(leaks.ReportLeak)
    leaks.limit_caller(call.client_address)  # no credential to resolve: the rate limit stands in for one
    return http.reply(200, leaks.report(body, call.request_id))
