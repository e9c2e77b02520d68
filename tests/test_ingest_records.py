"""Splitting export files into records (plain Python, what the executors run): CSV dialect options,
quoted fields spanning lines, unclosed quotes, encodings and byte-order marks, JSON lines, Excel."""

from __future__ import annotations

import io
from datetime import datetime

import pandas as pd
import pytest

from shopai_spark.ingest import records
from shopai_spark.ingest.records import CORRUPT, ParseOptions

COLUMNS = ("id", "name", "qty")


def split(content: bytes, **options) -> list[dict]:
    """Every output row of one file as a dict (header row first)."""
    parse = ParseOptions(**{"format": "csv", "columns": COLUMNS, **options})
    files = pd.DataFrame({"source_file": ["f"], "file_checksum": ["c"], "content": [content]})
    return [row for frame in records.split_files(iter([files]), parse) for row in frame.to_dict("records")]


def data_rows(content: bytes, **options) -> list[tuple]:
    return [(r["row_number"], r["id"], r["name"], r["qty"], r[CORRUPT])
            for r in split(content, **options) if r["row_number"] > 0]


def test_rfc4180_quotes_and_a_field_spanning_lines():
    text = b'id,name,qty\r\n1,"Mug, large",2\r\n2,"say ""hi""",3\r\n3,"two\nlines",4\r\n4,last,5\r\n'
    assert data_rows(text) == [(2, "1", "Mug, large", "2", None), (3, "2", 'say "hi"', "3", None),
                               (4, "3", "two\nlines", "4", None), (6, "4", "last", "5", None)]


def test_escape_character_and_delimiter_options():
    text = b'id;name;qty\n1;"6\\" ruler";2\n'
    assert data_rows(text, delimiter=";", escape="\\") == [(2, "1", '6" ruler', "2", None)]


def test_without_multiline_a_record_is_one_line():
    rows = data_rows(b'id,name,qty\n1,"two\nlines",4\n2,b,5\n', multiline=False)
    assert [r[0] for r in rows] == [2, 3, 4]
    assert rows[0][4] is not None and rows[1][4] is not None and rows[2] == (4, "2", "b", "5", None)


def test_an_unclosed_quote_costs_one_line_not_the_file():
    rows = data_rows(b'id,name,qty\n1,"open,2\n2,b,3\n3,c,4\n')
    assert rows[0][0] == 2 and rows[0][4] is not None
    assert rows[1:] == [(3, "2", "b", "3", None), (4, "3", "c", "4", None)]


def test_wrong_field_counts_keep_the_raw_line():
    out = [r for r in split(b"id,name,qty\n1,a,b,2\n2,a\n") if r["row_number"] > 0]
    assert [(r["record"], r[CORRUPT]) for r in out] == [
        ("1,a,b,2", "4 field(s) where the header has 3"), ("2,a", "2 field(s) where the header has 3")]


def test_whole_line_quoted_rows_are_unwrapped_unless_disabled():
    text = b'id,name,qty\n"1,""Mug, large"",2"\n'
    assert data_rows(text) == [(2, "1", "Mug, large", "2", None)]
    assert data_rows(text, unwrap_quoted_lines=False)[0][4] == "1 field(s) where the header has 3"


def test_encodings_and_byte_order_mark():
    assert data_rows("\ufeffid,name,qty\n1,Crème,2\n".encode())[0][2] == "Crème"
    assert data_rows("id,name,qty\n1,Crème,2\n".encode("latin-1"), encoding="ISO-8859-1")[0][2] == "Crème"
    undecodable = data_rows("id,name,qty\n1,Crème,2\n".encode("latin-1"))
    assert undecodable[0][4] == "bytes that are not UTF-8"


def test_header_columns_are_found_by_name_in_any_order():
    assert data_rows(b"qty,extra,name,id\n2,x,Mug,1\n") == [(2, "1", "Mug", "2", None)]


def test_empty_file_and_blank_lines():
    assert split(b"") == [{"id": None, "name": None, "qty": None, CORRUPT: None, "record": None,
                           "source_file": "f", "file_checksum": "c", "row_number": 0}]
    assert [r[0] for r in data_rows(b"id,name,qty\n\n1,a,2\n\n")] == [3]


def test_json_lines_keep_line_numbers():
    parse = ParseOptions(format="json", columns=())
    files = pd.DataFrame({"source_file": ["f"], "file_checksum": ["c"], "content": [b'{"a": 1}\n\n{"a": 2}\n']})
    out = pd.concat(records.split_files(iter([files]), parse))
    assert list(zip(out["row_number"], out["record"], strict=True)) == [(0, ""), (1, '{"a": 1}'), (3, '{"a": 2}')]


def test_excel_cells_become_the_strings_a_csv_export_has():
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["id", "name", "qty", "when"])
    book.active.append([536365, "Mug", 6.0, datetime(2010, 12, 1, 8, 26)])
    book.active.append([None, None, None, None])
    book.active.append(["C1", "Tea", -1, None, "extra"])
    buffer = io.BytesIO()
    book.save(buffer)
    out = split(buffer.getvalue(), format="xlsx", columns=("id", "name", "qty", "when"))
    assert [(r["row_number"], r["id"], r["qty"], r["when"], r[CORRUPT]) for r in out[1:]] == [
        (2, "536365", "6", "2010-12-01 08:26:00", None), (4, None, None, None, "5 cells where the header has 4")]
