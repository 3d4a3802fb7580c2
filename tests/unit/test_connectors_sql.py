"""The SQL connector over a temporary SQLite database."""

from __future__ import annotations

import sqlite3

import pytest

from connectors import (
    ConnectorError,
    ConnectorUnavailable,
    InvalidArguments,
    SqlConnector,
    SqlGuard,
    SqlQuery,
    ToolCall,
    UnknownTool,
)

ITEM_ID = {"type": "string", "pattern": r"^I-\d+$"}
QUERIES = [
    SqlQuery(
        name="get_item",
        description="Get one item.",
        sql="SELECT id, name, stock FROM item WHERE id = :item_id",
        parameters={"type": "object", "properties": {"item_id": ITEM_ID}, "required": ["item_id"]},
        returns="one",
        fields=("id", "name", "stock"),
        not_found="item {item_id} not found",
    ),
    SqlQuery(
        name="list_items",
        description="List items, optionally those with at least some stock.",
        sql="SELECT id, name, stock FROM item WHERE (:min_stock IS NULL OR stock >= :min_stock) "
        "ORDER BY id",
        parameters={"type": "object", "properties": {"min_stock": {"type": "integer"}}},
        fields=("id", "name"),
    ),
    SqlQuery(
        name="take_item",
        description="Take units of an item from stock.",
        effect="write",
        sql="UPDATE item SET stock = stock - :units WHERE id = :item_id",
        parameters={
            "type": "object",
            "properties": {"item_id": ITEM_ID, "units": {"type": "integer", "minimum": 1}},
            "required": ["item_id", "units"],
        },
        guards=[
            SqlGuard(
                "SELECT stock FROM item WHERE id = :item_id AND stock < :units",
                "only {stock} of {item_id} left",
            )
        ],
        result_sql="SELECT id, name, stock FROM item WHERE id = :item_id",
        returns="one",
        fields=("id", "name", "stock"),
    ),
]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE item (id TEXT PRIMARY KEY, name TEXT, stock INTEGER CHECK (stock >= 0))"
        )
        conn.executemany(
            "INSERT INTO item VALUES (?, ?, ?)", [("I-1", "bolt", 10), ("I-2", "nut", 0)]
        )
    conn.close()
    return path


@pytest.fixture
def shop(db):
    with SqlConnector("shop", f"sqlite:///{db}", QUERIES) as connector:
        yield connector


def call(connector, tool, key="", **arguments):
    return connector.invoke(ToolCall(tool, arguments), key)


def stock(db, item_id):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT stock FROM item WHERE id = ?", (item_id,)).fetchone()[0]


def test_tools_carry_effect_schema_and_result_fields(shop):
    """Each query is a tool with its effect, a closed schema and its fields in the description."""
    specs = {spec.name: spec for spec in shop.tools()}
    assert {name: spec.effect for name, spec in specs.items()} == {
        "get_item": "read",
        "list_items": "read",
        "take_item": "write",
    }
    assert specs["get_item"].parameters["additionalProperties"] is False
    assert specs["get_item"].description.endswith("Returns one record with: id, name, stock.")


def test_read_one_returns_the_declared_fields(shop):
    """A 'one' read returns a single record with exactly the declared fields."""
    assert call(shop, "get_item", item_id="I-1").data == {"id": "I-1", "name": "bolt", "stock": 10}


def test_read_many_projects_rows_to_fields(shop):
    """A 'many' read returns a list of records holding only the declared fields."""
    assert call(shop, "list_items", min_stock=1).data == [{"id": "I-1", "name": "bolt"}]


def test_read_one_with_no_row_is_a_refusal_with_the_message(shop):
    """No row for a 'one' read comes back ok=False worded by not_found."""
    result = call(shop, "get_item", item_id="I-9")
    assert (result.ok, result.error) == (False, "item I-9 not found")


def test_injection_attempt_is_refused_before_the_database(shop, db):
    """An argument outside its schema raises InvalidArguments and reaches no SQL."""
    with pytest.raises(InvalidArguments, match="get_item: item_id"):
        call(shop, "get_item", item_id="I-1' OR '1'='1")


def test_unknown_argument_is_refused(shop):
    """An argument the query does not declare raises InvalidArguments."""
    with pytest.raises(InvalidArguments, match="unexpected field"):
        call(shop, "list_items", sql="DROP TABLE item")


def test_unknown_tool_is_refused(shop):
    """A tool name that is no declared query raises UnknownTool."""
    with pytest.raises(UnknownTool):
        call(shop, "run_sql")


def test_write_returns_the_result_query(shop, db):
    """A write changes the database and answers with its result query's record."""
    result = call(shop, "take_item", "task-1:1", item_id="I-1", units=3)
    assert result.ok and result.data == {"id": "I-1", "name": "bolt", "stock": 7}
    assert stock(db, "I-1") == 7


