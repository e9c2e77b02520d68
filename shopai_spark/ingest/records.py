"""Splitting raw export files into records on the executors (plain Python, no Spark session).

:func:`split_files` is the ``mapInPandas`` function of :func:`shopai_spark.ingest.sources.read_source`:
it takes batches of files (``source_file``, ``file_checksum``, ``content`` bytes) and yields, per file,
one header row (``row_number`` 0, ``record`` = the header line, or null for an empty file) and one row
per record: ``row_number`` = the line (CSV, JSON) or sheet row (Excel) where the record starts,
``record`` = its raw text, one string column per wanted export column, and ``_corrupt_record`` =
why the record does not fit the header (else null).

CSV follows RFC 4180 (quoted fields, doubled quotes, fields spanning lines) plus two quirks of real
exports: a byte-order mark, and whole lines wrapped in quotes (``"1,2,""a,b"",3"``), which are
unwrapped when the inner text has the header's field count. Blank lines are no records.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time

import pandas as pd
from pyspark.sql.types import LongType, StringType, StructField, StructType

CORRUPT = "_corrupt_record"
BATCH_ROWS = 20_000
_BLANK = re.compile(r"^[\r\n]*$")


@dataclass(frozen=True)
class ParseOptions:
    """How to split one source's files: ``format`` csv | json | xlsx, the wanted export ``columns``
    (json: none, Spark parses the lines), and the CSV dialect / Excel sheet."""

    format: str
    columns: tuple[str, ...]
    delimiter: str = ","
    quote: str = '"'
    escape: str | None = None
    multiline: bool = True
    encoding: str = "UTF-8"
    unwrap_quoted_lines: bool = True
    sheet: str | None = None


def output_schema(columns: list[str]) -> StructType:
    """Schema of :func:`split_files`' output for the wanted export ``columns``."""
    return StructType(
        [StructField(c, StringType()) for c in dict.fromkeys(columns)]
        + [StructField(CORRUPT, StringType()), StructField("record", StringType()),
           StructField("source_file", StringType()), StructField("file_checksum", StringType()),
           StructField("row_number", LongType())])


def split_files(batches: Iterator[pd.DataFrame], options: ParseOptions) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function: files → header rows and record rows (see the module docstring)."""
    columns = list(dict.fromkeys(options.columns))
    for files in batches:
        for path, checksum, content in zip(files["source_file"], files["file_checksum"], files["content"],
                                           strict=True):
            rows: list[dict] = []
            for row in _file_rows(bytes(content), options):
                row["source_file"], row["file_checksum"] = path, checksum
                rows.append(row)
                if len(rows) >= BATCH_ROWS:
                    yield _frame(rows, columns)
                    rows = []
            if rows:
                yield _frame(rows, columns)


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows → the output frame; string columns stay object dtype (None, never NaN)."""
    names = [*columns, CORRUPT, "record", "source_file", "file_checksum"]
    frame = pd.DataFrame({name: pd.Series([row.get(name) for row in rows], dtype=object) for name in names})
    frame["row_number"] = pd.Series([row["row_number"] for row in rows], dtype="int64")
    return frame


def _file_rows(content: bytes, options: ParseOptions) -> Iterator[dict]:
    if options.format == "xlsx":
        yield from _excel_rows(content, options)
        return
    text = content.decode(_python_encoding(options.encoding), errors="replace")
    if options.format == "json":
        yield from _json_rows(text)
    else:
        yield from _csv_rows(text, options)


