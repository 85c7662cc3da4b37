"""NOT NULL lifted: from a column added by 0002 (only its CHECK goes), and
from one made with its table (DROP NOT NULL; its check constraint stays)."""

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
        migrations.AlterField(
            model_name="book",
            name="copies",
            field=models.PositiveIntegerField(default=1, null=True),
        ),
    ]
