"""Template tags of API calls next to the objects they act on (issue #18), driven by the call
registry (:mod:`mini_buildd.api.registry`): ``{% mbd_call "reindex" repositories=repo.identity %}``.

- Nothing is shown to a user the call would refuse (its authorization, or the scope of an API
  token).
- A call that changes nothing (authorization NONE, no confirmation) is a link to its form page
  with the arguments filled in: the page runs it and shows the result.
- Any other call is a small POST form to its form page: the arguments as hidden fields, a
  confirmation checkbox when the call needs one (the browser refuses to submit without it), the
  button, and a "…" link to the full form with these arguments filled in (not run).

Unknown calls or argument names raise (a template error the page tests catch).
"""

import html
import urllib.parse

from django import template
from django.middleware.csrf import get_token
from django.utils.safestring import mark_safe

from mini_buildd.api import registry

register = template.Library()


def _values(value):
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


@register.simple_tag(takes_context=True)
def mbd_call(context, name, label=None, **args):
    """The call ``name`` with ``args`` (argument identities) as a link or a small form; '' if the
    page's user may not run it."""
    call = registry.CALLS[name]
    unknown = set(args) - {a.identity for a in call.args}
    if unknown:
        raise template.TemplateSyntaxError(f"mbd_call {name}: unknown arguments {sorted(unknown)}")
    request = context.get("request")
    try:
        call.check_auth(getattr(request, "user", None))
    except registry.Problem:
        return ""
    e = html.escape
    pairs = [(k, v) for k, value in args.items() for v in _values(value)]
    form_url = f"/mini_buildd/api/{name}/?" + urllib.parse.urlencode(pairs + [("output", "html")])
    title = e(call.summary)
    text = e(label or name)
    if call.auth == registry.Auth.NONE and not call.needs_confirmation:
        return mark_safe(f'<a class="mbd-call" href="{e(form_url)}" title="{title}">{text}</a>')
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in pairs + [("output", "html")])
    csrf = f'<input type="hidden" name="csrfmiddlewaretoken" value="{e(get_token(request))}">'
    confirm = ""
    if call.needs_confirmation:
        confirm = (f'<label class="mbd-confirm"><input type="checkbox" name="confirm" value="{e(name)}" required '
                   f'aria-label="confirm {e(name)}"> confirm</label>')
    return mark_safe(f'<form class="mbd-call" method="post" action="/mini_buildd/api/{e(name)}/">{csrf}{hidden}{confirm}'
                     f'<button type="submit" title="{title}">{text}</button>'
                     f'<a class="mbd-call-form" href="{e(form_url)}" title="{e(name)}: the full form">…</a></form>')
