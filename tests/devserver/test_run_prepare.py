"""`make run`'s preparation: a demo superuser, a demo viewer of project demo, a demo key, once."""

from __future__ import annotations

import stat

from django.contrib.auth import authenticate, get_user_model

from devserver.run import _prepare
from projects.models import Membership


def test_prepare_makes_the_demo_logins_once_and_keeps_their_passwords(db, tmp_path):
    admin_password, viewer_password, key, first_start = _prepare(tmp_path)
    assert first_start
    assert key.startswith("tly_")
    assert admin_password != viewer_password
    for name in ("demo-admin-password", "demo-viewer-password", "demo-ingest-key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "demo-viewer-password").read_text() == viewer_password
    admin = authenticate(username="admin", password=admin_password)
    assert admin is not None
    assert admin.is_superuser
    viewer = authenticate(username="viewer", password=viewer_password)
    assert viewer is not None
    assert not viewer.is_superuser
    assert not viewer.is_staff
    assert [(m.project.slug, m.role) for m in Membership.objects.filter(user=viewer)] == [("demo", "viewer")]

    again = _prepare(tmp_path)
    assert again == (admin_password, viewer_password, key, False)
    assert get_user_model().objects.count() == 2
    assert Membership.objects.count() == 1
