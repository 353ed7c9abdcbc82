"""Who may call what: every route of the app against every role, and no key, unknown and revoked keys."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.auth import rule_of
from api.main import ROUTERS, create_app
from api.routes.dashboard import router as PUBLIC_ROUTER
from journeys.storage.api_keys import Role
from projections.system import System
from tests.factories import payload
from tests.waiting import wait_until

P, M, A, O, ADM = Role.publisher, Role.marketer, Role.auditor, Role.operator, Role.admin
# The access matrix. A route missing here fails the build: every new route needs a rule.
MATRIX: dict[tuple[str, str], set[Role]] = {
    ("POST", "/touchpoints"): {P, ADM},
    ("POST", "/touchpoints/batch"): {P, ADM},
    ("POST", "/cloudevents"): {P, ADM},
    **{("POST", f"/v1/{call}"): {P, ADM} for call in ("batch", "track", "page", "screen", "identify", "alias", "group")},
    **{("POST", f"/v1/{short}"): {P, ADM} for short in ("b", "t", "p", "s", "i", "a", "g")},  # analytics.js's paths
    ("GET", "/customers/{customer_id}/stages"): {M, A, ADM},
    ("GET", "/customers/{customer_id}/history"): {A, ADM},
    ("DELETE", "/customers/{customer_id}"): {ADM},
    ("GET", "/records/{record_id}/history"): {A, ADM},
    ("GET", "/audit/verify"): {A, ADM},
    ("GET", "/audit/checkpoints"): {A, ADM},
    ("GET", "/deals/{deal_id}/export"): {A, ADM},
    ("GET", "/deals/{deal_id}/history"): {A, ADM},
    ("GET", "/accounts/{account_id}"): {M, A, ADM},
    ("GET", "/deals/{deal_id}"): {M, A, ADM},
    ("GET", "/cases/{case_id}"): {M, A, ADM},
    ("GET", "/segments"): {M, A, ADM},
    ("GET", "/segments/summary"): {M, A, ADM},
    ("GET", "/playbook"): {M, A, ADM},
    ("GET", "/health"): {P, M, A, O, ADM},
    ("GET", "/metrics"): {O, ADM},
    ("GET", "/segments/export"): {M, A, ADM},
    ("GET", "/customers/{customer_id}/timeline"): {M, A, ADM},
    ("GET", "/accounts/{account_id}/timeline"): {M, A, ADM},
    ("GET", "/deals/{deal_id}/timeline"): {M, A, ADM},
    ("GET", "/cases/{case_id}/timeline"): {M, A, ADM},
    ("GET", "/analytics/funnel"): {M, ADM},
    ("GET", "/analytics/time-in-stage"): {M, ADM},
    ("GET", "/analytics/alignment"): {M, ADM},
    ("GET", "/analytics/attribution"): {M, ADM},
    ("GET", "/analytics/cost"): {M, ADM},
    ("POST", "/campaigns/{campaign}/spend"): {M, ADM},
    ("GET", "/campaigns/{campaign}/spend"): {M, ADM},
    ("POST", "/keys"): {ADM},
    ("GET", "/keys"): {ADM},
    ("DELETE", "/keys/{name}"): {ADM},
}

ASSETS_DIR = Path(__file__).resolve().parents[2] / "api" / "static"
BODIES = {
    "/touchpoints": payload("t1", "email_opened", 0, "acme"),
    "/touchpoints/batch": [payload("t2", "email_opened", 0, "acme")],
    "/keys": {"name": "made-in-test", "role": "marketer"},
    "/campaigns/{campaign}/spend": {"period": "2026-03", "amount": "10.00", "currency": "EUR"},
}


def routes() -> list[tuple[str, str, APIRoute]]:
    return [(m, r.path, r) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) for m in r.methods]


def rules_of(route: APIRoute) -> list[frozenset[Role]]:
    found, stack = [], [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is not None and rule_of(dependant.call) is not None:
            found.append(rule_of(dependant.call))
        stack.extend(dependant.dependencies)
    return found


@pytest.fixture
def api(system: System, keys):
    system.runner.start()
    secrets = {role: keys.create(f"{role.value}-key", role) for role in Role}
    with TestClient(create_app(system=system)) as c:
        yield c, secrets


def call(client: TestClient, method: str, path: str, key: str | None, **headers: str):
    values = {"customer_id": "acme", "account_id": "A1", "deal_id": "D1", "case_id": "C1", "name": "nobody",
              "campaign": "spring", "record_id": str(uuid4())}
    url = path
    for name, value in values.items():
        url = url.replace("{" + name + "}", value)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.request(method, url, json=BODIES.get(path) if method == "POST" else None, headers=headers)


def test_every_route_has_exactly_one_rule_and_is_in_the_matrix(api):
    client, _ = api
    found = {(m, p): rules_of(r) for m, p, r in routes()}
    assert set(found) == set(MATRIX), "a route without an entry in the access matrix (or a stale entry)"
    for route, rules in found.items():
        assert len(rules) == 1, f"{route} must declare exactly one access rule, has {len(rules)}"
        assert rules[0] == frozenset(MATRIX[route]), route
    # Nothing reaches the app but through ROUTERS: the served document lists exactly these.
    document = client.get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert served == set(MATRIX)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_gets_exactly_its_routes(api, role: Role):
    client, secrets = api
    for (method, path), allowed in MATRIX.items():
        answer = call(client, method, path, secrets[role])
        if role in allowed:
            assert answer.status_code not in (401, 403), (role, method, path, answer.text)
        else:
            assert answer.status_code == 403, (role, method, path, answer.text)
            assert role.value in answer.json()["detail"]


def test_no_key_unknown_key_and_malformed_credentials_get_401(api):
    client, _ = api
    for method, path in MATRIX:
        for key in (None, "jrn_" + "x" * 43, "not-even-our-prefix"):
            answer = call(client, method, path, key)
            assert answer.status_code == 401, (method, path, key)
            assert "Bearer" in answer.headers["www-authenticate"]
            assert answer.json()["detail"]
    garbled = client.get("/health", headers={"Authorization": "Basic !!!not-base64"})
    assert garbled.status_code == 401 and garbled.json()["detail"]


def test_the_dashboard_page_and_assets_are_public_and_hold_no_data(api):
    """The page and its scripts need no key (a browser cannot send one when it opens a page);
    they are files of the package, and every figure the page shows needs a marketer's key."""
    client, _ = api
    assert {r.path for r in PUBLIC_ROUTER.routes} == {"/dashboard", "/dashboard/assets/{name:path}"}
    page = client.get("/dashboard")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("dashboard.js", "dashboard.css", "vendor/chart.umd.min.js"):
        answer = client.get(f"/dashboard/assets/{asset}")
        assert answer.status_code == 200 and answer.content == (ASSETS_DIR / asset).read_bytes()
    for probe in ("../main.py", "..%2Fmain.py", "dashboard.html/../../keys.py", "vendor/../../cli.py"):
        assert client.get(f"/dashboard/assets/{probe}").status_code == 404


