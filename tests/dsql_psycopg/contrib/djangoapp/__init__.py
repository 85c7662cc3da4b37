"""A Django app with a model per common field type, migrated on DSQL Local."""
