"""Ingest on the quirks of real exports, each in a small hand-made fixture (no ../shared needed):
orders-only shops, guest checkouts, whole-line-quoted and malformed CSV lines, a byte-order mark,
one-minute header spreads, Excel, ids written as 17850.0, NaN / Infinity, identical lines, a file
re-delivered under another name, missing and empty inputs. Every raw row ends in silver or in
quarantine, provably from the tables."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from shopai_spark.app import load_config, main, run_job
from shopai_spark.quality import QUARANTINE
from shopai_spark.runs import JOB_RUNS
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides, cli_args

pytestmark = pytest.mark.e2e

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# (line as written in the export, where it must end: silver or a quarantine reason)
LINES = [
    ('536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom', "silver"),
    ('536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom', "silver"),
    # whole line wrapped in quotes, doubled quotes and a comma inside: one order line
    ('"536381,82567,""AIRLINE LOUNGE,METAL SIGN"",2,2010-12-01 09:41:00,2.1,15311.0,United Kingdom"', "silver"),
    ('"536477,22041,""RECORD FRAME 7"""" SINGLE SIZE "",48,2010-12-01 12:27:00,2.1,16210.0,United Kingdom"', "silver"),
    # an RFC-4180 quoted field with a comma
    ('536381,22139,"RETROSPOT TEA SET, CERAMIC",1,2010-12-01 09:41:00,4.95,15311.0,United Kingdom', "silver"),
    # guest checkouts: no customer
    ('536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:32:00,2.51,,United Kingdom', "silver"),
    ('536544,21774,DECORATIVE CATS BATHROOM BOTTLE,2,2010-12-01 14:32:00,2.51,,United Kingdom', "silver"),
    # one order whose lines are a minute apart: kept, with the earliest time
    ('536600,22086,PAPER CHAIN KIT 50\'S CHRISTMAS,3,2010-12-02 10:00:00,2.95,17511.0,United Kingdom', "silver"),
    ('536600,22910,PAPER CHAIN KIT VINTAGE CHRISTMAS,3,2010-12-02 10:01:00,2.95,17511.0,United Kingdom', "silver"),
    # a cancellation
    ('C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom', "silver"),
    # too many fields (a stray comma): never truncated into silver
    ('536700,22633,HAND WARMER,UNION JACK,6,2010-12-02 11:00:00,1.85,17850.0,United Kingdom', "malformed_record"),
    # too few fields
    ('536701,22633,6,2010-12-02 11:00:00', "malformed_record"),
    # an unclosed quote: costs this line only, not the lines after it
    ('536702,22633,"HAND WARMER RED,6,2010-12-02 11:00:00,1.85,17850.0,United Kingdom', "malformed_record"),
    # values that are not numbers
    ('536703,22633,HAND WARMER,6,2010-12-02 11:00:00,NaN,17850.0,United Kingdom', "unparseable_unit_price"),
    ('536704,22633,HAND WARMER,6,2010-12-02 11:00:00,nan,17850.0,United Kingdom', "unparseable_unit_price"),
    ('536705,22633,HAND WARMER,6,2010-12-02 11:00:00,Infinity,17850.0,United Kingdom', "unparseable_unit_price"),
    # two identical bad lines: two quarantine rows
    ('536706,22633,HAND WARMER,0,2010-12-02 11:00:00,1.85,17850.0,United Kingdom', "zero_quantity"),
    ('536706,22633,HAND WARMER,0,2010-12-02 11:00:00,1.85,17850.0,United Kingdom', "zero_quantity"),
    # lines of one order 20 minutes apart (over the 5-minute tolerance)
    ('536800,22633,HAND WARMER,1,2010-12-02 12:00:00,1.85,12000.0,United Kingdom', "order_ts_spread_over_tolerance"),
    ('536800,22632,HAND WARMER RED,1,2010-12-02 12:20:00,1.85,12000.0,United Kingdom', "order_ts_spread_over_tolerance"),
    # an order line without customer whose order has one on its other line
    ('536802,22633,HAND WARMER,1,2010-12-02 12:00:00,1.85,12003.0,United Kingdom', "silver"),
    ('536802,22632,HAND WARMER RED,1,2010-12-02 12:00:00,1.85,,United Kingdom', "missing_user_id"),
    # lines of one order with two customers
    ('536801,22633,HAND WARMER,1,2010-12-02 12:00:00,1.85,12001.0,United Kingdom', "conflicting_order_customer"),
    ('536801,22632,HAND WARMER RED,1,2010-12-02 12:00:00,1.85,12002.0,United Kingdom', "conflicting_order_customer"),
]
ORDERS_ONLY = ["ingest.events=null", "ingest.products=null", "ingest.orders.normalize_ids=[user_id]",
               "ingest.min_ts=2010-01-01"]


