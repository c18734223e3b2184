"""singer-sdk's standard tap and target test suites, run against every built-in connector on the real
local services: tap-files, tap-postgres, tap-mysql, target-duckdb and target-postgres.

singer-sdk builds a tap's test class when this module is imported: it discovers the tap's streams then,
to parametrize the stream and attribute tests. So each tap's source (a folder of files, a PostgreSQL
schema, a MariaDB database) is built at import, and dropped by the class-scoped `resource` fixture (the
suites' hook for external resources) once its class has run, or at exit if the class never ran. A
source whose server is not answering turns its class into one test that skips with the reason, and
fails under CI. A target's config names a schema or a file that its `resource` fixture removes.

A standard test that does not apply to a connector is listed in its class's `not_applicable`, with
the reason, and skipped.
"""

from __future__ import annotations

import atexit
import importlib.resources
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pymysql
import pytest
from singer_sdk.testing import (
    SuiteConfig,
    TapTestRunner,
    TargetTestRunner,
    get_tap_test_class,
    get_target_test_class,
    target_test_streams,
)
from singer_sdk.testing import target_tests as target_tests_module
from singer_sdk.testing.suites import SingerTestSuite, tap_stream_attribute_tests
from singer_sdk.testing.tap_tests import AttributeIsDateTimeTest
from singer_sdk.testing.target_tests import TargetEncodedStringData
from singer_sdk.testing.templates import TargetFileTestTemplate, TargetTestTemplate

from taps.tap_files.tap import TapFiles
from taps.tap_mysql.tap import TapMySQL
from taps.tap_postgres.tap import TapPostgres
from targets.target_duckdb.target import TargetDuckDB
from targets.target_postgres.target import TargetPostgres
from tests.conftest import IN_CI

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
MYSQL: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
MAX_RECORDS = 100
SUITE = SuiteConfig(max_records_limit=MAX_RECORDS)
READINGS = MAX_RECORDS + 20  # rows of each tap's `readings` stream: more than the suite reads

# Why two standard tap tests do not apply to some streams and properties. Times of day are kept in a
# stream of their own (`shifts`), so that every other stream's records are checked in full.
TIME_FORMAT = (
    "singer-sdk's format checker takes 'time' as RFC 3339 full-time, with an offset; a time of day has "
    "none, and the taps write it as HH:MM:SS[.ffffff], as singer-sdk's own conform_record_data_types does"
)
NULLABLE_JSON = (
    "singer-sdk's not_null test takes a property without a type as one that cannot be null; the taps "
    "declare JSON columns as {} (any JSON value, null too), and this one is nullable"
)


# -- sources: built at import (singer-sdk discovers streams then), dropped by `resource` ------------


class Source:
    """Something a tap reads, built once; `drop()` removes it, once however often it is called."""

    def __init__(self, drop: Callable[[], None]) -> None:
        self._drop: Callable[[], None] | None = drop
        atexit.register(self.drop)  # a class deselected or only collected cleans up too

    def drop(self) -> None:
        if self._drop is not None:
            drop, self._drop = self._drop, None
            drop()