def _python_encoding(encoding: str) -> str:
    """UTF-8 is read as utf-8-sig so a byte-order mark is not part of the first column's name."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _json_rows(text: str) -> Iterator[dict]:
    """JSON lines: a header row (record "" when the file has content) and one row per non-blank line."""
    lines = list(io.StringIO(text, newline=""))
    yield {"row_number": 0, "record": "" if text.strip() else None}
    for number, line in enumerate(lines, start=1):
        if not _BLANK.match(line):
            yield {"row_number": number, "record": line.rstrip("\r\n")}


def _dialect(options: ParseOptions) -> dict:
    return {"delimiter": options.delimiter, "quotechar": options.quote, "escapechar": options.escape,
            "doublequote": options.escape is None, "strict": True}


def split_header(line: str, delimiter: str = ",") -> list[str]:
    """The column names of a header line (stripped)."""
    fields = next(csv.reader([line], delimiter=delimiter), [])
    return [f.strip() for f in fields]


def _csv_rows(text: str, options: ParseOptions) -> Iterator[dict]:
    """CSV text → header row + record rows (wanted columns picked by the header's names).

    A record spanning several lines that does not fit the header (an unclosed quote swallows the
    lines after it) is read again line by line, so one stray quote costs one line, not the file."""
    records = _csv_records(text, options)
    first = next(records, None)
    if first is None:
        yield {"row_number": 0, "record": None}
        return
    _, header_text, header = first
    yield {"row_number": 0, "record": header_text}
    names = [h.strip() for h in header]
    positions = {c: names.index(c) for c in options.columns if c in names}
    for line, raw, fields in records:
        fields = _fit(fields, len(names), options)
        lines = raw.splitlines()
        if isinstance(fields, str) and len(lines) > 1:
            for offset, single in enumerate(lines):
                parsed = _csv_fields(single, options)
                yield _record_row(line + offset, single, _fit(parsed if parsed is not None else
                                                              "not valid CSV (unclosed quote)", len(names), options),
                                  positions, options)
        else:
            yield _record_row(line, raw, fields, positions, options)


def _fit(fields: list[str] | str, width: int, options: ParseOptions) -> list[str] | str:
    """The record's fields when they fit a header of ``width`` columns (a whole line wrapped in
    quotes unwrapped first), else why not."""
    if isinstance(fields, str):
        return fields
    if len(fields) == 1 and width > 1 and options.unwrap_quoted_lines:
        inner = _csv_fields(fields[0], options)
        fields = inner if inner is not None and len(inner) == width else fields
    if len(fields) != width:
        return f"{len(fields)} field(s) where the header has {width}"
    return fields


def _record_row(line: int, raw: str, fields: list[str] | str, positions: dict[str, int],
                options: ParseOptions) -> dict:
    problem = fields if isinstance(fields, str) else None
    if problem is None and "\ufffd" in raw:
        problem = f"bytes that are not {options.encoding}"
    row = {"row_number": line, "record": raw, CORRUPT: problem}
    if problem is None:
        row.update({c: fields[i] for c, i in positions.items()})
    return row


def _csv_fields(text: str, options: ParseOptions) -> list[str] | None:
    """One line split into fields, or None when it is not valid CSV."""
    try:
        return next(csv.reader([text], **_dialect(options)), [])
    except csv.Error:
        return None


def _csv_records(text: str, options: ParseOptions) -> Iterator[tuple[int, str, list[str] | str]]:
    """(first line number, raw text, fields) per record; fields is an error message when the
    record cannot be split (e.g. a stray quote). Without ``multiline``, a record is one line."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    if not options.multiline:
        for number, line in enumerate(io.StringIO(text, newline=""), start=1):
            if _BLANK.match(line):
                continue
            fields = _csv_fields(line.rstrip("\r\n"), options)
            yield number, line.rstrip("\r\n"), fields if fields is not None else "not valid CSV (quotes)"
        return
    reader = csv.reader(lines(), **_dialect(options))
    start = 1
    while True:
        try:
            fields: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            fields = f"not valid CSV: {exc}"
        raw = "".join(consumed).rstrip("\r\n")
        consumed.clear()
        number, start = start, reader.line_num + 1
        if fields == [] or (isinstance(fields, list) and _BLANK.match(raw)):
            continue
        yield number, raw, fields


def _excel_rows(content: bytes, options: ParseOptions) -> Iterator[dict]:
    """First (or the configured) worksheet → header row + one row per non-empty sheet row; cells
    as strings (integers without fraction, dates ISO ``yyyy-MM-dd HH:mm:ss``)."""
    from openpyxl import load_workbook  # executors import it only for Excel sources

    book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    try:
        sheet = book[options.sheet] if options.sheet else book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header: list[str] | None = None
        for number, cells in enumerate(rows, start=1):
            values = [_cell_text(v) for v in cells]
            while values and values[-1] is None:
                values.pop()
            if not values:
                continue
            raw = _csv_line(values)
            if header is None:
                header = [v.strip() if v else "" for v in values]
                yield {"row_number": 0, "record": raw}
                positions = {c: header.index(c) for c in options.columns if c in header}
                continue
            problem = (f"{len(values)} cells where the header has {len(header)}" if len(values) > len(header)
                       else None)
            row = {"row_number": number, "record": raw, CORRUPT: problem}
            if problem is None:
                row.update({c: values[i] if i < len(values) else None for c, i in positions.items()})
            yield row
        if header is None:
            yield {"row_number": 0, "record": None}
    finally:
        book.close()


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def _csv_line(values: list[str | None]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in values])
    return out.getvalue()
