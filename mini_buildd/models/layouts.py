"""Creating the default layouts in the database (used by the data migration and by ``setup``).

The layouts themselves are data in :data:`mini_buildd.dist.layouts.LAYOUTS` (their one source);
this module only writes them through the models it is given (historical ones in a migration).
"""

from mini_buildd.dist import layouts

_VERSION_FIELDS = ("default_version", "mandatory_version_regex", "experimental_default_version",
                   "experimental_mandatory_version_regex", "meta_distributions")


def create_default_layouts(layout_model, suite_model, suite_option_model, names=None):
    """Create (or leave alone) the named default layouts; return the layouts created."""
    created = []
    for name, data in layouts.LAYOUTS.items():
        if names is not None and name not in names:
            continue
        layout, new = layout_model.objects.get_or_create(name=name, defaults={f: data[f] for f in _VERSION_FIELDS})
        if not new:
            continue
        created.append(layout)
        options = {}
        for suite_name, opts in data["suites"].items():
            suite, _ = suite_model.objects.get_or_create(name=suite_name)
            options[suite_name] = suite_option_model.objects.create(
                layout=layout, suite=suite, **{k: v for k, v in opts.items() if k != "migrates_to"})
        for suite_name, opts in data["suites"].items():
            if opts.get("migrates_to"):
                so = options[suite_name]
                so.migrates_to = options[opts["migrates_to"]]
                so.save()
    return created