def test_basic_auth_with_the_key_as_user_name_works_as_segment_sends_it(api):
    client, secrets = api
    answer = client.post("/touchpoints", json=BODIES["/touchpoints"], auth=(secrets[P], ""))
    assert answer.status_code == 201, answer.text


def test_a_revoked_key_stops_working_within_a_second_in_every_process(system: System, keys):
    key = keys.create("short-lived", Role.marketer)
    with TestClient(create_app(system=system)) as first, TestClient(create_app(system=system)) as second:
        for client in (first, second):  # both processes have verified (and cached) the key
            assert client.get("/segments/summary", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        keys.revoke("short-lived")  # as `journeys keys revoke` would, from elsewhere
        for client in (first, second):  # the verification cache holds a key for 1 s
            wait_until(lambda c=client: c.get("/segments/summary", headers={"Authorization": f"Bearer {key}"}).status_code
                       == 401, 1.5, "the revoked key refused", every=0.05)


def test_admins_manage_keys_over_http_and_the_secret_is_shown_once(api):
    client, secrets = api
    admin = {"Authorization": f"Bearer {secrets[ADM]}"}
    created = client.post("/keys", json={"name": "crm-publisher", "role": "publisher"}, headers=admin)
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("jrn_") and len(secret) > 40
    listed = client.get("/keys", headers=admin).json()
    assert {"crm-publisher", "admin-key"} <= {k["name"] for k in listed}
    assert secret not in str(listed) and all("key" not in k for k in listed)
    assert client.post("/keys", json={"name": "crm-publisher", "role": "admin"}, headers=admin).status_code == 409
    published = client.post("/touchpoints", json=BODIES["/touchpoints"], headers={"Authorization": f"Bearer {secret}"})
    assert published.status_code == 201
    assert client.delete("/keys/crm-publisher", headers=admin).json()["revoked_at"]
    assert client.delete("/keys/nobody", headers=admin).status_code == 404


def test_the_rate_limit_answers_429_with_retry_after(system: System, keys):
    key = keys.create("busy", Role.marketer)
    limited = system.settings.model_copy(update={"rate_limit_per_minute": 3})
    with TestClient(create_app(limited, system=system), headers={"Authorization": f"Bearer {key}"}) as client:
        codes = [client.get("/segments/summary").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = client.get("/segments/summary")
        assert int(refused.headers["retry-after"]) > 0 and "rate limit" in refused.json()["detail"]


def test_the_openapi_document_shows_the_security_schemes(api):
    client, _ = api
    document = client.get("/openapi.json").json()
    assert {"HTTPBearer", "HTTPBasic"} <= set(document["components"]["securitySchemes"])
    stages = document["paths"]["/customers/{customer_id}/stages"]["get"]
    assert {"401", "403", "404", "503"} <= set(stages["responses"])


def test_the_last_active_admin_key_cannot_be_revoked_over_the_api(system: System, keys):
    from fastapi.testclient import TestClient

    from api.main import create_app

    first = keys.create("first-admin", Role.admin)
    with TestClient(create_app(system=system)) as client:
        own = {"Authorization": f"Bearer {first}"}
        refused = client.delete("/keys/first-admin", headers=own)
        assert refused.status_code == 409 and "last active admin key" in refused.json()["detail"]
        assert client.get("/keys", headers=own).status_code == 200  # still works
        second = keys.create("second-admin", Role.admin)
        assert client.delete("/keys/first-admin", headers={"Authorization": f"Bearer {second}"}).status_code == 200
        again = client.delete("/keys/second-admin", headers={"Authorization": f"Bearer {second}"})
        assert again.status_code == 409
    keys.revoke("second-admin")  # the command line may: it needs no key to recover
    assert not keys.any_active()
