"""`{% load form_tags %}`: what the shared form partials (templates/forms/) need of a form."""

from __future__ import annotations

from django import forms, template
from django.forms import BoundField

register = template.Library()


@register.filter
def invalid_fields(form: forms.BaseForm) -> list[BoundField]:
    """The form's fields that have errors, in the form's order (its own non-field errors aside)."""
    return [field for field in form if field.errors]
