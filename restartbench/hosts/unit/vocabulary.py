"""What Unit's control API can be told under load, for explore: named changes (the shape of a scenario's
``[changes.NAME]`` table), each with the first version whose configuration accepts it.

Every change is a step and its undo, so a plan that repeats it returns the configuration to where it began.
The placeholders are the target's (``{app}``, ``{address}``, ``{port}``, ``{port2}``, ``{component}``,
``{dir}``, ``{port4}``; see ``target.UnitTarget.fill``). No change touches a listener
or an app it did not add itself but the app under test's own: a second app beside it must stay undisturbed
unless Unit disturbs it. The suite checks a plan against an idle instance of the build
before the load starts, so an entry valid only in some versions is skipped where it does not apply, never
run blind.
"""

from __future__ import annotations

from typing import Any

from ...versions import version_key

_APP = {"pass": "applications/{app}"}

#: name -> (first version it applies to, the change)
CHANGES: dict[str, tuple[str, dict[str, Any]]] = {
    "listener": ("1.0", {"description": "a second listener added, then removed", "steps": [
        {"method": "PUT", "path": "/config/listeners/{address}:{port2}", "body": _APP},
        {"method": "DELETE", "path": "/config/listeners/{address}:{port2}"}]}),
    "listener-move": ("1.0", {"description": "a second listener moved from one port to another and back "
                              "(the app's own listener, and a second app's, left alone)", "steps": [
        {"method": "PUT", "path": "/config/listeners/{address}:{port2}", "body": _APP},
        {"method": "PUT", "path": "/config/listeners/{address}:{port4}", "body": _APP},
        {"method": "DELETE", "path": "/config/listeners/{address}:{port2}"},
        {"method": "DELETE", "path": "/config/listeners/{address}:{port4}"}]}),
    "routes": ("1.8.0", {"description": "the listener moved onto a routes table that changes, and back", "steps": [
        {"method": "PUT", "path": "/config/routes", "body": [{"action": _APP}]},
        {"method": "PUT", "path": "/config/listeners/{address}:{port}/pass", "body": "routes"},
        {"method": "PUT", "path": "/config/routes",
         "body": [{"match": {"uri": "/nothing-here"}, "action": {"return": 404}}, {"action": _APP}]},
        {"method": "PUT", "path": "/config/listeners/{address}:{port}/pass", "body": "applications/{app}"}]}),
    "settings-timeouts": ("1.6", {"description": "http timeouts changed and changed back", "steps": [
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"idle_timeout": 30, "send_timeout": 10}}},
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"idle_timeout": 180, "send_timeout": 30}}}]}),
    "settings-body": ("1.6", {"description": "max_body_size changed and changed back", "steps": [
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"max_body_size": 1048576}}},
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"max_body_size": 8388608}}}]}),
    "settings-server-version": ("1.33.0", {"description": "the Server header switched off and on", "steps": [
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"server_version": False}}},
        {"method": "PUT", "path": "/config/settings", "body": {"http": {"server_version": True}}}]}),
    "extra-app": ("1.0", {"description": "a second app added, then removed", "steps": [
        {"method": "PUT", "path": "/config/applications/extra",
         "body": {"type": "wasm-wasi-component", "component": "{component}"}},
        {"method": "DELETE", "path": "/config/applications/extra"}]}),
    "extra-app-served": ("1.0", {"description": "a second app added behind its own listener, then both removed",
                                 "steps": [
        {"method": "PUT", "path": "/config/applications/extra",
         "body": {"type": "wasm-wasi-component", "component": "{component}"}},
        {"method": "PUT", "path": "/config/listeners/{address}:{port2}", "body": {"pass": "applications/extra"}},
        {"method": "DELETE", "path": "/config/listeners/{address}:{port2}"},
        {"method": "DELETE", "path": "/config/applications/extra"}]}),
    "limits": ("1.0", {"description": "the app's limits changed and changed back (its processes replaced)",
                       "steps": [
        {"method": "PUT", "path": "/config/applications/{app}/limits", "body": {"timeout": 10, "requests": 100000}},
        {"method": "PUT", "path": "/config/applications/{app}/limits", "body": {"timeout": 20, "requests": 200000}}]}),
    "access-log": ("1.6", {"description": "the access log set, then deleted", "steps": [
        {"method": "PUT", "path": "/config/access_log", "body": "{dir}/access.log"},
        {"method": "DELETE", "path": "/config/access_log"}]}),
}


def changes_for(version: str) -> dict[str, dict[str, Any]]:
    """The changes a build of ``version`` accepts (every one when the version is unknown)."""
    if not version:
        return {name: change for name, (_, change) in CHANGES.items()}
    return {name: change for name, (since, change) in CHANGES.items()
            if version_key(version) >= version_key(since)}
