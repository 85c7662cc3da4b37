"""NOT NULL lifted from a column added by 0002: only its CHECK goes."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("djangoapp", "0002_dsql_alterations")]

    operations = [
        migrations.AlterField(
            model_name="author",
            name="status",
            field=models.CharField(default="new", max_length=10, null=True),
        ),
    ]
