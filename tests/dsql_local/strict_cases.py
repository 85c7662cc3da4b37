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
        "foreign-key-added",
        "ALTER TABLE fka_child ADD CONSTRAINT fka_fk"
        " FOREIGN KEY (parent_id) REFERENCES fka_parent (id)",
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
        setup=(
            "CREATE TABLE fka_parent (id int PRIMARY KEY)",
            "CREATE TABLE fka_child (id int PRIMARY KEY, parent_id int)",
        ),
    ),
    RefusedCase(
        "temporary-table",
        "CREATE TEMPORARY TABLE tmp_rows (id int)",
        "TEMPORARY or TEMP table not supported for CREATE TABLE",
    ),
    RefusedCase(
        "temp-table-short",
        "create temp table tmp_rows2 (id int)",
        "TEMPORARY or TEMP table not supported for CREATE TABLE",
    ),
    RefusedCase(
        "trigger",
        "CREATE TRIGGER trg_t_noop BEFORE UPDATE ON trg_t"
        " FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "CREATE TRIGGER not supported",
        setup=("CREATE TABLE trg_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "plpgsql-function",
        "CREATE FUNCTION plpgsql_one() RETURNS int LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN 1; END $$",
        "CREATE FUNCTION with language plpgsql not supported",
    ),
    RefusedCase(
        "plpgsql-procedure",
        "CREATE PROCEDURE plpgsql_noop() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$",
        "PROCEDURE is not supported",
    ),
    RefusedCase(
        "do-block",
        "DO $$ BEGIN PERFORM 1; END $$",
        "DO block not supported",
    ),
    RefusedCase(
        "create-extension",
        # plpgsql: the one extension every PostgreSQL build has (contrib's,
        # such as citext, are missing from some minimal builds).
        "CREATE EXTENSION IF NOT EXISTS plpgsql",
        "unsupported statement: CreateExtension",
    ),
    RefusedCase(
        "truncate",
        "TRUNCATE trunc_t",
        "unsupported statement: Truncate",
        setup=(
            "CREATE TABLE trunc_t (id int PRIMARY KEY)",
            "INSERT INTO trunc_t VALUES (1), (2)",
        ),
    ),
    RefusedCase(
        "savepoint",
        "SAVEPOINT sp",
        "unsupported transaction statement: SAVEPOINT",
        in_transaction=True,
    ),
    RefusedCase(
        "release-savepoint",
        "RELEASE SAVEPOINT sp",
        "unsupported transaction statement: RELEASE",
        in_transaction=True,
        lax_prelude=("SAVEPOINT sp",),
    ),
    RefusedCase(
        "rollback-to-savepoint",
        "ROLLBACK TO SAVEPOINT sp",
        "unsupported transaction statement: ROLLBACK TO",
        in_transaction=True,
        lax_prelude=("SAVEPOINT sp",),
    ),
    RefusedCase("vacuum", "VACUUM", "unsupported VACUUM statement"),
    RefusedCase(
        "vacuum-table",
        "VACUUM (ANALYZE) vac_t",
        "unsupported VACUUM statement",
        setup=("CREATE TABLE vac_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "partitioned-table",
        "CREATE TABLE part_t (id int, at date) PARTITION BY RANGE (at)",
        "PARTITION BY clause not supported for CREATE TABLE",
    ),
    RefusedCase(
        "create-table-as",
        "CREATE TABLE ctas_t AS SELECT 1 AS x",
        "unsupported statement: CreateTableAs",
    ),
    RefusedCase(
        "select-into",
        "SELECT 1 AS x INTO select_into_t",
        "SELECT INTO not supported",
    ),
    RefusedCase(
        "materialized-view",
        "CREATE MATERIALIZED VIEW mat_v AS SELECT 1 AS x",
        "unsupported statement: CreateTableAs",
    ),
    RefusedCase(
        "advisory-lock",
        "SELECT pg_advisory_lock(42)",
        "function pg_advisory_lock not supported",
    ),
    RefusedCase(
        "advisory-xact-lock-nested",
        "SELECT x FROM (SELECT pg_catalog.pg_try_advisory_xact_lock(7) AS x) AS s",
        "function pg_try_advisory_xact_lock not supported",
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
        "unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement",
        setup=("CREATE TABLE altc_t (id int PRIMARY KEY, x int)",),
    ),
    RefusedCase(
        "alter-column-set-not-null",
        "ALTER TABLE altn_t ALTER COLUMN x SET NOT NULL",
        "unsupported ALTER TABLE ALTER COLUMN ... SET NOT NULL statement",
        setup=("CREATE TABLE altn_t (id int PRIMARY KEY, x int)",),
    ),
    RefusedCase(
        "serial",
        "CREATE TABLE serial_t (id serial PRIMARY KEY)",
        'type "serial" does not exist',
        sqlstate="42704",
    ),
    RefusedCase(
        "bigserial",
        "CREATE TABLE bigserial_t (id BIGSERIAL PRIMARY KEY)",
        'type "bigserial" does not exist',
        sqlstate="42704",
    ),
    RefusedCase(
        "sequence-cache",
        "CREATE SEQUENCE seq_small_cache CACHE 100",
        "CACHE (100) must be greater than or equal to 65536 or equal to 1",
        sqlstate="22023",  # a data exception, as on DSQL
    ),
    RefusedCase(
        "identity-cache",
        "CREATE TABLE idc_t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000))",
        "CACHE (1000) must be greater than or equal to 65536 or equal to 1",
        sqlstate="22023",  # a data exception, as on DSQL
    ),
    RefusedCase(
        "alter-sequence-cache",
        "ALTER SEQUENCE seq_alter CACHE 2",
        "CACHE (2) must be greater than or equal to 65536 or equal to 1",
        setup=("CREATE SEQUENCE seq_alter CACHE 1",),
        sqlstate="22023",  # a data exception, as on DSQL
    ),
    RefusedCase(
        "identity-not-bigint",
        "CREATE TABLE idint_t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
        "datatype integer not supported, identity column type must be bigint",
    ),
    RefusedCase(
        "sequence-not-bigint",
        "CREATE SEQUENCE seq_int AS integer CACHE 1",
        "datatype integer not supported, sequence type must be bigint",
        sqlstate="22023",  # a data exception, as on DSQL
    ),
    RefusedCase(
        "serial-added",
        "ALTER TABLE addser_t ADD COLUMN n serial",
        'type "serial" does not exist',
        sqlstate="42704",
        setup=("CREATE TABLE addser_t (id int PRIMARY KEY)",),
    ),
    RefusedCase(
        "foreign-key-added-column",
        "ALTER TABLE addfk_child ADD COLUMN parent_id int REFERENCES addfk_parent",
        "ALTER TABLE ADD COLUMN with constraint not supported",
        setup=(
            "CREATE TABLE addfk_parent (id int PRIMARY KEY)",
            "CREATE TABLE addfk_child (id int PRIMARY KEY)",
        ),
    ),
    RefusedCase("listen", "LISTEN some_channel", "unsupported statement: Listen"),
    RefusedCase(
        "notify", "NOTIFY some_channel, 'hello'", "unsupported statement: Notify"
    ),
    RefusedCase(
        "pg-notify",
        "SELECT pg_notify('some_channel', 'hello')",
        "function pg_notify not supported",
    ),
)

# Refused by the backend (it alone can see rows), not by the statement check.
INDEX_ON_ROWS = RefusedCase(
    "create-index-on-rows",
    "CREATE INDEX idx_rows_x ON idx_rows (x)",
    "unsupported mode. please use CREATE INDEX ASYNC.",
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
    "CREATE TABLE lines (id bigint PRIMARY KEY,"
    " order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,"
    " note text)",
    "CREATE TABLE notes (id bigint PRIMARY KEY, order_id bigint,"
    " FOREIGN KEY (order_id) REFERENCES orders (id)"
    " MATCH SIMPLE ON UPDATE NO ACTION DEFERRABLE INITIALLY DEFERRED)",
    "ALTER TABLE lines ALTER COLUMN note SET DEFAULT 'none'",
    "ALTER TABLE lines ALTER COLUMN note DROP DEFAULT",
    "ALTER TABLE lines ALTER COLUMN order_id DROP NOT NULL",
    "ALTER TABLE notes ADD CONSTRAINT notes_lines_fk"
    " FOREIGN KEY (id) REFERENCES lines (id) NOT VALID",
    "ALTER TABLE notes ADD CONSTRAINT notes_id_positive CHECK (id > 0) NOT VALID",
    "ALTER TABLE notes DROP CONSTRAINT notes_id_positive",
    "ALTER TABLE notes ADD COLUMN extra text",
    "ALTER TABLE notes DROP COLUMN extra",
    "CREATE SEQUENCE invoice_numbers CACHE 65536",
    # Synchronous on an empty table, once the session allows it.
    "SET disable_sync_create_index = off",
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
