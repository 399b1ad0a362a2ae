"""Webhook and WebhookDelivery: signed webhooks and their delivery log (issue #17). Placeholder reserved for this change; its operations are filled in with it.

Written by Django's makemigrations: field definitions stay on one line each."""
# pylint: disable=line-too-long,missing-class-docstring

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mini_buildd', '0010_api_tokens'),
    ]

    operations = [
    ]
