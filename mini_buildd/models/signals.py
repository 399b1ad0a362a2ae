"""Model signals: an Uploader for every user, and m2m edits marking status models changed."""

from django.conf import settings
from django.db.models.signals import post_save, m2m_changed

from mini_buildd.models.base import StatusModel
from mini_buildd.models.user import Uploader


def _create_uploader(sender, instance, created, raw=False, **kwargs):  # pylint: disable=unused-argument
    if created and not raw:  # raw: loaded from a fixture (--loaddata), which brings its own Uploaders
        Uploader.objects.get_or_create(user=instance)


def _m2m_changed(sender, instance, action, **kwargs):  # pylint: disable=unused-argument
    if isinstance(instance, StatusModel) and action in ("post_add", "post_remove", "post_clear") \
       and not getattr(instance, "_mbd_internal_m2m", False):
        # Fields set by checks (e.g. Source.archives) are not configuration.
        field = next((f for f in instance._meta.many_to_many if f.remote_field.through is sender), None)
        if field is not None and field.editable:
            instance.mbd_set_changed()


post_save.connect(_create_uploader, sender=settings.AUTH_USER_MODEL, dispatch_uid="mbd_create_uploader")
m2m_changed.connect(_m2m_changed, dispatch_uid="mbd_m2m_changed")
