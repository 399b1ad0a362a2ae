"""Behaviour the models get from the layers above them, plugged in once the Django app is ready
(:meth:`mini_buildd.apps.MiniBuilddConfig.ready` calls :func:`plug`), so that no model module
imports :mod:`mini_buildd.archive` or :mod:`mini_buildd.pipeline` (which use the models):

- :func:`check_source`: check a Source against its archives and record what they say
  (:func:`mini_buildd.archive.release.check_source`);
- :func:`remotes`: how we talk to a Remote (:mod:`mini_buildd.pipeline.remotes`: ``fetch_key(remote)``,
  ``check(remote)``; failures raise its ``RemoteError``, a remote that does not know us yet its
  ``NotKnownYet``).
"""

_PLUGGED = {}


def plug(check_source_function, remotes_protocol):
    """Called once at start-up by the app config."""
    _PLUGGED["check_source"] = check_source_function
    _PLUGGED["remotes"] = remotes_protocol


def _plugged(name):
    try:
        return _PLUGGED[name]
    except KeyError:
        raise RuntimeError(f"Model hook '{name}' not plugged in: the Django app is not ready") from None


def check_source(source):
    return _plugged("check_source")(source)


def remotes():
    return _plugged("remotes")