def files_source() -> tuple[dict[str, Any], Source]:
    """A folder of a CSV stream (two files), a JSONL stream, a TSV stream without a key and a
    stream of times of day."""
    root = Path(tempfile.mkdtemp(prefix="elt-sdk-standard-"))
    (root / "orders").mkdir()
    (root / "orders" / "2024-01.csv").write_text(
        "id,customer,amount,ordered_at,day,paid,note,extra\n"
        '1,ada,10.50,2024-01-01T10:00:00+00:00,2024-01-01,true,first,"{""gift"": true}"\n'
        '2,bob,20,2024-01-02T11:30:00+02:00,2024-01-02,false,"with, comma","[1, 2]"\n',
        encoding="utf-8",
    )
    (root / "orders" / "2024-02.csv").write_text(
        "id,customer,amount,ordered_at,day,paid,note,extra\n"
        '3,cy ✓,0.25,2024-02-01T00:00:00Z,2024-02-01,true,,"""rush"""\n'
        "4,di,1e3,2024-02-02T00:00:00Z,2024-02-02,false,,\n",
        encoding="utf-8",
    )
    events = [
        {"event_id": "a", "at": "2024-01-01T00:00:00+00:00", "count": 1, "payload": {"k": [1, 2]}},
        {"event_id": "b", "at": "2024-01-02T00:00:00+00:00", "count": 2, "payload": {"k": []}},
        {"event_id": "c", "at": "2024-01-03T00:00:00+00:00", "count": None, "payload": {}},
    ]
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    (root / "tags.tsv").write_text("tag\tweight\nred\t1.5\nblue\t2\n", encoding="utf-8")
    (root / "shifts.csv").write_text("shift,starts\n1,09:00:00\n2,17:30:00\n", encoding="utf-8")
    readings = "".join(f"{i},{i / 4}\n" for i in range(1, READINGS + 1))
    (root / "readings.csv").write_text("id,value\n" + readings, encoding="utf-8")
    config = {
        "files": [
            {"entity": "orders", "path": str(root / "orders"), "keys": ["id"], "schema": {"extra": "json"}},
            {"entity": "events", "path": str(root / "events.jsonl"), "keys": ["event_id"]},
            {"entity": "tags", "path": str(root / "tags.tsv")},
            {"entity": "shifts", "path": str(root / "shifts.csv"), "keys": ["shift"]},
            {"entity": "readings", "path": str(root / "readings.csv"), "keys": ["id"]},
        ],
        "add_metadata_columns": True,
    }
    return config, Source(lambda: shutil.rmtree(root, ignore_errors=True))


POSTGRES_TABLES = """
CREATE TABLE {s}.customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email varchar(100),
    active boolean NOT NULL DEFAULT true,
    signed_up date,
    balance numeric(12,2),
    score double precision,
    tags text[],
    profile jsonb NOT NULL DEFAULT '{{}}',
    settings json,
    uid uuid,
    updated_at timestamptz
);
CREATE TABLE {s}.order_lines (
    order_id bigint,
    line smallint,
    quantity integer NOT NULL,
    shipped_at timestamp,
    raw bytea,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE {s}.notes (body text, noted_at timestamptz);
CREATE TABLE {s}.shifts (shift integer PRIMARY KEY, starts time NOT NULL, ends timetz);
CREATE TABLE {s}.readings AS SELECT g AS id, g / 4.0 AS value FROM generate_series(1, {readings}) AS g;
CREATE VIEW {s}.active_customers AS SELECT id, name, balance FROM {s}.customers WHERE active;
INSERT INTO {s}.customers VALUES
    (1, 'Ada', 'ada@example.com', true, '2024-01-01', 10.50, 1.5, '{{a,b}}', '{{"plan": "pro"}}', '[1, 2]',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-01 10:00:00+00'),
    (2, 'Bob', NULL, false, NULL, NULL, NULL, NULL, '[]', NULL, NULL, NULL),
    (3, 'Cy ✓', 'cy@example.com', true, '2024-03-01', -0.01, 0, '{{}}', '{{"nested": {{"x": [1, null]}}}}',
     '"text"', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '2024-03-01 23:59:59.999999+02');
INSERT INTO {s}.order_lines VALUES
    (10, 1, 2, '2024-01-01 10:00:00', '\\x00ff'),
    (10, 2, 1, NULL, NULL),
    (11, 1, 5, '2024-02-01 00:00:00.5', '\\x');
INSERT INTO {s}.notes VALUES ('hello', '2024-01-01 00:00:00+00'), (NULL, NULL);
INSERT INTO {s}.shifts VALUES (1, '09:00', '17:00+02'), (2, '23:59:59.999999', NULL);
"""


