"""The gateway's web dashboard, served at ``/`` of its HTTP app: the page and its login
(:mod:`.page`), the session cookie the browser proves itself with (:mod:`.session`), and the
vendored JavaScript and CSS it draws the cluster with (``static/``)."""

from __future__ import annotations

from macp.gateway.dashboard.page import dashboard_routes

__all__ = ["dashboard_routes"]