def write_export(path: Path, lines=LINES) -> Path:
    """The export as the UCI file is written: UTF-8 with a byte-order mark, CRLF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\r\n".join([HEADER, *[line for line, _ in lines]]) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return path


def ingest_config(root: Path, mlflow_store, *overrides: str):
    return load_config(LOCAL_CONF, [*base_overrides(root, mlflow_store), *ORDERS_ONLY, *overrides])


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, mlflow_store, spark):
    """The quirky export ingested once, orders only (no events, no product file)."""
    root = tmp_path_factory.mktemp("real_world")
    write_export(root / "raw" / "orders" / "export.csv")
    config = ingest_config(root, mlflow_store)
    summary = run_job("ingest", config)
    return Lakehouse(spark, config.lakehouse), summary, config, root


def quarantined_reasons(lakehouse: Lakehouse) -> list[str]:
    return sorted(r.reason for r in lakehouse.read(QUARANTINE).collect())


def raw_lines_in_silver(lakehouse: Lakehouse) -> int:
    return sum(lakehouse.read(t.ref).agg(F.sum("source_lines")).first()[0] or 0 for t in (ORDER_ITEMS, RETURNS))


def test_orders_only_shop_ingests_and_derives_products(ingested):
    lakehouse, summary, _, _ = ingested
    assert not lakehouse.exists(EVENTS.ref)
    products = {p.sku: p.title for p in lakehouse.read(PRODUCTS.ref).collect()}
    assert products["82567"] == "AIRLINE LOUNGE,METAL SIGN"
    assert products["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert "  events: not configured, skipped" in summary.lines


def test_every_raw_row_is_in_silver_or_quarantine_from_the_tables(ingested):
    lakehouse, summary, _, _ = ingested
    expected = sorted(reason for _, reason in LINES if reason != "silver")
    assert quarantined_reasons(lakehouse) == expected  # identical bad lines stay two rows
    assert raw_lines_in_silver(lakehouse) == sum(1 for _, where in LINES if where == "silver")
    assert raw_lines_in_silver(lakehouse) + lakehouse.read(QUARANTINE).count() == len(LINES)
    assert any(line.startswith(f"  orders: read {len(LINES)} rows") for line in summary.lines)


def test_quoted_lines_are_unwrapped_and_no_fragment_reaches_silver(ingested):
    lakehouse, _, _, _ = ingested
    items = {(i.order_id, i.sku): i for i in lakehouse.read(ORDER_ITEMS.ref).collect()}
    assert items[("536381", "82567")].quantity == 2
    assert items[("536477", "22041")].quantity == 48
    assert items[("536381", "22139")].unit_price == 4.95
    ids = [o.order_id for o in lakehouse.read(ORDERS.ref).collect()]
    assert all(i.isdigit() for i in ids), ids
    malformed = lakehouse.read(QUARANTINE).where("reason = 'malformed_record'").collect()
    assert {m.record for m in malformed} == {line for line, where in LINES if where == "malformed_record"}


def test_guest_checkouts_are_kept_as_orders_without_customer(ingested):
    lakehouse, _, _, _ = ingested
    guest = lakehouse.read(ORDERS.ref).where("order_id = '536544'").first()
    assert guest.user_id is None
    assert lakehouse.read(ORDER_ITEMS.ref).where("order_id = '536544'").count() == 2


def test_ids_written_with_a_fraction_are_normalised(ingested):
    lakehouse, _, _, _ = ingested
    assert lakehouse.read(ORDERS.ref).where("order_id = '536365'").first().user_id == "17850"


def test_one_minute_header_spread_takes_the_earliest_time(ingested):
    lakehouse, _, _, _ = ingested
    order = lakehouse.read(ORDERS.ref).where("order_id = '536600'").first()
    assert str(order.order_ts) == "2010-12-02 10:00:00"
    assert lakehouse.read(ORDER_ITEMS.ref).where("order_id = '536600'").count() == 2


def test_reingest_and_redelivery_under_another_name_change_nothing(ingested, spark):
    lakehouse, _, config, root = ingested
    before = {t.ref: sorted(lakehouse.read(t.ref).collect()) for t in (ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS)}
    quarantine = lakehouse.read(QUARANTINE).count()
    shutil.copy(root / "raw" / "orders" / "export.csv", root / "raw" / "orders" / "export (1).csv")
    try:
        summary = run_job("ingest", config)
    finally:
        (root / "raw" / "orders" / "export (1).csv").unlink()
    assert any(line.startswith(f"  orders: read {len(LINES)} rows") for line in summary.lines)
    assert lakehouse.read(QUARANTINE).count() == quarantine
    for ref, rows in before.items():
        assert sorted(lakehouse.read(ref).collect()) == rows, ref


def test_excel_export_gives_the_same_silver_tables(ingested, tmp_path, mlflow_store, spark):
    openpyxl = pytest.importorskip("openpyxl")
    good = [(line, where) for line, where in LINES if where == "silver"]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    for line, _ in good:
        cells = next(csv.reader(io.StringIO(line)))
        if len(cells) == 1:                      # the whole-line-quoted rows of the CSV
            cells = next(csv.reader(io.StringIO(cells[0])))
        order, sku, desc, qty, ts, price, customer, country = cells
        sheet.append([int(order) if order.isdigit() else order, int(sku) if sku.isdigit() else sku, desc,
                      int(qty), datetime.fromisoformat(ts), float(price),
                      int(float(customer)) if customer else None, country])
    (tmp_path / "raw" / "orders").mkdir(parents=True)
    book.save(tmp_path / "raw" / "orders" / "export.xlsx")
    csv_root = tmp_path / "csv"
    write_export(csv_root / "raw" / "orders" / "export.csv", good)
    from_csv = ingest_config(csv_root, mlflow_store)
    from_xlsx = ingest_config(tmp_path, mlflow_store, "ingest.orders.format=xlsx")
    run_job("ingest", from_csv)
    run_job("ingest", from_xlsx)
    for table in (ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS):
        a = sorted(Lakehouse(spark, from_csv.lakehouse).read(table.ref).collect())
        b = sorted(Lakehouse(spark, from_xlsx.lakehouse).read(table.ref).collect())
        assert a == b, table.ref


def test_nan_and_infinity_event_prices_are_quarantined(tmp_path, mlflow_store, spark):
    events = tmp_path / "raw" / "events"
    events.mkdir(parents=True)
    base = {"user_id": "U-1", "session_id": "s", "sku": "A", "event_type": "view"}
    rows = [dict(base, event_ts=f"2024-01-0{i + 1}T10:00:00Z", price=p) for i, p in
            enumerate([1.5, "NaN", "Infinity", "-Infinity"])]
    (events / "part-0.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    config = ingest_config(tmp_path, mlflow_store, f"ingest.events={{path: {events}, format: json}}",
                           "ingest.orders=null")
    run_job("ingest", config)
    lakehouse = Lakehouse(spark, config.lakehouse)
    assert [e.price for e in lakehouse.read(EVENTS.ref).collect()] == [1.5]
    assert quarantined_reasons(lakehouse) == ["malformed_record"] + ["unparseable_price"] * 3


def test_check_constraints_refuse_nan_prices(ingested, spark):
    lakehouse, _, _, _ = ingested
    with pytest.raises(Exception, match="(?i)check constraint"):
        spark.sql(f"INSERT INTO delta.`{lakehouse.location(ORDER_ITEMS.ref)}` "
                  "VALUES ('X1', 'SKU', 1, double('NaN'), 1)")


def test_product_file_without_price_column_is_accepted(tmp_path, mlflow_store, spark):
    write_export(tmp_path / "raw" / "orders" / "export.csv", LINES[:2])
    products = tmp_path / "raw" / "products"
    products.mkdir(parents=True)
    (products / "catalogue.csv").write_text("sku,title\n85123A,Heart holder\n71053,Lantern\n")
    config = ingest_config(tmp_path, mlflow_store, f"ingest.products={{path: {products}}}")
    run_job("ingest", config)
    rows = sorted(Lakehouse(spark, config.lakehouse).read(PRODUCTS.ref).collect())
    assert [(p.sku, p.title, p.list_price) for p in rows] == [("71053", "Lantern", None),
                                                              ("85123A", "Heart holder", None)]


@pytest.mark.parametrize("case, message", [
    ("missing_path", "the orders source path .* does not exist"),
    ("empty_folder", "the orders source .* holds no non-empty file"),
    ("empty_file", "the orders source .* holds no non-empty file"),
    ("header_only", "the orders source .* has no rows"),
])
def test_missing_or_empty_input_is_one_clear_line_and_writes_nothing(case, message, tmp_path, mlflow_store,
                                                                    capsys, spark, make_config):
    orders = tmp_path / "raw" / "orders"
    if case != "missing_path":
        orders.mkdir(parents=True)
    if case == "empty_file":
        (orders / "export.csv").write_bytes(b"")
    if case == "header_only":
        (orders / "export.csv").write_text(HEADER + "\n")
    code = main("ingest", cli_args(tmp_path, mlflow_store, *ORDERS_ONLY))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1].startswith("ingest failed: ") and "Traceback" not in "\n".join(err)
    assert re.search(message, err[-1]), err[-1]
    # the only table is the run ledger, which records the run that ended without writing
    assert [p.name for p in (tmp_path / "lakehouse").iterdir()] == ["ops"]
    events = sorted(r["event"] for r in Lakehouse(spark, make_config().lakehouse).read(JOB_RUNS).collect())
    assert events == ["rolled_back", "started"]


def test_an_order_redelivered_with_another_customer_is_quarantined_not_merged(tmp_path, mlflow_store, spark):
    first = [('540001,22633,HAND WARMER,1,2011-01-04 10:00:00,1.85,12001.0,United Kingdom', "silver"),
             ('540002,22632,HAND WARMER RED,2,2011-01-04 11:00:00,1.85,12002.0,France', "silver")]
    # the next day's drop: order 540001 again with another customer and country and a new line;
    # 540002 delivered again unchanged
    later = [('540001,22633,HAND WARMER,1,2011-01-04 10:00:00,1.85,12999.0,Germany', "conflicting_redelivery"),
             ('540001,21000,NEW LINE,5,2011-01-04 10:00:00,0.85,12999.0,Germany', "conflicting_redelivery"),
             ('540002,22632,HAND WARMER RED,2,2011-01-04 11:00:00,1.85,12002.0,France', "silver")]
    write_export(tmp_path / "raw" / "orders" / "a.csv", first)
    write_export(tmp_path / "drop" / "b.csv", later)
    config = ingest_config(tmp_path, mlflow_store)
    lakehouse = Lakehouse(spark, config.lakehouse)
    run_job("ingest", config)
    items = sorted(lakehouse.read(ORDER_ITEMS.ref).collect())
    next_drop = ingest_config(tmp_path, mlflow_store, f"ingest.orders.path={tmp_path / 'drop'}")
    run_job("ingest", next_drop)
    orders = {o.order_id: (o.user_id, o.country) for o in lakehouse.read(ORDERS.ref).collect()}
    assert orders == {"540001": ("12001", "United Kingdom"), "540002": ("12002", "France")}   # kept
    assert sorted(lakehouse.read(ORDER_ITEMS.ref).collect()) == items
    quarantined = lakehouse.read(QUARANTINE).collect()
    assert sorted((q.reason, q.record) for q in quarantined) == sorted(
        (reason, line) for line, reason in later if reason != "silver")         # the new version, visible

    # the explicit correction path replaces the stored header and adds the new line
    run_job("ingest", ingest_config(tmp_path, mlflow_store, f"ingest.orders.path={tmp_path / 'drop'}",
                                    "ingest.allow_updates=true"))
    assert lakehouse.read(ORDERS.ref).where("order_id = '540001'").first().user_id == "12999"
    assert lakehouse.read(ORDER_ITEMS.ref).where("order_id = '540001'").count() == 2
