"""ApiToken: scoped API tokens, stored hashed (issue #17).

Written in the style of Django's makemigrations: field definitions stay on one line each."""
# pylint: disable=line-too-long,missing-class-docstring

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('mini_buildd', '0009_metrics_access'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, default='', help_text='What the token is for (e.g. the CI job).', max_length=100)),
                ('key', models.CharField(db_index=True, editable=False, help_text="The token's key (the characters after its prefix): finds it; not a secret.", max_length=12)),
                ('digest', models.CharField(editable=False, help_text="SHA-256 of the token's secret.", max_length=64)),
                ('scope', models.CharField(choices=[('read', 'read'), ('upload-check', 'upload-check'), ('staff', 'staff'), ('admin', 'admin')], default='read', max_length=20)),
                ('repositories', models.CharField(blank=True, default='', help_text='Repository identities the token is restricted to (space separated; empty: all).', max_length=1000)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('expires', models.DateTimeField(blank=True, help_text='Empty: never.', null=True)),
                ('last_used', models.DateTimeField(blank=True, editable=False, null=True)),
                ('revoked', models.DateTimeField(blank=True, editable=False, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='mbd_api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ('created', 'pk'),
            },
        ),
    ]
