"""The repository group: Suite, SuiteOption, Layout, Distribution (+ArchitectureOption), Repository
(upstream §2.4, §3). A Repository owns its reprepro tree ``~/repositories/<identity>/``.
"""

import datetime
import logging
import shutil

from django.core.exceptions import ValidationError
from django.db import models

from mini_buildd import config
from mini_buildd.dist import codenames as codename_defaults
from mini_buildd.dist import layouts as layout_defaults
from mini_buildd.models import validators
from mini_buildd.models.base import StatusModel, StatusError
from mini_buildd.models.source import Source, PrioritySource, Component, Architecture
from mini_buildd.models.daemon import Daemon, EmailAddress
from mini_buildd.tools import reprepro

LOG = logging.getLogger(__name__)


class AmbiguousMetaDistribution(StatusError):
    """A meta distribution name stands for two distributions (fix the layouts)."""

    def __init__(self, meta, first, second):
        super().__init__(f"Ambiguous meta distribution '{meta}': {first} and {second}.")
        self.meta, self.first, self.second = meta, first, second


class Suite(models.Model):
    """A suite name (e.g. unstable) that layouts use."""
    name = models.CharField(max_length=100, unique=True, validators=[validators.suite_name])

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Layout(models.Model):
    """Suites with their options, version rules and meta distributions."""

    name = models.CharField(max_length=100, unique=True)
    suites = models.ManyToManyField(Suite, through="SuiteOption")
    default_version = models.CharField(max_length=100, default=layout_defaults.DEFAULT_VERSION)
    mandatory_version_regex = models.CharField(max_length=100, default=layout_defaults.MANDATORY_VERSION_REGEX)
    experimental_default_version = models.CharField(max_length=100, default=layout_defaults.EXPERIMENTAL_DEFAULT_VERSION)
    experimental_mandatory_version_regex = models.CharField(max_length=100, default=layout_defaults.EXPERIMENTAL_MANDATORY_VERSION_REGEX)
    meta_distributions = models.JSONField(default=dict, blank=True, help_text='e.g. {"unstable": "sid-unstable"}')

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if not isinstance(self.meta_distributions, dict):
            raise ValidationError({"meta_distributions": "Must be a JSON object {META: 'codename-suite'}."})

    def mbd_suite_options(self):
        """Suite options in upstream's order: stable first along the migration chain, experimental last."""
        options = list(self.suiteoption_set.select_related("suite", "migrates_to__suite"))

        def depth(so):
            d, seen = 0, set()
            while so.migrates_to_id and so.pk not in seen:
                seen.add(so.pk)
                so = next((o for o in options if o.pk == so.migrates_to_id), None)
                if so is None:
                    break
                d += 1
            return d
        return sorted(options, key=lambda so: (so.experimental, so.suite.name == "experimental", depth(so), so.suite.name))

    def mbd_reverse_dependencies(self):
        return list(self.repository_set.all())


class SuiteOption(models.Model):
    """A suite within one layout."""

    layout = models.ForeignKey(Layout, on_delete=models.CASCADE)
    suite = models.ForeignKey(Suite, on_delete=models.CASCADE)
    uploadable = models.BooleanField(default=True)
    experimental = models.BooleanField(default=False)
    migrates_to = models.ForeignKey("self", blank=True, null=True, on_delete=models.SET_NULL)
    rollback = models.SmallIntegerField(default=0, help_text="Number of rollback distributions.")
    build_keyring_package = models.BooleanField(default=False)
    not_automatic = models.BooleanField(default=True)
    but_automatic_upgrades = models.BooleanField(default=True)
    snapshot_keep_last = models.PositiveIntegerField(
        null=True, blank=True, help_text="Change snapshots (one per install, migration, removal) kept at least: the newest N "
                                         "(empty: 10). Named snapshots (manual, timed) are always kept.")
    snapshot_keep_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Change snapshots younger than this many days are kept too (empty: 7).")

    class Meta:
        unique_together = ("layout", "suite")

    def __str__(self):
        return f"{self.suite.name} in {self.layout.name}"

    def clean(self):
        super().clean()
        if self.build_keyring_package and not self.uploadable:
            raise ValidationError("Keyring suites must be uploadable.")
        if self.experimental and (not self.uploadable or self.migrates_to_id):
            raise ValidationError("Experimental suites must be uploadable and must not migrate.")
        if self.migrates_to_id:
            if self.migrates_to.layout_id != self.layout_id:
                raise ValidationError("May only migrate to a suite of the same layout.")
            if self.migrates_to.uploadable:
                raise ValidationError("May only migrate to a non-uploadable suite.")
        if self.rollback < 0:
            raise ValidationError("Rollback count must not be negative.")

    @property
    def name(self):
        return self.suite.name

    def mbd_rollback_range(self):
        return range(self.rollback)