def test_same_key_writes_once(shop, db):
    """A repeated idempotency key replays the first result and writes nothing."""
    first = call(shop, "take_item", "task-1:1", item_id="I-1", units=3)
    again = call(shop, "take_item", "task-1:1", item_id="I-1", units=3)
    assert again.data == first.data and stock(db, "I-1") == 7


def test_idempotency_survives_a_new_connector(shop, db):
    """The key is kept in the target database, so another connector instance replays it."""
    call(shop, "take_item", "task-1:1", item_id="I-1", units=3)
    with SqlConnector("shop", f"sqlite:///{db}", QUERIES) as other:
        assert call(other, "take_item", "task-1:1", item_id="I-1", units=3).ok
    assert stock(db, "I-1") == 7


def test_key_reused_for_other_arguments_is_refused(shop, db):
    """A key already used with different arguments is refused and writes nothing."""
    call(shop, "take_item", "task-1:1", item_id="I-1", units=3)
    result = call(shop, "take_item", "task-1:1", item_id="I-1", units=4)
    assert not result.ok and "already used for a different request" in result.error
    assert stock(db, "I-1") == 7


def test_guard_refuses_with_its_message(shop, db):
    """A guard that finds a row refuses the write with its formatted message."""
    result = call(shop, "take_item", "task-2:1", item_id="I-1", units=11)
    assert (result.ok, result.error) == (False, "only 10 of I-1 left")
    assert stock(db, "I-1") == 10


def test_refused_write_leaves_the_key_free(shop, db):
    """A refused write records no key, so the same key works once the cause is gone."""
    call(shop, "take_item", "task-2:1", item_id="I-1", units=11)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE item SET stock = 20 WHERE id = 'I-1'")
    conn.close()
    assert call(shop, "take_item", "task-2:1", item_id="I-1", units=11).data["stock"] == 9


def test_constraint_violation_is_a_refusal(db):
    """A statement that breaks a database constraint comes back ok=False, nothing written."""
    unguarded = SqlQuery(
        name="take_item",
        description="Take units without a guard.",
        effect="write",
        sql="UPDATE item SET stock = stock - :units WHERE id = :item_id",
        parameters={
            "type": "object",
            "properties": {"item_id": ITEM_ID, "units": {"type": "integer"}},
        },
    )
    with SqlConnector("shop", f"sqlite:///{db}", [unguarded]) as shop:
        result = call(shop, "take_item", "task-3:1", item_id="I-2", units=1)
    assert not result.ok and "CHECK constraint failed" in result.error
    assert stock(db, "I-2") == 0


def test_write_without_key_is_refused(shop):
    """A write with an empty idempotency key raises ConnectorError."""
    with pytest.raises(ConnectorError, match="without an idempotency key"):
        call(shop, "take_item", "", item_id="I-1", units=1)


def test_unreachable_database_is_unavailable(tmp_path):
    """A database file that cannot be opened raises ConnectorUnavailable."""
    url = f"sqlite:///{tmp_path}/missing/dir/shop.sqlite3"
    with SqlConnector("shop", url, QUERIES) as shop, pytest.raises(ConnectorUnavailable):
        call(shop, "get_item", item_id="I-1")


def test_query_binding_an_undeclared_name_is_rejected():
    """Declaring SQL that binds a name not among the parameters is a ValueError."""
    with pytest.raises(ValueError, match="not parameters"):
        SqlQuery(name="q", description="d", sql="SELECT :secret AS x", fields=("x",))


def test_read_must_be_a_select():
    """A read query whose SQL is not a SELECT is a ValueError."""
    with pytest.raises(ValueError, match="one SELECT"):
        SqlQuery(name="q", description="d", sql="DELETE FROM item", fields=("x",))


def test_from_config_resolves_module_attribute(db):
    """from_config loads queries named as 'module:ATTR'."""
    with SqlConnector.from_config(
        name="shop", url=f"sqlite:///{db}", queries="tests.unit.test_connectors_sql:QUERIES"
    ) as shop:
        assert [spec.name for spec in shop.tools()] == ["get_item", "list_items", "take_item"]


def test_from_config_accepts_plain_json_queries(db):
    """from_config builds queries from plain dicts, as a JSON settings file holds them."""
    raw = [{"name": "count_items", "description": "Count items.", "sql": "SELECT count(*) AS n "
            "FROM item", "returns": "one", "fields": ["n"]}]  # fmt: skip
    with SqlConnector.from_config(name="shop", url=f"sqlite:///{db}", queries=raw) as shop:
        assert call(shop, "count_items").data == {"n": 2}
