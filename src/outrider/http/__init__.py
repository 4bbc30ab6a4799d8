"""The HTTP management API, ``/metrics`` and the web monitor's files (``[http]``).

A thin adapter over the control socket's calls (:mod:`outrider.queue.control`): one
table of operations (:mod:`outrider.http.api`) drives request parsing, dispatch and the
OpenAPI document.
"""
