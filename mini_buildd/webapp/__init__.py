"""The Django side: settings for one instance home, and the one-time Django set-up.

Call :func:`setup` once per process (after :func:`mini_buildd.config.init`) before importing any
model module.
"""

import logging
import os
import secrets

from mini_buildd import config

LOG = logging.getLogger(__name__)

_DONE = False


def secret_key(paths):
    """Read the instance's Django secret key; create it (mode 0600) on first use."""
    path = paths.django_secret_key
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(64))
    os.chmod(path, 0o600)
    return path.read_text().strip()


def email_settings(smtp_url, hostname):
    """Django e-mail settings (password reset, account activation) from the daemon's ``--smtp`` URL.

    Without one, mail goes to the local MTA (localhost:25).
    """
    result = {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
              "DEFAULT_FROM_EMAIL": f"mini-buildd@{hostname}", "EMAIL_TIMEOUT": 30}
    if smtp_url:
        from mini_buildd import notify  # pylint: disable=import-outside-toplevel
        smtp = notify.parse_smtp_url(smtp_url)
        result.update({"EMAIL_HOST": smtp.host, "EMAIL_PORT": smtp.port, "EMAIL_HOST_USER": smtp.user,
                       "EMAIL_HOST_PASSWORD": smtp.password, "EMAIL_USE_SSL": smtp.ssl})
    return result


def endpoint_host(endpoint):
    """The host (interface) a twisted endpoint string listens on, or None (all addresses)."""
    for part in endpoint.replace("\\:", "\0").split(":")[1:]:
        key, _sep, value = part.partition("=")
        if key == "interface" and value:
            return value.replace("\0", ":").strip("[]")
    return None


def allowed_hosts(hostname, http_endpoints):
    """``ALLOWED_HOSTS``: the instance's ``--hostname``, the HTTP endpoints' addresses and the
    loopback names (never ``*``: the Host header goes into password-reset and activation links)."""
    hosts = [hostname]
    hosts += [h for h in (endpoint_host(ep) for ep in http_endpoints) if h and h not in ("0.0.0.0", "::")]
    hosts += ["localhost", "127.0.0.1", "::1", "[::1]"]
    result = []
    for host in hosts:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        if host and host not in result:
            result.append(host)
    return result


def _endpoint_tls(endpoint):
    return endpoint.split(":", 1)[0] in ("ssl", "tls")


def settings_dict(paths, debug=False):
    """Django settings for the instance home ``paths``."""
    hostname = config.runtime.hostname
    endpoints = list(getattr(config.runtime, "http_endpoints", []) or [])
    return {
        "DEBUG": debug,
        "SECRET_KEY": secret_key(paths),
        "ALLOWED_HOSTS": allowed_hosts(hostname, endpoints),
        "CSRF_TRUSTED_ORIGINS": [f"http://{hostname}", f"https://{hostname}"],
        # Cookies: never sent on cross-site requests; the session cookie is not readable by scripts;
        # Secure when every endpoint is HTTPS (on mixed endpoints the middleware marks them per request).
        "SESSION_COOKIE_SAMESITE": "Strict",
        "CSRF_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SECURE": bool(endpoints) and all(_endpoint_tls(ep) for ep in endpoints),
        "CSRF_COOKIE_SECURE": bool(endpoints) and all(_endpoint_tls(ep) for ep in endpoints),
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "X_FRAME_OPTIONS": "DENY",
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(paths.config_db),
                                  "OPTIONS": {"timeout": 30}}},
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "TIME_ZONE": "UTC",
        "USE_TZ": True,
        "USE_I18N": False,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "mini_buildd",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "mini_buildd.webapp.security.Middleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "mini_buildd.webapp.tokenauth.Middleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "ROOT_URLCONF": "mini_buildd.webapp.urls",
        "TEMPLATES": [{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [str(config.PACKAGE_DIR / "webapp" / "templates")],
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mini_buildd.webapp.context.instance",
            ]},
        }],
        "STATIC_URL": "/static/",
        "LOGIN_URL": "/accounts/login/",
        "LOGIN_REDIRECT_URL": "/",
        "LOGOUT_REDIRECT_URL": "/",
        "SESSION_COOKIE_NAME": "mini_buildd_sessionid",
        **email_settings(getattr(config.runtime, "smtp", None), hostname),
        # Account registration (/accounts/register/) with e-mail activation: off unless enabled.
        "MBD_ALLOW_REGISTRATION": bool(getattr(config.runtime, "allow_registration", False)),
        "LOGGING_CONFIG": None,
        "MIGRATION_MODULES": {},
    }


def setup(paths, debug=False):
    """Configure and set up Django for ``paths`` (idempotent within one process)."""
    global _DONE  # pylint: disable=global-statement
    if _DONE:
        return
    import django  # pylint: disable=import-outside-toplevel
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    settings.configure(**settings_dict(paths, debug))
    django.setup()
    _DONE = True


def migrate():
    """Bring the instance database schema up to date."""
    from django.core.management import call_command  # pylint: disable=import-outside-toplevel
    call_command("migrate", interactive=False, verbosity=0)


def set_admin_password(password):
    """Create or update the Django superuser ``admin``."""
    from django.contrib.auth.models import User  # pylint: disable=import-outside-toplevel
    user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    LOG.info("Admin user %s.", "created" if created else "password updated")
