"""templates/forms/: the one set of form partials every page's forms render with."""

from __future__ import annotations

import re
from pathlib import Path

from django import forms
from django.template.loader import render_to_string

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class RangeForm(forms.Form):
    name = forms.CharField()
    low = forms.IntegerField()
    high = forms.IntegerField()

    def clean(self) -> dict[str, object]:
        raise forms.ValidationError("low must be below high")


def test_no_page_keeps_a_form_partial_of_its_own():
    partials = {"_field.html", "_checkbox.html", "_form_errors.html"}
    copies = [p for p in TEMPLATES.rglob("*.html") if p.name in partials and p.parent.name != "forms"]
    assert copies == []
    included = {
        m
        for p in TEMPLATES.rglob("*.html")
        for m in re.findall(r'{% include "([^"]*/_(?:field|checkbox|form_errors)\.html)"', p.read_text())
    }
    assert included == {"forms/_field.html", "forms/_checkbox.html", "forms/_form_errors.html"}


def test_the_errors_summary_names_each_invalid_field_then_the_forms_own_errors():
    form = RangeForm({"name": "", "low": "x", "high": "3"})
    assert not form.is_valid()
    html = " ".join(render_to_string("forms/_form_errors.html", {"form": form}).split())
    assert (
        "<strong>Nothing was saved.</strong> Fix the 2 fields marked below: "
        '<a href="#id_name" class="mono">name</a>, <a href="#id_low" class="mono">low</a>. '
        '<p class="field-error">low must be below high</p> </div>'
    ) in html

    only_form_error = RangeForm({"name": "n", "low": "1", "high": "3"})
    assert not only_form_error.is_valid()
    html = " ".join(
        render_to_string("forms/_form_errors.html", {"form": only_form_error, "lead": "Not logged in."}).split()
    )
    assert "Fix the" not in html
    assert '<strong>Not logged in.</strong> <p class="field-error">low must be below high</p>' in html


def test_a_field_is_marked_with_its_errors_and_help():
    form = RangeForm({"name": "", "low": "1", "high": "2"})
    form.is_valid()
    html = render_to_string("forms/_field.html", {"form": form, "field": form["name"], "help": "Who it is."})
    assert 'class="field field-invalid" data-field="name"' in html
    assert '<p class="help" id="id_name_helptext">Who it is.</p>' in html
    assert '<p class="field-error" id="id_name_error" data-error-for="name">This field is required.</p>' in html
