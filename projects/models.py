"""Projects, their environments and the keys that write to / read from them."""

from __future__ import annotations

from django.db import models


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    # Raw events older than this are dropped (aggregates are kept much longer).
    raw_retention_days = models.PositiveIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Environment(models.Model):
    """dev / staging / prod of one project. A key belongs to exactly one environment."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.SlugField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="environment_unique_name")]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"


class IngestKey(models.Model):
    class Scope(models.TextChoices):
        INGEST = "ingest", "ingest (write events)"
        READ = "read", "read (query API)"
        ADMIN = "admin", "admin (rules, budgets)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=200, blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.INGEST)
    # The secret is shown once; only its SHA-256 is kept. Keys are 256-bit random, so a
    # fast hash is safe here (no dictionary to attack) and keeps auth at one index probe.
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="First characters of the key, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope}, {self.environment})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Membership(models.Model):
    """A user's role in a project. Superusers are admins of every project without a row."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "viewer (dashboards)"
        ADMIN = "admin", "admin (keys, rules, prices, retention)"

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"
