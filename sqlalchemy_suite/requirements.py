"""What Aurora DSQL supports, in the terms of SQLAlchemy's dialect suite.

`SuiteRequirements` leaves most features closed; a dialect opens what its
database has. Here: what PostgreSQL has and DSQL keeps (see the DSQL SQL
surface), and closed what DSQL lacks, each with the reason.
"""

from __future__ import annotations

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


def _yes() -> exclusions.compound:
    return exclusions.open()


def _no(reason: str) -> exclusions.compound:
    return exclusions.closed(reason)


class Requirements(SuiteRequirements):
    """DSQL's features: PostgreSQL's, less what DSQL refuses."""

    # -- DDL -------------------------------------------------------------
    table_ddl_if_exists = _yes()
    index_ddl_if_exists = _yes()
    schema_create_delete = _yes()
    create_or_replace_view = _yes()
    views = _yes()
    identity_columns = _yes()
    identity_columns_standard = _yes()
    computed_columns = _yes()
    computed_columns_stored = _yes()
    computed_columns_reflect_persisted = _yes()
    computed_columns_default_persisted = _yes()  # DSQL's are STORED
    deferrable_fks = _yes()  # DEFERRABLE applies to foreign keys in DSQL
    server_defaults = _yes()
    expression_server_defaults = _yes()
    unicode_ddl = _yes()
    # DSQL: no temporary tables or views, no materialized views.
    temporary_tables = _no("TEMPORARY TABLE not supported")
    temp_table_reflection = _no("TEMPORARY TABLE not supported")
    temp_table_names = _no("TEMPORARY TABLE not supported")
    has_temp_table = _no("TEMPORARY TABLE not supported")
    temporary_views = _no("TEMPORARY VIEW not supported")
    # DSQL: CREATE INDEX ASYNC takes no ASC/DESC on a key.
    indexes_with_ascdesc = _no("specifying sort order not supported for index keys")
    reflect_indexes_with_ascdesc = _no("no ASC/DESC index keys to reflect")
    indexes_with_expressions = _yes()  # since 2026-08-13
    reflect_indexes_with_expressions = _yes()
    indexes_check_column_order = _yes()
    index_reflects_included_columns = _yes()

    # -- reflection ------------------------------------------------------
    cross_schema_fk_reflection = _yes()
    foreign_key_constraint_name_reflection = _yes()
    implicit_default_schema = _yes()
    default_schema_name_switch = _yes()
    reflects_pk_names = _yes()
    reflect_tables_no_columns = _yes()
    comment_reflection = _yes()
    comment_reflection_full_unicode = _yes()
    constraint_comment_reflection = _yes()
    foreign_key_constraint_option_reflection_ondelete = _yes()
    fk_constraint_option_reflection_ondelete_restrict = _yes()
    fk_constraint_option_reflection_ondelete_noaction = _yes()
    foreign_key_constraint_option_reflection_onupdate = _yes()
    fk_constraint_option_reflection_onupdate_restrict = _yes()
    inline_check_constraint_reflection = _yes()
    check_constraint_reflection = _yes()
    reflect_table_options = _yes()
    unique_constraints_reflect_as_index = _yes()
    # DSQL collates in C only: no COLLATE on columns.
    column_collation_reflection = _no("COLLATE not supported")

    # -- SQL -------------------------------------------------------------
    nullsordering = _yes()
    boolean_col_expressions = _yes()
    intersect = _yes()
    except_ = _yes()
    window_functions = _yes()
    window_range = _yes()
    window_range_numeric = _yes()
    window_range_non_numeric = _yes()
    ctes = _yes()
    ctes_with_update_delete = _yes()
    ctes_with_values = _yes()
    ctes_on_dml = _yes()
    tuple_in = _yes()
    table_value_constructor = _yes()
    update_from = _yes()
    delete_from = _yes()
    mod_operator_as_percent_sign = _yes()
    order_by_label_with_expression = _yes()
    aggregate_order_by = _yes()
    supports_distinct_on = _yes()
    regexp_match = _yes()
    regexp_replace = _yes()
    fetch_first = _yes()
    fetch_ties = _yes()
    fetch_no_order_by = _yes()
    fetch_offset_with_options = _yes()
    fetch_expression = _yes()
    supports_bitwise_or = _yes()
    supports_bitwise_and = _yes()
    supports_bitwise_not = _yes()
    supports_bitwise_xor = _yes()
    supports_bitwise_shift = _yes()
    autocommit = _yes()

    # -- types -----------------------------------------------------------
    uuid_data_type = _yes()
    json_type = _yes()  # JSON and JSONB columns since 2026
    # DSQL has arrays at run time only, not as column types.
    array_type = _no("datatype ...[] not supported")
    datetime_interval = _yes()
    datetime_literals = _yes()
    datetime_timezone = _yes()
    time_timezone = _yes()
    timestamp_microseconds = _yes()
    datetime_historic = _yes()
    date_historic = _yes()
    datetime_timezone_historic = _yes()
    precision_numerics_enotation_small = _yes()
    precision_numerics_many_significant_digits = _yes()
    precision_numerics_retains_significant_digits = _yes()
    infinity_floats = _yes()
