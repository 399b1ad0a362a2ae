"""Django admin for the configuration models: a status column (and filter) and the status actions
(prepare, check, PC, activate, PCA, deactivate, remove) on every status model, as list actions,
as buttons on an object's page (``<object>/mbd-action/<action>/``, POST), and the "Save and PCA"
shortcut of the change form. Remove always asks for confirmation.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from mini_buildd import models

#: Object page buttons: (action, label).
OBJECT_ACTIONS = (("prepare", "Prepare"), ("check", "Check"), ("pca", "PCA"), ("activate", "Activate"),
                  ("deactivate", "Deactivate"), ("remove", "Remove"))


def _run_action(modeladmin, request, queryset, action):
    for obj in queryset:
        obj = obj.mbd_concrete() if isinstance(obj, models.Chroot) else obj
        ok, detail = obj.mbd_run_reported(action)
        modeladmin.message_user(request, f"{obj.mbd_key}: {action} {'done' if ok else 'failed'}: {detail}",
                                messages.SUCCESS if ok else messages.ERROR)


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
    list_filter = ("status",)
    change_form_template = "admin/mini_buildd/status_change_form.html"

    class Media:
        css = {"all": ("mini_buildd/admin.css",)}

    @admin.display(description="Status", ordering="status")
    def mbd_status(self, obj):
        css = {obj.STATUS_REMOVED: "removed", obj.STATUS_PREPARED: "prepared", obj.STATUS_ACTIVE: "active"}.get(obj.status, "")
        return format_html('<span class="mbd-status mbd-status-{}" title="{}">{}</span>', css, obj.status_message,
                           obj.mbd_status_display())

    def get_list_display(self, request):
        return ("__str__", "mbd_status")

    # ------------------------------------------------------------------ object page actions
    def _mbd_url_name(self):
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_mbd_action"  # pylint: disable=protected-access

    def get_urls(self):
        return [path("<path:object_id>/mbd-action/<str:action>/", self.admin_site.admin_view(self.mbd_action_view),
                     name=self._mbd_url_name())] + super().get_urls()

    def _change_url(self, obj):
        opts = self.model._meta  # pylint: disable=protected-access
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=(quote(obj.pk),), current_app=self.admin_site.name)

    def mbd_action_view(self, request, object_id, action):
        """POST ``<object>/mbd-action/<action>/``: run one status action on one object (remove asks first)."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)  # pylint: disable=protected-access
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        if request.method != "POST" or action not in models.StatusModel.ACTIONS:
            if action not in models.StatusModel.ACTIONS:
                self.message_user(request, f"Unknown status action '{action}'.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(obj))
        if action == "remove" and request.POST.get("mbd_confirm") != "yes":
            return TemplateResponse(request, "admin/mbd_confirm_remove.html", {
                **self.admin_site.each_context(request),
                "title": "Really remove?", "objects": [obj], "opts": self.model._meta,  # pylint: disable=protected-access
                "form_action": request.path, "back_url": self._change_url(obj)})
        _run_action(self, request, [obj], action)
        return HttpResponseRedirect(self._change_url(obj))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        extra_context["mbd_actions"] = [(label, reverse(f"admin:{self._mbd_url_name()}", args=(object_id, action),
                                                        current_app=self.admin_site.name), action)
                                        for action, label in OBJECT_ACTIONS]
        return super().change_view(request, object_id, form_url, extra_context)

    def _mbd_save_pca(self, request, obj, response):
        if "_mbd_save_pca" in request.POST:
            _run_action(self, request, [obj], "pca")
            return HttpResponseRedirect(self._change_url(obj))
        return response

    def response_change(self, request, obj):
        return self._mbd_save_pca(request, obj, super().response_change(request, obj))

    def response_add(self, request, obj, post_url_continue=None):
        return self._mbd_save_pca(request, obj, super().response_add(request, obj, post_url_continue))


class GnuPGKeyAdmin(StatusModelAdmin):
    readonly_fields = StatusModelAdmin.readonly_fields + ("key_long_id", "key_created", "key_expires", "key_name", "key_fingerprint")


class DaemonAdmin(StatusModelAdmin):
    """Admin of the one Daemon instance: it can be added once and never deleted."""
    def has_add_permission(self, request):
        return not models.Daemon.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class SourceAdmin(StatusModelAdmin):
    """Admin of sources: shows their archives, components and architectures."""
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
    """Admin of chroots: source and architecture are fixed once the chroot exists."""
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
admin.site.register(models.UnshareChroot, ChrootAdmin)
admin.site.register(models.BtrfsSnapshotChroot, ChrootAdmin)
admin.site.register(models.LVMChroot, ChrootAdmin)
admin.site.register(models.LoopLVMChroot, ChrootAdmin)
admin.site.register(models.Remote, GnuPGKeyAdmin)
admin.site.register(models.Uploader, GnuPGKeyAdmin)
admin.site.register(models.Subscription)
