"""Django app configuration: model signals (Uploader per user, m2m change tracking), and the model
hooks (:mod:`mini_buildd.models.hooks`) plugged in from the layers above the models."""

from django.apps import AppConfig

from mini_buildd.archive import release


class MiniBuilddConfig(AppConfig):
    """The Django app ``mini_buildd``."""

    name = "mini_buildd"
    verbose_name = "mini-buildd"
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        # Only now: these import the models, which must not be imported before the app registry is ready.
        # pylint: disable=import-outside-toplevel
        from mini_buildd.models import hooks, signals  # noqa: F401  pylint: disable=unused-import
        from mini_buildd.pipeline import remotes
        hooks.plug(release.check_source, remotes)
