"""Create the Default, Default (no rollbacks) and Debian Developer layouts (upstream §3.2, §3.3)."""

from django.db import migrations


def create_layouts(apps, schema_editor):  # pylint: disable=unused-argument
    from mini_buildd.models.layouts import create_default_layouts  # pylint: disable=import-outside-toplevel
    create_default_layouts(apps.get_model("mini_buildd", "Layout"), apps.get_model("mini_buildd", "Suite"),
                           apps.get_model("mini_buildd", "SuiteOption"))


class Migration(migrations.Migration):
    dependencies = [("mini_buildd", "0001_initial")]
    operations = [migrations.RunPython(create_layouts, migrations.RunPython.noop)]