def postgres_source() -> tuple[dict[str, Any], Source] | str:
    """A fresh schema in `test` with four tables of varied types and a view; or why there is none."""
    try:
        conn = psycopg.connect(POSTGRES_DSN, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        return f"PostgreSQL at 127.0.0.1:5432 is not answering: {error}"
    schema = f"elt_sdk_{uuid.uuid4().hex[:10]}"

    def drop() -> None:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    with conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        source = Source(drop)
        conn.execute(POSTGRES_TABLES.format(s=schema, readings=READINGS))
    return {**POSTGRES, "filter_schemas": [schema]}, source


MYSQL_TABLES = [
    """CREATE TABLE customers (
        id INT PRIMARY KEY,
        name VARCHAR(50) NOT NULL,
        email VARCHAR(100),
        active TINYINT(1) NOT NULL DEFAULT 1,
        balance DECIMAL(12,2),
        score DOUBLE,
        visits BIGINT UNSIGNED,
        kind ENUM('retail', 'trade'),
        profile JSON,
        signed_up DATE,
        updated_at DATETIME(6),
        seen_at TIMESTAMP NULL
    )""",
    """CREATE TABLE order_lines (
        order_id BIGINT, line SMALLINT, quantity INT NOT NULL, raw VARBINARY(16), note TEXT,
        PRIMARY KEY (order_id, line)
    )""",
    "CREATE TABLE notes (body TEXT, noted_at DATETIME)",
    "CREATE TABLE shifts (shift INT PRIMARY KEY, starts TIME NOT NULL, ends TIME(6))",
    "CREATE VIEW active_customers AS SELECT id, name, balance FROM customers WHERE active",
    "CREATE TABLE readings (id INT PRIMARY KEY, value DECIMAL(8,2))",
    f"""INSERT INTO readings
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {READINGS})
        SELECT i, i / 4 FROM n""",
    """INSERT INTO customers VALUES
        (1, 'Ada', 'ada@example.com', 1, 10.50, 1.5, 18446744073709551615, 'retail', '{"plan": "pro"}',
         '2024-01-01', '2024-01-01 10:00:00.123456', '2024-01-01 10:00:00'),
        (2, 'Bob', NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, 'Cy ✓', 'cy@example.com', 1, -0.01, 0, 0, 'trade', '[1, null]', '2024-03-01',
         '2024-03-01 23:59:59', '2038-01-19 03:14:07'),
        (4, 'Di', NULL, 1, 0, -1.5e300, 1, 'retail', '"vip"', NULL, NULL, NULL)""",
    "INSERT INTO order_lines VALUES (10, 1, 2, X'00FF', 'a'), (10, 2, 1, NULL, NULL), (11, 1, 5, X'', '')",
    "INSERT INTO notes VALUES ('hello', '2024-01-01 00:00:00'), (NULL, NULL)",
    "INSERT INTO shifts VALUES (1, '09:00:00', '17:00:00.5'), (2, '23:59:59', NULL)",
]


def mysql_execute(*statements: str, database: str | None = None) -> None:
    with pymysql.connect(**MYSQL, database=database, autocommit=True, charset="utf8mb4") as connection:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)


def mysql_source() -> tuple[dict[str, Any], Source] | str:
    """A fresh MariaDB database with four tables of varied types and a view; or why there is none."""
    database = f"elt_sdk_{uuid.uuid4().hex[:10]}"
    try:
        mysql_execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    except pymysql.err.OperationalError as error:
        return f"MariaDB/MySQL at 127.0.0.1:3306 is not answering: {error}"
    source = Source(lambda: mysql_execute(f"DROP DATABASE IF EXISTS `{database}`"))
    mysql_execute(*MYSQL_TABLES, database=database)
    return {**MYSQL, "filter_dbs": database}, source


# -- the suites -------------------------------------------------------------------------------------


