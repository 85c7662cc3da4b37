"""Changes DSQL cannot make in place, run on tables that already have rows.

- AddField with a default: a bare ADD COLUMN, then the rows are filled in,
  NOT NULL and checks as CHECK ... NOT VALID constraints;
- AlterField to null=True: DROP NOT NULL;
- AlterField of max_length: no DDL at all (CharField is an unbounded varchar);
- unique removed from a field (a constraint) and from unique_together (an index);
- AddIndex on a table with rows: CREATE INDEX ASYNC.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("djangoapp", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="author",
            name="nickname",
            field=models.CharField(default="anon", max_length=30),
        ),
        migrations.AddField(
            model_name="author",
            name="status",
            field=models.CharField(default="new", max_length=10),
        ),
        migrations.AddField(
            model_name="author",
            name="age",
            field=models.PositiveSmallIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="author",
            name="joined",
            field=models.DateField(db_index=True, null=True),
        ),
        migrations.AlterField(
            model_name="author",
            name="email",
            field=models.EmailField(blank=True, max_length=254, null=True),
        ),
        migrations.AlterField(
            model_name="author",
            name="name",
            field=models.CharField(max_length=200, unique=True),
        ),
        migrations.AddIndex(
            model_name="author",
            index=models.Index(fields=["email"], name="author_email_idx"),
        ),
        migrations.AlterField(
            model_name="tag",
            name="slug",
            field=models.SlugField(),
        ),
        migrations.AlterUniqueTogether(name="book", unique_together=set()),
    ]