class Distribution(models.Model):
    """A base source plus extra sources, components, architectures and build settings."""

    RESOLVER_APT, RESOLVER_APTITUDE, RESOLVER_INTERNAL = 0, 1, 2
    RESOLVER_CHOICES = ((RESOLVER_APT, "apt"), (RESOLVER_APTITUDE, "aptitude"), (RESOLVER_INTERNAL, "internal"))
    QA_CHOICES = ((0, "disabled"), (1, "ignore"), (2, "errfail"), (3, "warnfail"))

    base_source = models.ForeignKey(Source, on_delete=models.CASCADE)
    extra_sources = models.ManyToManyField(PrioritySource, blank=True)
    components = models.ManyToManyField(Component)
    architectures = models.ManyToManyField(Architecture, through="ArchitectureOption")
    build_dep_resolver = models.IntegerField(choices=RESOLVER_CHOICES, default=RESOLVER_APTITUDE)
    sbuild_config_blocks = models.CharField(max_length=255, blank=True, default=codename_defaults.DEFAULT_SBUILD_CONFIG_BLOCKS)
    sbuild_setup_blocks = models.CharField(max_length=255, blank=True, default=codename_defaults.DEFAULT_SBUILD_SETUP_BLOCKS)
    lintian_mode = models.IntegerField(choices=QA_CHOICES, default=2)
    lintian_extra_options = models.CharField(
        max_length=255, blank=True,
        default=codename_defaults.DEFAULT_LINTIAN_EXTRA_OPTIONS)
    lintian_warnfail_options = models.CharField(max_length=255, blank=True, default=codename_defaults.DEFAULT_LINTIAN_WARNFAIL_OPTIONS)
    piuparts_mode = models.IntegerField(choices=QA_CHOICES, default=0)
    piuparts_extra_options = models.CharField(max_length=255, blank=True, default=codename_defaults.DEFAULT_PIUPARTS_EXTRA_OPTIONS)
    piuparts_root_arg = models.CharField(max_length=255, blank=True, default=codename_defaults.DEFAULT_PIUPARTS_ROOT_ARG)
    autopkgtest_mode = models.IntegerField(choices=QA_CHOICES, default=0)
    internal_apt_priority = models.SmallIntegerField(default=codename_defaults.DEFAULT_INTERNAL_APT_PRIORITY)
    deb_build_options = models.CharField(max_length=255, blank=True, default="")
    deb_build_profiles = models.CharField(max_length=255, blank=True, default="")
    add_depends = models.CharField(max_length=255, blank=True, default="")
    chroot_setup_script = models.TextField(blank=True, default="", validators=[validators.shebang_script])
    sbuildrc_snippet = models.TextField(blank=True, default="")
    build_time_limit = models.DurationField(
        default=datetime.timedelta(hours=6),
        help_text="A build that runs longer than this is stopped and ends FAILED (time limit exceeded).")

    def __str__(self):
        archs = " ".join(a.architecture.name for a in self.architectureoption_set.select_related("architecture"))
        return f"{self.base_source.codename}: {archs}" if archs else self.base_source.codename

    @property
    def codename(self):
        return self.base_source.codename

    def mbd_architectures(self):
        return sorted(a.architecture.name for a in self.architectureoption_set.select_related("architecture"))

    def mbd_components(self):
        return sorted((c.name for c in self.components.all()), key=Component.sort_key)

    def mbd_sources(self):
        return [self.base_source] + [ps.source for ps in self.extra_sources.select_related("source")]

    def mbd_is_active(self):
        """Active if the base source and every extra source are active."""
        return all(s.mbd_is_active() for s in self.mbd_sources())

    def mbd_validate(self):
        """Raise ValidationError unless components include main and exactly one mandatory arch builds arch:all."""
        if "main" not in self.mbd_components():
            raise ValidationError(f"Distribution {self}: components must include 'main'.")
        options = list(self.architectureoption_set.all())
        if not options:
            raise ValidationError(f"Distribution {self}: no architectures.")
        all_archs = [o for o in options if o.build_architecture_all]
        if len(all_archs) != 1 or all_archs[0].optional:
            raise ValidationError(f"Distribution {self}: exactly one non-optional architecture must build arch:all.")


