"""The API (upstream §4): one registry of calls (:mod:`.registry`), the call definitions
(:mod:`.calls`, then :mod:`.calls_admin`, then :mod:`.calls_webhooks`), the Django HTTP view
(:mod:`.http`) and the HTTP client used by ``mini-buildd-api`` and other tools (:mod:`.client`).

Importing this package registers every call; it does not import Django.
"""

from mini_buildd.api import calls, calls_admin  # noqa: F401  pylint: disable=unused-import
from mini_buildd.api import calls_webhooks  # noqa: F401  pylint: disable=unused-import
from mini_buildd.api import calls_tokens  # noqa: F401  pylint: disable=unused-import  # API tokens (issue #17)
from mini_buildd.api.registry import (CALLS, Auth, Problem, get, execute, set_engine_hooks,  # noqa: F401
                                      reset_engine_hooks)
