"""The price override form of the project admin pages (projects/views.py). It only parses and
validates; pricing.services writes."""

from __future__ import annotations

import re
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError

from pricing.models import PriceOverride

if TYPE_CHECKING:
    from projects.models import Project

_USD: dict[str, Any] = {"max_digits": 14, "decimal_places": 6, "min_value": Decimal(0)}


class PriceOverrideForm(forms.ModelForm):
    effective_from = forms.DateTimeField(
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Events at or after this instant use these prices.",
    )
    input_usd_per_mtok = forms.DecimalField(**_USD, label="Input $/MTok")
    output_usd_per_mtok = forms.DecimalField(**_USD, label="Output $/MTok")
    cache_read_usd_per_mtok = forms.DecimalField(
        **_USD, required=False, label="Cache read $/MTok", help_text="Empty: 0.1 x input."
    )
    cache_write_5m_usd_per_mtok = forms.DecimalField(
        **_USD, required=False, label="Cache write 5m $/MTok", help_text="Empty: 1.25 x input."
    )
    cache_write_1h_usd_per_mtok = forms.DecimalField(
        **_USD, required=False, label="Cache write 1h $/MTok", help_text="Empty: 2 x input."
    )
    batch_multiplier = forms.DecimalField(
        max_digits=6, decimal_places=4, min_value=Decimal(0), max_value=Decimal(10), initial=Decimal("0.5")
    )

    class Meta:
        model = PriceOverride
        fields = [
            "model",
            "effective_from",
            "input_usd_per_mtok",
            "output_usd_per_mtok",
            "cache_read_usd_per_mtok",
            "cache_write_5m_usd_per_mtok",
            "cache_write_1h_usd_per_mtok",
            "batch_multiplier",
            "note",
        ]
        widgets = {"note": forms.TextInput()}

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.instance.project = project

    def clean_model(self) -> str:
        model = self.cleaned_data["model"].strip()
        if "*" in model[:-1]:
            raise ValidationError('"*" may only be the last character (a model-id prefix).')
        if model == "*":
            raise ValidationError('A prefix needs at least one character before "*".')
        if not re.fullmatch(r"[\w.:/@*-]+", model):
            raise ValidationError("Model ids are letters, digits and . : / @ - _ (no spaces).")
        return model

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        model, start = data.get("model"), data.get("effective_from")
        if model and start:
            data["effective_from"] = start = start.astimezone(UTC)
            if PriceOverride.objects.filter(project=self.project, model=model, effective_from=start).exists():
                raise ValidationError("This project already has an override for this model from this instant.")
        return data