class NotApplicable:
    """Skips the standard tests named in `not_applicable`: (test, subject) -> reason.

    The subject is "" for a test of the whole tap or target, else the end of the test's parameter id:
    the stream (`customers`; a tap-postgres stream `<schema>-customers` ends so too) or the stream
    and property (`customers.profile`).
    """

    not_applicable: ClassVar[dict[tuple[str, str], str]] = {}

    @pytest.fixture(autouse=True)
    def _skip_not_applicable(self, request: pytest.FixtureRequest) -> None:
        callspec = getattr(request.node, "callspec", None)
        subject = callspec.id if callspec else ""
        for (test, named), reason in self.not_applicable.items():
            if request.node.originalname == test and (subject == named or subject.endswith("-" + named)):
                pytest.skip(reason)


class AttributeIsDateTime(AttributeIsDateTimeTest):
    """singer-sdk's `is_datetime` test, applied to the properties that declare a type.

    Its `evaluate` raises ValueError on a property without one (`{}`: any JSON value, which the taps
    declare for JSON columns), which would stop the whole class from being built; such a property is
    not a date-time.
    """

    @classmethod
    def evaluate(cls, stream: Any, property_name: str, property_schema: dict) -> bool:
        if not {"type", "anyOf", "allOf", "oneOf"} & set(property_schema):
            return False
        return bool(super().evaluate(stream, property_name, property_schema))


def attribute_tests() -> SingerTestSuite:
    """singer-sdk's attribute suite, with `is_datetime` guarded as above."""
    tests = [
        AttributeIsDateTime if test is AttributeIsDateTimeTest else test
        for test in tap_stream_attribute_tests.tests
    ]
    return SingerTestSuite(kind="tap_stream_attribute", tests=tests)


def unavailable(reason: str) -> type:
    """A stand-in for a suite whose server is down: skipped with the reason, failed under CI."""

    class Unavailable:
        def test_server_is_answering(self) -> None:
            if IN_CI:
                pytest.fail(f"{reason} (CI must not skip)")
            pytest.skip(reason)

    return Unavailable


def tap_suite(
    tap_class: type,
    built: tuple[dict[str, Any], Source] | str,
    not_applicable: dict[tuple[str, str], str],
) -> type:
    """singer-sdk's tap test class for `tap_class` on a source; its `resource` drops the source."""
    if isinstance(built, str):
        return unavailable(built)
    config, source = built
    base = get_tap_test_class(
        tap_class,
        config=config,
        suite_config=SUITE,
        include_stream_attribute_tests=False,
        custom_suites=[attribute_tests()],
    )

    class Suite(NotApplicable, base):  # type: ignore[misc, valid-type]
        @pytest.fixture(scope="class")
        @classmethod
        def resource(cls) -> Iterator[None]:
            yield
            source.drop()

        def test_tap_sync_stops_at_max_records_limit(self, runner: TapTestRunner) -> None:
            """The suites' sync is singer-sdk's dry run, which reads at most `max_records_limit` records
            of a stream (as `--test` reads one): `readings` has more rows than that."""
            counts = {name.rpartition("-")[2]: len(records) for name, records in runner.records.items()}
            assert counts["readings"] == MAX_RECORDS

    Suite.not_applicable = not_applicable
    return Suite


TestTapFiles = tap_suite(
    TapFiles,
    files_source(),
    {
        ("test_tap_stream_record_matches_stream_schema", "shifts"): TIME_FORMAT,
        ("test_tap_stream_attribute_not_null", "orders.extra"): NULLABLE_JSON,
    },
)
TestTapPostgres = tap_suite(
    TapPostgres,
    postgres_source(),
    {
        ("test_tap_stream_record_matches_stream_schema", "shifts"): TIME_FORMAT,
        ("test_tap_stream_attribute_not_null", "customers.settings"): NULLABLE_JSON,
    },
)
TestTapMySQL = tap_suite(
    TapMySQL,
    mysql_source(),
    {
        ("test_tap_stream_record_matches_stream_schema", "shifts"): TIME_FORMAT,
        ("test_tap_stream_attribute_not_null", "customers.profile"): NULLABLE_JSON,
    },
)


