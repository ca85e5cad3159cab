"""Validation of alert rules and budgets, shared by the JSON API and the HTML forms."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.models import AlertRule, Budget, Condition, Metric, Window

RULE_FIELDS = ["name", "metric", "window", "condition", "threshold", "sensitivity", "environment", "service",
               "model", "recipients", "cooldown_minutes", "enabled", "min_requests"]


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
        super().validate(value)
        if not value:
            raise ValidationError("at least one recipient is required")
        if len(value) > 50:
            raise ValidationError("at most 50 recipients")
        for address in value:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValidationError(f"{address!r} is not a valid email address") from exc

    def prepare_value(self, value: Any) -> str:
        return ", ".join(value) if isinstance(value, list) else (value or "")


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


class AlertRuleForm(forms.ModelForm):
    recipients = RecipientsField(help_text="Comma-separated email addresses.")
    enabled = StrictBooleanField(required=False)
    cooldown_minutes = forms.IntegerField(required=False, min_value=0, max_value=10080,
                                          help_text="No new email for this rule within this many minutes.")
    min_requests = forms.IntegerField(required=False, min_value=0,
                                      help_text="Windows with fewer requests are not judged (rates, latency).")

    class Meta:
        model = AlertRule
        fields = RULE_FIELDS
        widgets = {"recipients": forms.Textarea(attrs={"rows": 2})}

    def clean_enabled(self) -> bool:
        value = self.cleaned_data.get("enabled")
        return True if value is None and "enabled" not in self.data else bool(value)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        condition = data.get("condition")
        for name in ("environment", "service", "model"):
            if data.get(name) == "":
                data[name] = None
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
            elif data.get("metric") in (Metric.ERROR_RATE, Metric.CACHE_HIT_RATE, Metric.RATELIMIT_REQUESTS_HEADROOM_MIN,
                                        Metric.RATELIMIT_INPUT_TOKENS_HEADROOM_MIN,
                                        Metric.RATELIMIT_OUTPUT_TOKENS_HEADROOM_MIN) and threshold > 1:
                self.add_error("threshold", "rates are fractions between 0 and 1 (0.05 = 5%)")
        if data.get("metric") in (Metric.COVERAGE, Metric.UNMETERED_COST_USD):
            # The provider reports per UTC day, for the whole project: nothing finer to judge.
            if data.get("window") and data.get("window") != "day":
                self.add_error("window", f"{data['metric']} is judged per UTC day: the window must be day, "
                                         f"not {data['window']}")
            if condition == Condition.ANOMALY:
                self.add_error("condition", f"{data['metric']} takes a threshold (above / below), not anomaly")
            for name in ("environment", "service", "model"):
                if data.get(name):
                    self.add_error(name, f"{data['metric']} is the provider's figure for the whole project: "
                                         f"it has no {name} scope")
        if data.get("cooldown_minutes") is None and "cooldown_minutes" not in self.errors:
            data["cooldown_minutes"] = 60
        if data.get("min_requests") is None and "min_requests" not in self.errors:
            data["min_requests"] = 20
        return data


class BudgetForm(forms.ModelForm):
    recipients = RecipientsField()

    class Meta:
        model = Budget
        fields = ["name", "period", "limit_usd", "environment", "service", "user_id", "recipients", "enabled"]

    def clean_limit_usd(self) -> Decimal | None:
        value = self.cleaned_data["limit_usd"]
        if value is not None and value <= 0:
            raise ValidationError("must be greater than 0")
        return value


class DigestForm(forms.Form):
    """The project's daily digest: on or off, and who gets it. Recipients are kept when it is
    switched off, so switching it back on needs no retyping."""

    enabled = forms.BooleanField(required=False, label="Send the daily digest")
    recipients = RecipientsField(help_text="Comma-separated email addresses.",
                                 widget=forms.Textarea(attrs={"rows": 2}))


def form_errors(form: forms.BaseForm) -> list[dict[str, str]]:
    return [{"field": field if field != "__all__" else "rule", "message": str(message)}
            for field, messages in form.errors.items() for message in messages]


def rule_as_dict(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk, "project": rule.project.slug, "name": rule.name, "metric": rule.metric,
        "window": rule.window, "condition": rule.condition, "threshold": rule.threshold,
        "sensitivity": rule.sensitivity, "environment": rule.environment, "service": rule.service,
        "model": rule.model, "recipients": rule.recipients, "cooldown_minutes": rule.cooldown_minutes,
        "min_requests": rule.min_requests, "enabled": rule.enabled,
        "created_at": rule.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": rule.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


__all__ = ["AlertRuleForm", "BudgetForm", "DigestForm", "Metric", "Window", "form_errors", "rule_as_dict"]
