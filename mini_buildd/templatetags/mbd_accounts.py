"""Template tags of the account pages: ``{% mbd_registration_enabled as var %}``."""

from django import template

register = template.Library()


@register.simple_tag
def mbd_registration_enabled():
    """Whether account registration is on (Django setting ``MBD_ALLOW_REGISTRATION``)."""
    from mini_buildd.webapp.views_account import registration_enabled  # pylint: disable=import-outside-toplevel
    return registration_enabled()
