"""Keys with constraints: inline where the table referred to exists (the
self-reference, Room's key to Shelf, the through tables), else added NOT VALID
and validated (Shelf.room, whose table comes after Shelf's)."""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("djangoapp", "0003_status_nullable")]

    operations = [
        migrations.CreateModel(
            name="Shelf",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("label", models.CharField(max_length=50)),
                (
                    "parent",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="children",
                        to="djangoapp.shelf",
                    ),
                ),
                (
                    "tags",
                    models.ManyToManyField(related_name="shelves", to="djangoapp.tag"),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Room",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("name", models.CharField(max_length=50)),
                (
                    "main_shelf",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="djangoapp.shelf",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="shelf",
            name="room",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="shelves",
                to="djangoapp.room",
            ),
        ),
        migrations.CreateModel(
            name="Placement",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("position", models.IntegerField(default=0)),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        to="djangoapp.book",
                    ),
                ),
                (
                    "shelf",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        to="djangoapp.shelf",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="shelf",
            name="books",
            field=models.ManyToManyField(
                related_name="shelves",
                through="djangoapp.Placement",
                to="djangoapp.book",
            ),
        ),
    ]