class ArchitectureOption(models.Model):
    """Per distribution and architecture: build failures tolerated, builds arch:all."""
    architecture = models.ForeignKey(Architecture, on_delete=models.CASCADE)
    distribution = models.ForeignKey(Distribution, on_delete=models.CASCADE)
    optional = models.BooleanField(default=False, help_text="Build failures on this architecture are tolerated.")
    build_architecture_all = models.BooleanField(default=False)

    class Meta:
        unique_together = ("architecture", "distribution")

    def __str__(self):
        return f"{self.architecture} for {self.distribution}"

    def clean(self):
        super().clean()
        if self.optional and self.build_architecture_all:
            raise ValidationError("An optional architecture can't build arch:all.")


class Repository(StatusModel):
    """An APT repository managed by reprepro: layout × distributions."""

    identity = models.CharField(primary_key=True, max_length=50, default="test", validators=[validators.repository_identity])
    layout = models.ForeignKey(Layout, on_delete=models.PROTECT)
    distributions = models.ManyToManyField(Distribution)
    allow_unauthenticated_uploads = models.BooleanField(default=False)
    extra_uploader_keyrings = models.TextField(blank=True, default="", help_text="One keyring path per line; '#' comments.")
    notify = models.ManyToManyField(EmailAddress, blank=True)
    notify_changed_by = models.BooleanField(default=False)
    notify_maintainer = models.BooleanField(default=False)
    reprepro_morguedir = models.BooleanField(default=False)
    external_home_url = models.URLField(blank=True, default="")
    auto_update_ports = models.BooleanField(
        default=False, help_text="When the origin of a package ported into this repository has a new version, port it "
                                 "again (else only a PORT_OUTDATED event).")
    QA_GATE_OFF, QA_GATE_WARN, QA_GATE_REFUSE = 0, 1, 2
    QA_GATE_CHOICES = ((QA_GATE_OFF, "off"), (QA_GATE_WARN, "warn"), (QA_GATE_REFUSE, "refuse"))
    qa_regression_gate = models.IntegerField(
        choices=QA_GATE_CHOICES, default=QA_GATE_WARN,
        help_text="A migration whose version has a QA regression against the version in the target suite (a new lintian "
                  "error, piuparts or autopkgtest from pass to fail): off (not checked), warn (migrates, the MIGRATED event "
                  "and the answer say so), refuse (409 with the differences).")

    mbd_lethal_dependencies = False

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["identity"]

    def __str__(self):
        return self.identity

    # ----------------------------------------------------------------- naming
    def mbd_path(self):
        return config.paths.repository(self.identity)

    def mbd_diststr(self, distribution, suite_option, rollback=None):
        s = f"{distribution.codename}-{self.identity}-{suite_option.suite.name}"
        return s if rollback is None else f"{s}-rollback{rollback}"

    def mbd_distributions(self):
        return sorted(self.distributions.select_related("base_source"), key=lambda d: d.codename)

    def mbd_meta_distributions(self, distribution, suite_option):
        """Meta names mapping to this distribution/suite (layout's ``{META: "codename-suite"}``)."""
        target = f"{distribution.codename}-{suite_option.suite.name}"
        return sorted(meta for meta, value in (self.layout.meta_distributions or {}).items() if value == target)

    def mbd_reprepro_stanzas(self):
        """The conf/distributions stanzas of the repository (every distribution, suite and rollback)."""
        origin = Daemon.get().archive_origin
        stanzas = []
        for dist in self.mbd_distributions():
            common = {"origin": origin, "components": dist.mbd_components(), "architectures": dist.mbd_architectures()}
            for so in self.layout.mbd_suite_options():
                diststr = self.mbd_diststr(dist, so)
                stanzas.append({**common, "codename": diststr, "description": diststr,
                                "also_accept_for": self.mbd_meta_distributions(dist, so),
                                "not_automatic": so.not_automatic, "but_automatic_upgrades": so.but_automatic_upgrades})
                for r in so.mbd_rollback_range():
                    rb = self.mbd_diststr(dist, so, r)
                    stanzas.append({**common, "codename": rb, "description": rb, "also_accept_for": [],
                                    "not_automatic": True, "but_automatic_upgrades": False})
        return stanzas

    def mbd_reprepro(self):
        return reprepro.Reprepro(self.mbd_path())

    def mbd_source_package_count(self, diststr, components):
        """Number of source packages in ``diststr`` (from the exported Sources indexes, no reprepro run)."""
        count = 0
        dist_dir = self.mbd_reprepro().dist_dir(diststr)
        for component in components:
            try:
                with open(dist_dir / component / "source" / "Sources", encoding="utf-8", errors="replace") as f:
                    count += sum(1 for line in f if line.startswith("Package: "))
            except OSError:
                pass
        return count

    def mbd_write_conf(self):
        """Write conf/distributions and conf/options; return True if anything changed."""
        if Daemon.get().gnupg().get_secret_key() is None:
            raise StatusError("The instance has no GnuPG key yet: prepare the Daemon first.")
        for dist in self.mbd_distributions():
            dist.mbd_validate()
        self.mbd_path().mkdir(parents=True, exist_ok=True)
        return self.mbd_reprepro().write_conf(
            reprepro.distributions_conf(self.mbd_reprepro_stanzas()),
            reprepro.options_conf(config.paths.gnupg_home, morguedir=self.reprepro_morguedir))

    @classmethod
    def mbd_meta_distribution_map(cls):
        """Which distribution each meta name of the layouts (e.g. ``unstable``) stands for: the global
        ``{meta: diststr}`` over all repositories not removed (uploads, subscriptions and the
        check use it). Raises :class:`AmbiguousMetaDistribution` when a meta name stands for two."""
        result = {}
        for repo in cls.objects.exclude(status=StatusModel.STATUS_REMOVED):
            for dist in repo.mbd_distributions():
                for so in repo.layout.mbd_suite_options():
                    for meta in repo.mbd_meta_distributions(dist, so):
                        target = repo.mbd_diststr(dist, so)
                        if result.get(meta, target) != target:
                            raise AmbiguousMetaDistribution(meta, result[meta], target)
                        result[meta] = target
        return result

    def mbd_check_meta_distributions(self):
        """The global meta distribution map must be unambiguous."""
        self.mbd_meta_distribution_map()

    # ----------------------------------------------------------------- status hooks
    def mbd_prepare_data(self):
        if not self.distributions.exists():
            raise StatusError("No distributions configured.")
        self.mbd_write_conf()
        self.mbd_reprepro().reindex()

    def mbd_sync_data(self):
        if self.mbd_write_conf():
            self.mbd_reprepro().reindex()

    def mbd_check_data(self):
        self.mbd_check_meta_distributions()
        if self.mbd_write_conf():
            self.mbd_reprepro().reindex()
        self.mbd_reprepro().check()

    def mbd_remove_data(self):
        path = self.mbd_path()
        if path.exists():
            shutil.rmtree(path)

    def mbd_dependencies(self):
        deps = {}
        for dist in self.distributions.all():
            for source in dist.mbd_sources():
                deps[source.pk] = source
        return list(deps.values())
