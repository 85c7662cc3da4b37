from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from dsql_psycopg.contrib.django import retry_atomic

from .models import Counter, Hit

#: How many times `hit` has started, retries included (tests read it).
RUNS = {"hit": 0}


@require_POST
@retry_atomic(base_delay=0.001, max_delay=0.01)
def hit(request: HttpRequest, name: str) -> JsonResponse:
    """Count a hit: one row per hit, and the counter bumped once."""
    RUNS["hit"] += 1
    counter, _ = Counter.objects.get_or_create(name=name)
    counter.value += 1
    counter.save(update_fields=["value"])
    Hit.objects.create(counter=counter)
    return JsonResponse({"name": name, "value": counter.value})
