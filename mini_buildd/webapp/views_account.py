"""Views of the account pages: registration with e-mail activation (``/accounts/register/``,
``/accounts/activate/<uidb64>/<token>/``) and the user's profile (``/accounts/profile/``: GnuPG key
for uploads, subscriptions, API tokens (:mod:`mini_buildd.webapp.views_tokens`), webhooks
(:mod:`mini_buildd.webapp.views_webhooks`)). Log in/out and
password reset are Django's own views (templates in ``templates/registration/``).

Registration is off unless the administrator enables it: Django setting
``MBD_ALLOW_REGISTRATION`` (see :func:`mini_buildd.webapp.settings_dict`). A registered user is
inactive until the link mailed to them is opened.

Key and subscription changes go through the API calls ``set_user_key``, ``subscribe`` and
``unsubscribe`` (:func:`mini_buildd.api.registry.execute`): one implementation.
"""

import logging

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import DatabaseError
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from mini_buildd.api import registry
from mini_buildd.webapp import forms_calls, views_tokens, views_webhooks

LOG = logging.getLogger(__name__)


def registration_enabled():
    return bool(getattr(settings, "MBD_ALLOW_REGISTRATION", False))


class RegistrationForm(UserCreationForm):
    """User name, e-mail (required, unused so far) and password twice."""

    email = forms.EmailField(required=True, help_text="The activation link is sent to this address.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("There already is an account with this e-mail address.")
        return email


def _from_email():
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    try:
        return models.Daemon.get().email_address
    except DatabaseError:  # no usable database (yet): the settings' default
        return settings.DEFAULT_FROM_EMAIL


def register(request):
    """Sign up: create an inactive user and mail the activation link."""
    if not registration_enabled():
        return render(request, "registration/registration_closed.html", status=404)
    if request.method == "POST":
        form = RegistrationForm(request.POST)
        if form.is_valid():
            user = form.save(commit=False)
            user.is_active = False
            user.save()
            link = request.build_absolute_uri(reverse("mbd-activate", kwargs={
                "uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user)}))
            context = {"user": user, "link": link, "identity": _identity()}
            try:
                send_mail(f"[mini-buildd-{context['identity']}] Activate your account {user.username}",
                          render_to_string("registration/activation_email.txt", context), _from_email(), [user.email])
            except Exception as e:  # pylint: disable=broad-except  # request boundary: the form says the mail could not be sent
                LOG.error("Registration of %s: activation mail to %s failed: %s", user.username, user.email, e)
                user.delete()
                form.add_error(None, "The activation mail could not be sent; please try again later or ask the administrator.")
                return render(request, "registration/register.html", {"form": form}, status=503)
            LOG.info("Registered user %s <%s> (inactive until activation).", user.username, user.email)
            return render(request, "registration/register_done.html", {"email": user.email})
        return render(request, "registration/register.html", {"form": form}, status=400)
    return render(request, "registration/register.html", {"form": RegistrationForm()})


def _identity():
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    try:
        return models.Daemon.get().identity
    except DatabaseError:  # no usable database (yet): no identity
        return ""


def activate(request, uidb64, token):
    """The activation link: activate the user if the token is valid."""
    if not registration_enabled():
        return render(request, "registration/registration_closed.html", status=404)
    user_model = get_user_model()
    try:
        user = user_model.objects.get(pk=urlsafe_base64_decode(uidb64).decode())
    except (TypeError, ValueError, OverflowError, user_model.DoesNotExist):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        return render(request, "registration/activation_failed.html", status=400)
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
        LOG.info("Activated user %s.", user.username)
    return render(request, "registration/activation_done.html", {"activated_user": user})


# ------------------------------------------------------------------------------------------------ profile
def _run(request, name, data):
    """Run API call ``name`` (its form bound to ``data``, confirmed). Returns the form (errors inside) and success."""
    call = registry.CALLS[name]
    values = dict(data)
    if call.needs_confirmation:
        values["confirm"] = name
    form = forms_calls.call_form(call, _Data(values), request.user)
    status, result = form.run()
    return form, status == 200, result


class _Data(dict):
    def getlist(self, key):
        value = self.get(key)
        return [] if value is None else [value]


@login_required
def profile(request):
    """The user's uploader key, subscriptions and API tokens."""
    from mini_buildd import models  # pylint: disable=import-outside-toplevel
    key_form = sub_form = None
    status = 200
    token_form = token_created = None
    webhook_state = {}
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "set_key":
            key_form, ok, _r = _run(request, "set_user_key", {"key": request.POST.get("key", "")})
            if ok:
                messages.success(request, "Your GnuPG key has been set: staff must (re)activate it before you can upload with it.")
                return redirect("mbd-profile")
        elif action in ("subscribe", "unsubscribe"):
            sub_form, ok, result = _run(request, action, {"source": request.POST.get("source", ""),
                                                          "distribution": request.POST.get("distribution", "")})
            if ok:
                if action == "subscribe":
                    messages.success(request, "Subscribed." if result["created"] else "You already had this subscription.")
                else:
                    messages.success(request, f"Unsubscribed ({len(result)} removed).")
                return redirect("mbd-profile")
        elif action in views_tokens.ACTIONS:
            token_form, ok, token_created = _run(request, action, views_tokens.call_data(action, request.POST))
            if ok and action == "token_revoke":
                messages.success(request, f"API token {token_created['token']} revoked.")
                return redirect("mbd-profile")
        elif action in views_webhooks.ACTIONS:
            response, webhook_state = views_webhooks.post(request, action, _run)
            if response is not None:
                return response
        else:
            messages.error(request, "Unknown action.")
        status = 200 if token_created or webhook_state.get("created") else 400
    uploader, _created = models.Uploader.objects.get_or_create(user=request.user)
    context = {
        "uploader": uploader,
        "may_upload_to": uploader.may_upload_to.order_by("identity"),
        "subscriptions": models.Subscription.objects.filter(subscriber=request.user).order_by("package", "distribution"),
        "key_form": key_form, "sub_form": sub_form,
        "key_value": request.POST.get("key", "") if key_form else "",
        "sub_values": {"source": request.POST.get("source", ""), "distribution": request.POST.get("distribution", "")} if sub_form else {},
        **views_tokens.context(request, None if token_created else token_form, token_created),
        **views_webhooks.context(request, webhook_state),
    }
    return render(request, "registration/profile.html", context, status=status)
