"""Validation of a provider connection and of a reconciliation range, shared by the JSON API and
the HTML pages (one declaration of each shape)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from providers.models import ProviderConnection

MAX_IDS = 100
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# Printable ASCII without spaces: what Anthropic keys are made of. Anything else is a paste error.
_KEY = re.compile(r"^[\x21-\x7e]{8,512}$")
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7


class IdListField(forms.Field):
    """A JSON list of Anthropic IDs, or (from an HTML form) a comma/space/newline-separated string."""

    def __init__(self, *, prefix: str, **kwargs: Any) -> None:
        self.prefix = prefix
        super().__init__(required=False, **kwargs)

    def to_python(self, value: Any) -> list[str]:
        if value in (None, "", []):
            return []
        if isinstance(value, str):
            value = [part for part in re.split(r"[\s,]+", value) if part]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("must be a list of strings")
        return list(dict.fromkeys(value))  # duplicates add nothing to a filter

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_IDS:
            raise ValidationError(f"at most {MAX_IDS} IDs")
        for item in value:
            if not _ID.match(item):
                raise ValidationError(f"{item[:40]!r} is not an ID (letters, digits, _ and -, e.g. {self.prefix}...)")

    def prepare_value(self, value: Any) -> str:
        return ", ".join(value) if isinstance(value, list) else (value or "")


class ProviderConnectionForm(forms.Form):
    """`admin_key` is required for a new connection and optional for an update (keeps the stored one)."""

    provider = forms.ChoiceField(choices=ProviderConnection.Provider.choices, required=False)
    admin_key = forms.CharField(
        required=False,
        strip=True,
        label="Anthropic Admin API key",
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "sk-ant-admin..."}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the stored key.",
    )
    api_key_ids = IdListField(
        prefix="apikey_",
        label="Anthropic API key IDs (optional)",
        help_text="Only count usage of these API keys, e.g. apikey_01Ab…, comma-separated.",
    )
    workspace_ids = IdListField(
        prefix="wrkspc_",
        label="Workspace IDs (optional)",
        help_text="Only count usage in these workspaces, e.g. wrkspc_01Ab…",
    )

    def __init__(self, *args: Any, connected: bool = False, **kwargs: Any) -> None:
        self.connected = connected
        super().__init__(*args, **kwargs)

    def clean_admin_key(self) -> str | None:
        value = self.cleaned_data.get("admin_key") or ""
        if not value:
            if not self.connected:
                raise ValidationError("an Admin API key is required to connect")
            return None
        if not _KEY.match(value):
            raise ValidationError("doesn't look like an API key (8-512 printable characters, no spaces)")
        return value


def _date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError({field: f"{value[:40]!r} is not a date (YYYY-MM-DD)"}) from None


def range_parse(params: Any, *, today: date) -> tuple[date, date]:
    """`from`/`to` (inclusive dates, UTC; default the last 7 days to today). Raises
    ValidationError naming the field."""
    start, end = _date(params.get("from"), "from"), _date(params.get("to"), "to")
    end = end or today
    start = start or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise ValidationError({"from": "must not be after to"})
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValidationError({"from": f"the range may span at most {MAX_RANGE_DAYS} days"})
    return start, end
