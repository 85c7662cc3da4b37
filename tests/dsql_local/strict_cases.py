"""Statements for the strict-mode tests: what DSQL refuses, and what it runs."""

from __future__ import annotations

from typing import NamedTuple


class RefusedCase(NamedTuple):
    """A statement DSQL refuses, with what makes it runnable on PostgreSQL."""

    name: str
    sql: str
    message: str
    setup: tuple[str, ...] = ()  # autocommit, before; supported everywhere
    in_transaction: bool = False
    lax_prelude: tuple[str, ...] = ()  # in the transaction, only when not strict
    sqlstate: str = "0A000"


REFUSED: tuple[RefusedCase, ...] = (
    RefusedCase(
        "foreign-key-inline",
        "CREATE TABLE fk_child (id int PRIMARY KEY,"
        " parent_id int REFERENCES fk_parent (id))",
        "FOREIGN KEY constraint not supported",
        setup=("CREATE TABLE fk_parent (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "foreign-key-table-constraint",
        "CREATE TABLE fkt_child (id int PRIMARY KEY, parent_id int,"
        " FOREIGN KEY (parent_id) REFERENCES fkt_parent (id))",
        "FOREIGN KEY constraint not supported",
        setup=("CREATE TABLE fkt_parent (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "foreign-key-added",
        "ALTER TABLE fka_child ADD CONSTRAINT fka_fk"
        " FOREIGN KEY (parent_id) REFERENCES fka_parent (id)",
        "FOREIGN KEY constraint not supported",
        setup=(
            "CREATE TABLE fka_parent (id int PRIMARY KEY)",
            "CREATE TABLE fka_child (id int PRIMARY KEY, parent_id int)",
        ),
    ),
    RefusedCase(
        "temporary-table",
        "CREATE TEMPORARY TABLE tmp_rows (id int)",
        "TEMPORARY TABLE not supported",
    ),
    RefusedCase(
        "temp-table-short",
        "create temp table tmp_rows2 (id int)",
        "TEMPORARY TABLE not supported",
    ),
    RefusedCase(
        "trigger",
        "CREATE TRIGGER trg_t_noop BEFORE UPDATE ON trg_t"
        " FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "TRIGGER not supported",
        setup=("CREATE TABLE trg_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "plpgsql-function",
        "CREATE FUNCTION plpgsql_one() RETURNS int LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN 1; END $$",
        "LANGUAGE plpgsql not supported",
    ),
    RefusedCase(
        "plpgsql-procedure",
        "CREATE PROCEDURE plpgsql_noop() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$",
        "LANGUAGE plpgsql not supported",
    ),
    RefusedCase(
        "do-block",
        "DO $$ BEGIN PERFORM 1; END $$",
        "DO block not supported",
    ),
    RefusedCase(
        "create-extension",
        # plpgsql: the one extension every PostgreSQL build has (contrib's,
        # such as citext, are missing from some, e.g. pgserver's).
        "CREATE EXTENSION IF NOT EXISTS plpgsql",
        "CREATE EXTENSION not supported",
    ),
    RefusedCase(
        "truncate",
        "TRUNCATE trunc_t",
        "TRUNCATE not supported",
        setup=(
            "CREATE TABLE trunc_t (id int PRIMARY KEY)",
            "INSERT INTO trunc_t VALUES (1), (2)",
        ),
    ),
    RefusedCase(
        "savepoint",
        "SAVEPOINT sp",
        "SAVEPOINT not supported",
        in_transaction=True,
    ),
    RefusedCase(
        "release-savepoint",
        "RELEASE SAVEPOINT sp",
        "RELEASE SAVEPOINT not supported",
        in_transaction=True,
        lax_prelude=("SAVEPOINT sp",),
    ),
    RefusedCase(
        "rollback-to-savepoint",
        "ROLLBACK TO SAVEPOINT sp",
        "ROLLBACK TO SAVEPOINT not supported",
        in_transaction=True,
        lax_prelude=("SAVEPOINT sp",),
    ),
    RefusedCase("vacuum", "VACUUM", "VACUUM not supported"),
    RefusedCase(
        "vacuum-table",
        "VACUUM (ANALYZE) vac_t",
        "VACUUM not supported",
        setup=("CREATE TABLE vac_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "partitioned-table",
        "CREATE TABLE part_t (id int, at date) PARTITION BY RANGE (at)",
        "PARTITION BY not supported",
    ),
    RefusedCase(
        "create-table-as",
        "CREATE TABLE ctas_t AS SELECT 1 AS x",
        "CREATE TABLE AS not supported",
    ),
    RefusedCase(
        "select-into",
        "SELECT 1 AS x INTO select_into_t",
        "SELECT INTO not supported",
    ),
    RefusedCase(
        "materialized-view",
        "CREATE MATERIALIZED VIEW mat_v AS SELECT 1 AS x",
        "MATERIALIZED VIEW not supported",
    ),
    RefusedCase(
        "advisory-lock",
        "SELECT pg_advisory_lock(42)",
        "advisory lock function pg_advisory_lock not supported",
    ),
    RefusedCase(
        "advisory-xact-lock-nested",
        "SELECT x FROM (SELECT pg_catalog.pg_try_advisory_xact_lock(7) AS x) AS s",
        "advisory lock function pg_try_advisory_xact_lock not supported",
        in_transaction=True,
    ),
    RefusedCase(
        "declare-cursor",
        "DECLARE cur CURSOR FOR SELECT 1",
        "DECLARE CURSOR not supported",
        in_transaction=True,
    ),
    RefusedCase(
        "alter-column-type",
        "ALTER TABLE altc_t ALTER COLUMN x TYPE bigint",
        "ALTER TABLE ... ALTER COLUMN not supported",
        setup=("CREATE TABLE altc_t (id int PRIMARY KEY, x int)",),
    ),
    RefusedCase(
        "alter-column-default",
        "ALTER TABLE altd_t ALTER COLUMN x SET DEFAULT 0",
        "ALTER TABLE ... ALTER COLUMN not supported",
        setup=("CREATE TABLE altd_t (id int PRIMARY KEY, x int)",),
    ),
    RefusedCase(
        "serial",
        "CREATE TABLE serial_t (id serial PRIMARY KEY)",
        "SERIAL not supported",
    ),
    RefusedCase(
        "bigserial",
        "CREATE TABLE bigserial_t (id BIGSERIAL PRIMARY KEY)",
        "BIGSERIAL not supported",
    ),
    RefusedCase(
        "sequence-cache",
        "CREATE SEQUENCE seq_small_cache CACHE 100",
        "sequence CACHE 100 not supported: use CACHE 1 or >= 65536",
    ),
    RefusedCase(
        "identity-cache",
        "CREATE TABLE idc_t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000))",
        "sequence CACHE 1000 not supported: use CACHE 1 or >= 65536",
    ),
    RefusedCase(
        "alter-sequence-cache",
        "ALTER SEQUENCE seq_alter CACHE 2",
        "sequence CACHE 2 not supported: use CACHE 1 or >= 65536",
        setup=("CREATE SEQUENCE seq_alter CACHE 1",),
    ),
    RefusedCase(
        "identity-not-bigint",
        "CREATE TABLE idint_t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
        "IDENTITY column of type int4 not supported: use BIGINT",
    ),
    RefusedCase(
        "sequence-not-bigint",
        "CREATE SEQUENCE seq_int AS integer",
        "sequence of type int4 not supported: use BIGINT",
    ),
    RefusedCase(
        "serial-added",
        "ALTER TABLE addser_t ADD COLUMN n serial",
        "SERIAL not supported",
        setup=("CREATE TABLE addser_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "foreign-key-added-column",
        "ALTER TABLE addfk_child ADD COLUMN parent_id int REFERENCES addfk_parent",
        "FOREIGN KEY constraint not supported",
        setup=(
            "CREATE TABLE addfk_parent (id int PRIMARY KEY)",
            "CREATE TABLE addfk_child (id int PRIMARY KEY)",
        ),
    ),
    RefusedCase("listen", "LISTEN some_channel", "LISTEN not supported"),
    RefusedCase("notify", "NOTIFY some_channel, 'hello'", "NOTIFY not supported"),
    RefusedCase(
        "pg-notify",
        "SELECT pg_notify('some_channel', 'hello')",
        "NOTIFY not supported",
    ),
)

# Refused by the backend (it alone can see rows), not by the statement check.
INDEX_ON_ROWS = RefusedCase(
    "create-index-on-rows",
    "CREATE INDEX idx_rows_x ON idx_rows (x)",
    "CREATE INDEX on a table with rows not supported, use CREATE INDEX ASYNC",
    setup=(
        "CREATE TABLE idx_rows (id int PRIMARY KEY, x int)",
        "INSERT INTO idx_rows VALUES (1, 1), (2, 2)",
    ),
)

# Ordinary statements DSQL runs, in an order that works on an empty schema,
# one per autocommit transaction. ``CREATE INDEX ASYNC`` answers a job id.
CORPUS: tuple[str, ...] = (
    "CREATE SCHEMA strict_corpus",
    "SET search_path = strict_corpus, public",
    "CREATE TABLE customers (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    " name text NOT NULL, email varchar(255) UNIQUE,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE orders ("
    "id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 65536) PRIMARY KEY,"
    " customer_id uuid NOT NULL,"
    " amount numeric(10, 2) NOT NULL CHECK (amount >= 0),"
    " status text NOT NULL DEFAULT 'new',"
    " placed_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,"
    " payload text)",
    "CREATE SEQUENCE invoice_numbers CACHE 65536",
    "CREATE INDEX events_payload_idx ON events (payload)",
    "CREATE INDEX ASYNC orders_customer_idx ON orders (customer_id)",
    "CREATE UNIQUE INDEX ASYNC customers_name_idx ON customers (name)",
    "CREATE VIEW order_totals AS"
    " SELECT customer_id, sum(amount) AS total, count(*) AS n"
    " FROM orders GROUP BY customer_id",
    "ALTER TABLE customers ADD COLUMN tier text",
    "CREATE FUNCTION order_count(c uuid) RETURNS bigint LANGUAGE sql STABLE"
    " AS $$ SELECT count(*) FROM orders WHERE customer_id = c $$",
    "INSERT INTO customers (name, email) VALUES"
    " ('Ada', 'ada@example.com'), ('Grace', 'grace@example.com'), ('Linus', NULL)",
    "INSERT INTO orders (customer_id, amount)"
    " SELECT id, 10.50 FROM customers WHERE name = 'Ada'",
    "INSERT INTO orders (customer_id, amount, status)"
    " SELECT id, 99.99, 'paid' FROM customers WHERE name = 'Grace' RETURNING id",
    "INSERT INTO events (payload)"
    """ VALUES ('{"kind": "signup", "tags": ["a", "b"]}')""",
    "INSERT INTO customers (name, email) VALUES ('Ada Two', 'ada@example.com')"
    " ON CONFLICT (email) DO NOTHING",
    "INSERT INTO customers (name, email) VALUES ('Grace', 'grace2@example.com')"
    " ON CONFLICT (name) DO UPDATE SET email = EXCLUDED.email",
    "SELECT * FROM customers ORDER BY name",
    "SELECT c.name, o.amount FROM customers AS c"
    " JOIN orders AS o ON o.customer_id = c.id WHERE o.amount > 5",
    "SELECT c.name, count(o.id) FROM customers AS c"
    " LEFT JOIN orders AS o ON o.customer_id = c.id"
    " GROUP BY c.name HAVING count(o.id) >= 0 ORDER BY 2 DESC, 1",
    "WITH big AS (SELECT * FROM orders WHERE amount > 50) SELECT count(*) FROM big",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)"
    " SELECT sum(i) FROM n",
    "SELECT id, amount, rank() OVER (ORDER BY amount DESC),"
    " sum(amount) OVER (PARTITION BY customer_id) FROM orders",
    "SELECT row_number() OVER w, lag(amount) OVER w FROM orders"
    " WINDOW w AS (ORDER BY placed_at)",
    "SELECT payload::jsonb ->> 'kind', jsonb_array_length(payload::jsonb -> 'tags')"
    " FROM events",
    "SELECT json_build_object('name', name, 'email', email) FROM customers",
    "SELECT jsonb_agg(name ORDER BY name) FROM customers",
    "SELECT '[1, 2, 3]'::json -> 1, '{\"a\": {\"b\": 2}}'::jsonb #>> '{a,b}'",
    "SELECT gen_random_uuid() IS NOT NULL",
    "SELECT nextval('invoice_numbers')",
    "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
    "UPDATE orders SET status = 'shipped' WHERE status = 'paid'",
    "UPDATE customers SET tier = 'gold' FROM orders"
    " WHERE orders.customer_id = customers.id AND orders.amount > 50",
    "DELETE FROM events WHERE payload IS NULL",
    "DELETE FROM customers WHERE email IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = customers.id)"
    " RETURNING name",
    "SELECT name, order_count(id) FROM customers",
    "SELECT * FROM order_totals",
    "SELECT count(*) FROM sys.jobs",
    "SELECT name FROM customers WHERE name ILIKE 'a%' UNION SELECT 'x'",
    "SELECT coalesce(tier, 'basic'), count(*) FROM customers GROUP BY 1",
    "SELECT date_trunc('day', placed_at), sum(amount) FROM orders GROUP BY 1",
    "SELECT CASE WHEN amount > 50 THEN 'big' ELSE 'small' END FROM orders",
    "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders)",
    "SELECT string_agg(name, ', ' ORDER BY name) FROM customers",
    "SELECT now() - interval '1 day' < now()",
    "SELECT current_user, current_schema()",
    "SHOW search_path",
    "EXPLAIN SELECT * FROM orders WHERE id = 1",
    "SELECT * FROM generate_series(1, 3) AS g(i)",
    "SELECT o.id FROM orders AS o WHERE EXISTS"
    " (SELECT 1 FROM customers AS c WHERE c.id = o.customer_id) LIMIT 5 OFFSET 0",
    "SELECT amount::text || ' USD', lower(status), length(status) FROM orders",
    "WITH moved AS (UPDATE orders SET status = 'done' WHERE status = 'shipped'"
    " RETURNING id) SELECT count(*) FROM moved",
    "ALTER TABLE customers RENAME COLUMN tier TO level",
    "DROP VIEW order_totals",
    "DROP INDEX events_payload_idx",
    "DROP TABLE events",
)
