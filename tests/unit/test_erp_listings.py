"""The Acme ERP's list endpoints, routed from the table in examples/acme/erp/listings.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examples.acme.erp.app import create_app
from examples.acme.erp.listings import (
    CREDIT_NOTES,
    GOODS_RECEIPTS,
    INVOICES,
    PAYMENTS,
    PURCHASE_ORDERS,
    VENDORS,
    Listing,
)

LISTINGS = (VENDORS, PURCHASE_ORDERS, INVOICES, PAYMENTS, GOODS_RECEIPTS, CREDIT_NOTES)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path: Path = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with TestClient(create_app(path)) as client:
        yield client


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda item: item.operation_id)
def test_each_filter_is_an_optional_query_parameter_in_order(
    client: TestClient, listing: Listing
) -> None:
    """A listing's OpenAPI operation takes its filters, in order, optional, described."""
    operation = client.get("/openapi.json").json()["paths"][listing.path]["get"]
    assert operation["operationId"] == listing.operation_id
    assert operation["description"] == listing.description
    params = operation["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in params] == [
        (f.name, "query", False) for f in listing.filters
    ]
    assert [p["description"] for p in params] == [f.description for f in listing.filters]


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda item: item.operation_id)
def test_without_filters_every_row_comes_in_id_order(client: TestClient, listing: Listing) -> None:
    """No filter (or an empty one) lists every row, ordered by id."""
    rows = client.get(listing.path).json()
    first = listing.filters[0].name
    assert client.get(listing.path, params={first: ""}).json() == rows
    ids = [next(iter(row.values())) for row in rows]
    assert ids == sorted(ids)


def test_filters_narrow_and_combine(client: TestClient) -> None:
    """Each filter keeps the matching rows; given together, rows matching all of them."""
    invoices = client.get("/invoices").json()
    open_ = client.get("/invoices", params={"status": "open"}).json()
    assert open_ and len(open_) < len(invoices)
    assert {row["status"] for row in open_} == {"open"}
    vendor = open_[0]["vendor_id"]
    both = client.get("/invoices", params={"status": "open", "vendor_id": vendor}).json()
    assert both == [row for row in open_ if row["vendor_id"] == vendor]


def test_vendor_country_is_upper_cased_and_name_matches_a_part(client: TestClient) -> None:
    """country=de finds the DE vendors; name matches a part of it, in any case."""
    vendors = client.get("/vendors").json()
    german = [v for v in vendors if v["country"] == "DE"]
    assert german and client.get("/vendors", params={"country": "de"}).json() == german
    part = vendors[0]["name"][1:4].swapcase()
    named = client.get("/vendors", params={"name": part}).json()
    assert named == [v for v in vendors if part.lower() in v["name"].lower()]


def test_a_status_outside_its_values_is_refused(client: TestClient) -> None:
    """A status filter takes only its listed values; another is a 422 naming them."""
    response = client.get("/purchase-orders", params={"status": "bogus"})
    assert response.status_code == 422
    assert "'open', 'received' or 'closed'" in response.json()["detail"]
