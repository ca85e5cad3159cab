from django.http import HttpResponse


def events_post(request):  # type: ignore[no-untyped-def]
    return HttpResponse(status=501)

