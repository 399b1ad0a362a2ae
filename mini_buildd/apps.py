"""Django app configuration: model signals (Uploader per user, m2m change tracking)."""

from django.apps import AppConfig


class MiniBuilddConfig(AppConfig):
    name = "mini_buildd"
    verbose_name = "mini-buildd"
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        from mini_buildd.models import signals  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
