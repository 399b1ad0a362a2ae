"""Daemon.metrics_access: who may read /metrics (issue #17).

Written by Django's makemigrations: field definitions stay on one line each."""
# pylint: disable=line-too-long,missing-class-docstring

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mini_buildd', '0008_auto_update_ports'),
    ]

    operations = [
        migrations.AddField(
            model_name='daemon',
            name='metrics_access',
            field=models.CharField(choices=[('anonymous', 'anyone'), ('staff', 'active staff users only')], default='anonymous', help_text='Who may read /metrics: anyone, or only active staff users (logged in, or with an API token); others get 401/403.', max_length=16),
        ),
    ]
