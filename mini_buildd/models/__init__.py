"""Configuration models of the Django app ``mini_buildd`` (upstream §2), one module per family.

Importing this package registers every model with Django.
"""

from mini_buildd.models.base import StatusModel, StatusError  # noqa: F401
from mini_buildd.models.daemon import Daemon, EmailAddress  # noqa: F401
from mini_buildd.models.source import Archive, Architecture, Component, AptKey, Source, PrioritySource  # noqa: F401
from mini_buildd.models.repository import Suite, SuiteOption, Layout, Distribution, ArchitectureOption, Repository  # noqa: F401
from mini_buildd.models.repository import AmbiguousMetaDistribution  # noqa: F401
from mini_buildd.models.chroot import Chroot, DirChroot, FileChroot  # noqa: F401
from mini_buildd.models.chroot import UnshareChroot  # noqa: F401
from mini_buildd.models.chroot import BtrfsSnapshotChroot, LVMChroot, LoopLVMChroot  # noqa: F401
from mini_buildd.models.remote import Remote  # noqa: F401
from mini_buildd.models.user import Uploader, Subscription  # noqa: F401
from mini_buildd.models.webhook import Webhook, WebhookDelivery  # noqa: F401
from mini_buildd.models.token import ApiToken  # noqa: F401
