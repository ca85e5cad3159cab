"""templates/tables/_table.html: the data table the alerts, keys and prices pages share, and
forms/_post_button.html, the one-button form in their rows."""

from __future__ import annotations

from django.template import engines
from django.template.loader import render_to_string


def test_the_columns_template_gives_the_header_once_then_each_row():
    html = " ".join(
        render_to_string(
            "tables/_table.html",
            {"rows": ["a", "b"], "class": "keys", "columns": "pricing/_override_columns.html"},
        ).split()
    )
    assert '<table class="data keys">' in html
    assert html.count("<th>Model</th>") == 1
    assert html.count("<tr data-override=") == 2


def test_no_rows_says_the_empty_line_instead_of_a_table():
    html = render_to_string("tables/_table.html", {"rows": [], "empty": "No keys yet.", "columns": "x.html"})
    assert "<table" not in html
    assert '<p class="subtle">No keys yet.</p>' in html


def test_the_post_button_posts_to_its_action_with_the_csrf_token():
    template = engines["django"].from_string(
        '{% include "forms/_post_button.html" with action="/projects/acme/keys/1/revoke" label="Revoke" %}'
    )
    html = " ".join(template.render({"csrf_token": "tok"}).split())
    assert '<form method="post" action="/projects/acme/keys/1/revoke" class="inline-form">' in html
    assert 'value="tok"' in html
    assert '<button type="submit" class="button button-small button-danger">Revoke</button>' in html
