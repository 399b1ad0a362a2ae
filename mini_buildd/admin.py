"""Django admin for the configuration models: a status column and the status actions
(prepare, check, PC, activate, PCA, deactivate, remove) on every status model.
"""

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from mini_buildd import models


def _run_action(modeladmin, request, queryset, action):
    for obj in queryset:
        obj = obj.mbd_concrete() if isinstance(obj, models.Chroot) else obj
        try:
            obj.mbd_run(action)
            modeladmin.message_user(request, f"{obj.mbd_key}: {action} done: {obj.mbd_status_display()}", messages.SUCCESS)
        except Exception as e:  # pylint: disable=broad-except
            modeladmin.message_user(request, f"{obj.mbd_key}: {action} failed: {e}", messages.ERROR)


def _make_action(action, description):
    def func(modeladmin, request, queryset):
        _run_action(modeladmin, request, queryset, action)
    func.__name__ = f"mbd_action_{action}"
    func.short_description = description
    return func


def _remove_action(modeladmin, request, queryset):
    """Remove the associated data, after a confirmation page (removing a repository deletes its packages)."""
    if request.POST.get("mbd_confirm") == "yes":
        _run_action(modeladmin, request, queryset, "remove")
        return None
    return TemplateResponse(request, "admin/mbd_confirm_remove.html", {
        **modeladmin.admin_site.each_context(request),
        "title": "Really remove?", "objects": queryset, "action": "mbd_action_remove",
        "opts": modeladmin.model._meta,  # pylint: disable=protected-access
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
    })


_remove_action.__name__ = "mbd_action_remove"
_remove_action.short_description = "Remove (deletes associated data)"


class StatusModelAdmin(admin.ModelAdmin):
    """Admin for status models: status column and status actions."""

    actions = [_make_action("prepare", "Prepare"), _make_action("check", "Check"), _make_action("pc", "Prepare + check"),
               _make_action("activate", "Activate"), _make_action("pca", "PCA (prepare, check, activate)"),
               _make_action("deactivate", "Deactivate"), _remove_action]
    readonly_fields = ("mbd_status", "status_message")

    @admin.display(description="Status")
    def mbd_status(self, obj):
        return obj.mbd_status_display()

    def get_list_display(self, request):
        return ("__str__", "mbd_status")


class GnuPGKeyAdmin(StatusModelAdmin):
    readonly_fields = StatusModelAdmin.readonly_fields + ("key_long_id", "key_created", "key_expires", "key_name", "key_fingerprint")


class DaemonAdmin(StatusModelAdmin):
    def has_add_permission(self, request):
        return not models.Daemon.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class SourceAdmin(StatusModelAdmin):
    readonly_fields = StatusModelAdmin.readonly_fields + ("description", "codeversion_guessed", "mbd_archives",
                                                          "mbd_components", "mbd_architectures")

    @admin.display(description="Archives")
    def mbd_archives(self, obj):
        return ", ".join(a.url for a in obj.archives.all())

    @admin.display(description="Components")
    def mbd_components(self, obj):
        return ", ".join(c.name for c in obj.components.all())

    @admin.display(description="Architectures")
    def mbd_architectures(self, obj):
        return ", ".join(a.name for a in obj.architectures.all())


class SuiteOptionInline(admin.TabularInline):
    model = models.SuiteOption
    fk_name = "layout"
    extra = 0


class LayoutAdmin(admin.ModelAdmin):
    inlines = [SuiteOptionInline]


class ArchitectureOptionInline(admin.TabularInline):
    model = models.ArchitectureOption
    extra = 0


class DistributionAdmin(admin.ModelAdmin):
    inlines = [ArchitectureOptionInline]


class ChrootAdmin(StatusModelAdmin):
    readonly_fields = StatusModelAdmin.readonly_fields + ("personality",)

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields + ("source", "architecture") if obj else fields


admin.site.site_header = "mini-buildd administration"
admin.site.register(models.Daemon, DaemonAdmin)
admin.site.register(models.EmailAddress)
admin.site.register(models.Archive)
admin.site.register(models.Architecture)
admin.site.register(models.Component)
admin.site.register(models.AptKey, GnuPGKeyAdmin)
admin.site.register(models.Source, SourceAdmin)
admin.site.register(models.PrioritySource)
admin.site.register(models.Suite)
admin.site.register(models.Layout, LayoutAdmin)
admin.site.register(models.Distribution, DistributionAdmin)
admin.site.register(models.Repository, StatusModelAdmin)
admin.site.register(models.DirChroot, ChrootAdmin)
admin.site.register(models.FileChroot, ChrootAdmin)
admin.site.register(models.Remote, GnuPGKeyAdmin)
admin.site.register(models.Uploader, GnuPGKeyAdmin)
admin.site.register(models.Subscription)
