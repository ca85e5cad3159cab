"""Validation of alert rules and budgets, shared by the JSON API and the HTML forms."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.channels import ChannelError, channel_encrypt, channels_masked, channels_resolve, channels_stored
from alerts.models import AlertRule, Budget, Condition, Metric, Per, Window
from alerts.selectors import per_problem

RULE_FIELDS = [
    "name",
    "metric",
    "window",
    "condition",
    "threshold",
    "sensitivity",
    "environment",
    "service",
    "model",
    "recipients",
    "cooldown_minutes",
    "enabled",
    "min_requests",
    "per",
]
CHANNELS_HELP = (
    "One Apprise URL per line (json://host/path, slack://TokenA/TokenB/TokenC, msteams://..., "
    "discord://..., pagerduty://...). Stored encrypted and shown masked: leave a masked line as it "
    "is to keep that channel, delete the line to remove it."
)


class RecipientsField(forms.Field):
    """A JSON list of addresses, or (from an HTML form) a comma/newline-separated string."""

    def to_python(self, value: Any) -> list[str]:
        if value in (None, "", []):
            return []
        if isinstance(value, str):
            value = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("must be a list of email addresses")
        return value

    def validate(self, value: list[str]) -> None:
        # Empty is allowed here: a rule needs a recipient *or* a channel (ChannelsMixin checks both).
        super().validate(value)
        if len(value) > 50:
            raise ValidationError("at most 50 recipients")
        for address in value:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValidationError(f"{address!r} is not a valid email address") from exc

    def prepare_value(self, value: Any) -> str:
        return ", ".join(value) if isinstance(value, list) else (value or "")


class ChannelsField(forms.Field):
    """A JSON list of Apprise URLs, or (from an HTML form) one per line. Validated against the
    stored ones by ChannelsMixin, which knows what a masked line stands for."""

    widget = forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"})

    def to_python(self, value: Any) -> list[str]:
        if value in (None, "", []):
            return []
        if isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("must be a list of notification URLs (Apprise syntax)")
        return value

    def prepare_value(self, value: Any) -> str:
        return "\n".join(value) if isinstance(value, list) else (value or "")


class ChannelsMixin:
    """`channels` beside `recipients`: resolves masked lines to the stored URLs, validates new ones
    with Apprise, and requires a recipient or a channel. The result, `cleaned_data["channels"]`,
    is clear URLs; `channels_encrypted` is what gets stored."""

    cleaned_data: dict[str, Any]

    def _channels_setup(self, stored_tokens: list[str]) -> None:
        self._stored_channels = channels_stored(stored_tokens)
        cast(forms.BaseForm, self).initial.setdefault("channels", channels_masked(stored_tokens))

    def clean_channels(self) -> list[str]:
        try:
            return channels_resolve(self.cleaned_data.get("channels") or [], stored=self._stored_channels)
        except ChannelError as exc:
            raise ValidationError(str(exc)) from exc

    def _require_destination(self, data: dict[str, Any], *, needed: bool = True) -> None:
        if needed and "recipients" in data and "channels" in data and not data["recipients"] and not data["channels"]:
            cast(forms.BaseForm, self).add_error("recipients", "at least one recipient or channel is required")

    @property
    def channels_encrypted(self) -> list[str]:
        return [channel_encrypt(url) for url in self.cleaned_data.get("channels", [])]


class StrictBooleanField(forms.Field):
    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        if value in ("true", "on", "1"):
            return True
        if value in ("false", "off", "0"):
            return False
        raise ValidationError("must be true or false")


class AlertRuleForm(ChannelsMixin, forms.ModelForm):
    recipients = RecipientsField(required=False, help_text="Comma-separated email addresses.")
    channels = ChannelsField(required=False, help_text=CHANNELS_HELP)
    enabled = StrictBooleanField(required=False)
    cooldown_minutes = forms.IntegerField(
        required=False, min_value=0, max_value=10080, help_text="No new email for this rule within this many minutes."
    )
    min_requests = forms.IntegerField(
        required=False, min_value=0, help_text="Windows with fewer requests are not judged (rates, latency)."
    )
    per = forms.ChoiceField(
        required=False,
        choices=[("", "nothing: the whole scope as one"), *((v, f"each {label}") for v, label in Per.choices)],
    )

    class Meta:
        model = AlertRule
        fields = RULE_FIELDS
        widgets = {"recipients": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channels_setup(self.instance.channels_encrypted)

    def clean_enabled(self) -> bool:
        value = self.cleaned_data.get("enabled")
        return True if value is None and "enabled" not in self.data else bool(value)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        condition = data.get("condition")
        for name in ("environment", "service", "model", "per"):
            if data.get(name) == "":
                data[name] = None
        if data.get("per"):
            problem = per_problem(
                per=data["per"],
                metric=data.get("metric"),
                window=data.get("window"),
                condition=condition,
                scope={n: data.get(n) for n in ("service", "model")},
            )
            if problem:
                self.add_error("per", problem)
        if condition in (Condition.ABOVE, Condition.BELOW):
            if data.get("threshold") is None:
                self.add_error("threshold", "a threshold is required for above / below")
            if data.get("sensitivity") is not None:
                self.add_error("sensitivity", "sensitivity is only for anomaly rules")
        elif condition == Condition.ANOMALY:
            if data.get("threshold") is not None:
                self.add_error("threshold", "anomaly rules take a sensitivity, not a threshold")
            sensitivity = data.get("sensitivity")
            if sensitivity is None:
                data["sensitivity"] = 3.0
            elif not 0.5 <= sensitivity <= 20:
                self.add_error("sensitivity", "must be between 0.5 and 20")
        threshold = data.get("threshold")
        if threshold is not None:
            if threshold < 0:
                self.add_error("threshold", "must not be negative")
            elif (
                data.get("metric")
                in (
                    Metric.ERROR_RATE,
                    Metric.CACHE_HIT_RATE,
                    Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
                    Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN,
                    Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN,
                )
                and threshold > 1
            ):
                self.add_error("threshold", "rates are fractions between 0 and 1 (0.05 = 5%)")
        if data.get("metric") in (Metric.COVERAGE, Metric.UNMETERED_COST_USD):
            # The provider reports per UTC day, for the whole project: nothing finer to judge.
            if data.get("window") and data.get("window") != "day":
                self.add_error(
                    "window", f"{data['metric']} is judged per UTC day: the window must be day, not {data['window']}"
                )
            if condition == Condition.ANOMALY:
                self.add_error("condition", f"{data['metric']} takes a threshold (above / below), not anomaly")
            for name in ("environment", "service", "model"):
                if data.get(name):
                    self.add_error(
                        name, f"{data['metric']} is the provider's figure for the whole project: it has no {name} scope"
                    )
        if data.get("cooldown_minutes") is None and "cooldown_minutes" not in self.errors:
            data["cooldown_minutes"] = 60
        if data.get("min_requests") is None and "min_requests" not in self.errors:
            data["min_requests"] = 20
        self._require_destination(data)
        if "channels" in data:
            self.instance.channels_encrypted = self.channels_encrypted
        return data


BUDGET_FIELDS = [
    "name",
    "period",
    "limit_usd",
    "environment",
    "service",
    "user_id",
    "recipients",
    "enabled",
    "warn_on_forecast",
]


class BudgetForm(ChannelsMixin, forms.ModelForm):
    recipients = RecipientsField(required=False)
    channels = ChannelsField(required=False, help_text=CHANNELS_HELP)

    class Meta:
        model = Budget
        fields = BUDGET_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channels_setup(self.instance.channels_encrypted)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._require_destination(data)
        if "channels" in data:
            self.instance.channels_encrypted = self.channels_encrypted
        return data

    def clean_limit_usd(self) -> Decimal | None:
        value = self.cleaned_data["limit_usd"]
        if value is not None and value <= 0:
            raise ValidationError("must be greater than 0")
        return value


class DigestForm(ChannelsMixin, forms.Form):
    """The project's daily digest: on or off, who gets it, and the project's channels (which get
    the digest too). Both are kept when it is switched off, so switching it back on needs no
    retyping. `stored_channels`: the project's channels as stored (Fernet tokens)."""

    enabled = forms.BooleanField(required=False, label="Send the daily digest")
    recipients = RecipientsField(
        required=False, help_text="Comma-separated email addresses.", widget=forms.Textarea(attrs={"rows": 2})
    )
    channels = ChannelsField(required=False, label="Project channels", help_text=CHANNELS_HELP)

    def __init__(self, *args: Any, stored_channels: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channels_setup(stored_channels or [])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._require_destination(data, needed=bool(data.get("enabled")))
        return data


def form_errors(form: forms.BaseForm) -> list[dict[str, str]]:
    return [
        {"field": field if field != "__all__" else "rule", "message": str(message)}
        for field, messages in form.errors.items()
        for message in messages
    ]


def rule_as_dict(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "project": rule.project.slug,
        "name": rule.name,
        "metric": rule.metric,
        "window": rule.window,
        "condition": rule.condition,
        "threshold": rule.threshold,
        "sensitivity": rule.sensitivity,
        "environment": rule.environment,
        "service": rule.service,
        "model": rule.model,
        "recipients": rule.recipients,
        "channels": channels_masked(rule.channels_encrypted),
        "cooldown_minutes": rule.cooldown_minutes,
        "min_requests": rule.min_requests,
        "enabled": rule.enabled,
        "per": rule.per,
        "created_at": rule.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": rule.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def budget_as_dict(budget: Budget) -> dict[str, Any]:
    """A budget as the API shows it (and as PATCH merges into): every form field, scope "" as null."""
    return {
        "id": budget.pk,
        "project": budget.project.slug,
        "name": budget.name,
        "period": budget.period,
        "limit_usd": float(budget.limit_usd),
        "environment": budget.environment or None,
        "service": budget.service or None,
        "user_id": budget.user_id or None,
        "recipients": budget.recipients,
        "channels": channels_masked(budget.channels_encrypted),
        "enabled": budget.enabled,
        "warn_on_forecast": budget.warn_on_forecast,
        "created_at": budget.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def json_types(fields: dict[str, forms.Field]) -> dict[str, tuple[type, ...]]:
    """The JSON type each of a form's `base_fields` accepts, read from the form itself, so a field
    added to the form is accepted by the API without a second list to keep in step. A field of a
    kind not listed here is type-checked by its own validation only."""
    types: dict[str, tuple[type, ...]] = {}
    for name, field in fields.items():
        if isinstance(field, (forms.BooleanField, StrictBooleanField)):
            types[name] = (bool,)
        elif isinstance(field, (forms.DecimalField, forms.FloatField)):  # both subclass IntegerField
            types[name] = (int, float)
        elif isinstance(field, forms.IntegerField):
            types[name] = (int,)
        elif isinstance(field, (forms.CharField, forms.ChoiceField)):
            types[name] = (str,)
        elif isinstance(field, RecipientsField):
            types[name] = (list,)
        else:
            types[name] = (object,)
    return types


__all__ = [
    "AlertRuleForm",
    "BudgetForm",
    "DigestForm",
    "Metric",
    "Window",
    "budget_as_dict",
    "form_errors",
    "json_types",
    "rule_as_dict",
]