def every_target_test() -> SingerTestSuite:
    """Every TargetTestTemplate of singer-sdk's target_tests (its `target_tests` suite leaves two out),
    and a plain run of each standard test stream that no template reads."""
    templates: list[type[TargetTestTemplate]] = [
        template
        for template in vars(target_tests_module).values()
        if isinstance(template, type) and issubclass(template, TargetTestTemplate) and template.name
    ]
    named = {template.name for template in templates}
    for stream in sorted(importlib.resources.files(target_test_streams).iterdir(), key=lambda p: p.name):
        name = stream.name.removesuffix(".singer")
        if stream.name.endswith(".singer") and name not in named:
            templates.append(type(f"Target_{name}", (TargetFileTestTemplate,), {"name": name}))
    return SingerTestSuite(kind="target", tests=templates)


def target_suite(target_class: type, config: dict[str, Any]) -> type:
    """singer-sdk's target test class for `target_class`, with every standard test and stream."""
    return get_target_test_class(
        target_class,
        config=config,
        suite_config=SUITE,
        include_target_tests=False,
        custom_suites=[every_target_test()],
    )


MULTIPLE_STATES = (
    "singer-sdk's multiple_state_messages test compares parsed STATE values with JSON strings, which "
    "never match (singer-sdk leaves it out of its target_tests suite)"
)
DUCKDB_PATH = Path(tempfile.gettempdir()) / f"elt-sdk-standard-{uuid.uuid4().hex[:10]}.duckdb"
PG_TARGET_CONFIG = {**POSTGRES, "default_target_schema": f"elt_sdk_target_{uuid.uuid4().hex[:10]}"}


DuckDBSuite = target_suite(TargetDuckDB, {"path": str(DUCKDB_PATH)})
PostgresSuite = target_suite(TargetPostgres, PG_TARGET_CONFIG)


class TestTargetDuckDB(NotApplicable, DuckDBSuite):  # type: ignore[misc, valid-type]
    not_applicable = {("test_target_multiple_state_messages", ""): MULTIPLE_STATES}

    @pytest.fixture(scope="class")
    @classmethod
    def resource(cls) -> Iterator[None]:
        yield
        DUCKDB_PATH.unlink(missing_ok=True)
        DUCKDB_PATH.with_name(DUCKDB_PATH.name + ".wal").unlink(missing_ok=True)


class TestTargetPostgres(NotApplicable, PostgresSuite):  # type: ignore[misc, valid-type]
    not_applicable = {
        ("test_target_multiple_state_messages", ""): MULTIPLE_STATES,
        ("test_target_encoded_string_data", ""): (
            "PostgreSQL text cannot hold NUL; the target refuses it with a hint unless "
            "sanitize_null_text_characters is set (see the test below)"
        ),
    }

    @pytest.fixture(scope="class")
    @classmethod
    def resource(cls, postgres_dsn: str) -> Iterator[None]:
        yield
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_TARGET_CONFIG['default_target_schema']} CASCADE")

    def test_target_encoded_string_data_without_nul(self, config: SuiteConfig, resource: None) -> None:
        """singer-sdk's encoded_string_data test, with the NUL characters PostgreSQL cannot hold removed."""
        runner = TargetTestRunner(
            TargetPostgres, config={**PG_TARGET_CONFIG, "sanitize_null_text_characters": True}
        )
        TargetEncodedStringData().run(config, resource, runner)
        schema = PG_TARGET_CONFIG["default_target_schema"]
        with psycopg.connect(POSTGRES_DSN) as conn:
            info = conn.execute(f"SELECT info FROM {schema}.test_strings WHERE id = 11").fetchone()
        assert info == ("Control Characters in string:  A \x01",)
