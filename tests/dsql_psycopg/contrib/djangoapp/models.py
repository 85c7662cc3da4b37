from __future__ import annotations

import uuid

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=200, unique=True)
    email = models.EmailField(blank=True, null=True)
    nickname = models.CharField(max_length=30, default="anon")
    status = models.CharField(max_length=10, default="new", null=True)
    age = models.PositiveSmallIntegerField(null=True)
    joined = models.DateField(null=True, db_index=True)

    class Meta:
        indexes = (models.Index(fields=["email"], name="author_email_idx"),)


class Tag(models.Model):
    id = models.SmallAutoField(primary_key=True)
    slug = models.SlugField()


class Book(models.Model):
    id = models.BigAutoField(primary_key=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, blank=True, related_name="books")
    title = models.CharField(max_length=200, db_index=True)
    summary = models.TextField(blank=True)
    pages = models.IntegerField()
    words = models.BigIntegerField(default=0)
    copies = models.PositiveIntegerField(default=1, null=True)
    edition = models.SmallIntegerField(default=1)
    rating = models.PositiveSmallIntegerField(null=True)
    in_print = models.BooleanField(default=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    weight = models.FloatField(null=True)
    published = models.DateField()
    added = models.DateTimeField(auto_now_add=True)
    reading_time = models.DurationField(null=True)
    opens_at = models.TimeField(null=True)
    isbn = models.UUIDField(default=uuid.uuid4, unique=True)
    metadata = models.JSONField(default=dict)
    cover = models.BinaryField(null=True)
    homepage = models.URLField(blank=True)
    ip = models.GenericIPAddressField(null=True)

    class Meta:
        indexes = (models.Index(fields=["published", "in_print"]),)


class Profile(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    author = models.OneToOneField(Author, on_delete=models.CASCADE)
    bio = models.TextField()


class Counter(models.Model):
    name = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)


class Hit(models.Model):
    counter = models.ForeignKey(Counter, on_delete=models.CASCADE)
    at = models.DateTimeField(auto_now_add=True)


# A graph of keys made by 0004 with their constraints: a self-reference, a
# cycle (Shelf.room refers to a table created after Shelf's), an explicit
# many-to-many through table and an automatic one.
class Shelf(models.Model):
    label = models.CharField(max_length=50)
    parent = models.ForeignKey(
        "self", null=True, on_delete=models.CASCADE, related_name="children"
    )
    room = models.ForeignKey(
        "Room", null=True, on_delete=models.CASCADE, related_name="shelves"
    )
    books = models.ManyToManyField(Book, through="Placement", related_name="shelves")
    tags = models.ManyToManyField(Tag, related_name="shelves")


class Room(models.Model):
    name = models.CharField(max_length=50)
    main_shelf = models.ForeignKey(
        Shelf, null=True, on_delete=models.SET_NULL, related_name="+"
    )


class Placement(models.Model):
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE)
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    position = models.IntegerField(default=0)
