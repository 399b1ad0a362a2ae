"""Field validators shared by the configuration models (identity regexes, URLs, block names)."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

daemon_identity = RegexValidator(r"^[a-zA-Z0-9-]+$", "Identity may only contain letters, digits and '-'.")
repository_identity = RegexValidator(r"^[a-z0-9]+$", "Repository identity may only contain lower case letters and digits.")
suite_name = RegexValidator(r"^[a-z]+$", "Suite name may only contain lower case letters.")
codename = RegexValidator(r"^[a-z0-9][a-z0-9.+~-]*$", "Not a valid codename.")


def archive_url(value):
    """An archive URL: http(s)/ftp/file scheme, ending with exactly one '/'."""
    if not re.match(r"^(https?|ftp|file)://", value):
        raise ValidationError(f"Archive URL must start with http://, https://, ftp:// or file:// (got '{value}').")
    if not value.endswith("/") or value.endswith("//"):
        raise ValidationError(f"Archive URL must end with exactly one '/' (got '{value}').")


def regex(value):
    try:
        re.compile(value)
    except re.error as e:
        raise ValidationError(f"Not a valid regular expression: {e}") from e


def shebang_script(value):
    if value and not value.startswith("#!"):
        raise ValidationError("A script must start with a shebang line ('#!').")


def key_id(value):
    if value and not re.match(r"^(0x)?[0-9A-Fa-f]{8,40}$", value):
        raise ValidationError("A key id must be 8 to 40 hexadecimal digits.")
