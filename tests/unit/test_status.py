"""The status state machine (upstream §2.1): every transition and flag, on a model with recorded hooks."""

# pytest idioms: fixtures are parameters named like them; some fixtures are requested for their side effects
# only.
# pylint: disable=redefined-outer-name,unused-argument

import pytest

from mini_buildd.models import AptKey, Source, StatusError, StatusModel

S = StatusModel  # pylint: disable=invalid-name  # short alias


@pytest.fixture
def calls(monkeypatch):
    """Record hook calls on AptKey/Source; ``fail`` makes the named hooks raise."""
    class Log(list):
        fail = set()
    log = Log()
    fail = log.fail = set()

    def hook(name):
        def f(self):
            log.append((type(self).__name__, name))
            if name in fail:
                raise RuntimeError(f"{name} broke")
        return f
    for model in (AptKey, Source):
        for name in ("mbd_prepare_data", "mbd_sync_data", "mbd_check_data", "mbd_remove_data", "mbd_on_activate", "mbd_on_deactivate"):
            monkeypatch.setattr(model, name, hook(name))
    return log


def make_key(kid="DEADBEEF01"):
    return AptKey.objects.create(key_id=kid)


def fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def test_new_object_is_removed(db):
    k = make_key()
    assert k.status == S.STATUS_REMOVED and k.mbd_flag == "-" and k.mbd_status_display() == "Removed"


def test_prepare_removed(db, calls):
    k = make_key()
    k.mbd_prepare()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "-"
    assert calls == [("AptKey", "mbd_prepare_data")]
    assert k.mbd_status_display() == "Prepared (-)"


def test_prepare_is_noop_when_prepared(db, calls):
    k = make_key()
    k.mbd_prepare()
    k.mbd_prepare()
    assert calls == [("AptKey", "mbd_prepare_data")]


def test_prepare_failure_stays_removed_and_cleans_up(db, calls):
    calls.fail.add("mbd_prepare_data")
    k = make_key()
    with pytest.raises(StatusError, match="prepare failed"):
        k.mbd_prepare()
    k = fresh(k)
    assert k.status == S.STATUS_REMOVED
    assert ("AptKey", "mbd_remove_data") in calls
    assert "prepare_data broke" in k.status_message


def test_check_refused_on_removed(db, calls):
    k = make_key()
    with pytest.raises(StatusError, match="prepare first"):
        k.mbd_check()


def test_check_sets_timestamp(db, calls):
    k = make_key()
    k.mbd_pc()
    k = fresh(k)
    assert k.mbd_flag == "C" and k.mbd_is_checked()
    assert k.mbd_status_display().startswith("Prepared (C/")


def test_check_failure_sets_failed_flag(db, calls):
    k = make_key()
    k.mbd_prepare()
    calls.fail.add("mbd_check_data")
    with pytest.raises(StatusError, match="check failed"):
        k.mbd_check()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "x"
    assert "check_data broke" in k.status_message


def test_activate_needs_check(db, calls):
    k = make_key()
    with pytest.raises(StatusError, match="prepare and check first"):
        k.mbd_activate()


def test_activate_unchecked_sets_reactivate(db, calls):
    k = make_key()
    k.mbd_prepare()
    k.mbd_activate()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "A"
    # Next good check activates.
    k.mbd_check()
    k = fresh(k)
    assert k.status == S.STATUS_ACTIVE and k.mbd_flag == "C"
    assert ("AptKey", "mbd_on_activate") in calls


def test_pca_and_deactivate(db, calls):
    k = make_key()
    k.mbd_pca()
    k = fresh(k)
    assert k.mbd_is_active()
    k.mbd_deactivate()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "C"
    assert ("AptKey", "mbd_on_deactivate") in calls


def test_failed_check_while_active_drops_to_reactivate(db, calls):
    k = make_key()
    k.mbd_pca()
    calls.fail.add("mbd_check_data")
    with pytest.raises(StatusError):
        k.mbd_check()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "A"
    calls.fail.clear()
    k.mbd_check()
    assert fresh(k).mbd_is_active()


def test_deactivate_turns_reactivate_into_failed(db, calls):
    k = make_key()
    k.mbd_prepare()
    k.mbd_activate()
    assert fresh(k).mbd_flag == "A"
    k.mbd_deactivate()
    assert fresh(k).mbd_flag == "x"


def test_remove(db, calls):
    k = make_key()
    k.mbd_pca()
    k.mbd_remove()
    k = fresh(k)
    assert k.status == S.STATUS_REMOVED and k.mbd_flag == "-"
    assert calls[-1] == ("AptKey", "mbd_remove_data")


def test_saving_changed_active_object_deactivates_and_marks_changed(db, calls):
    k = make_key()
    k.mbd_pca()
    k = fresh(k)
    k.key_id = "DEADBEEF02"
    k.save()
    k = fresh(k)
    assert k.status == S.STATUS_PREPARED and k.mbd_flag == "*"
    with pytest.raises(StatusError, match="changed"):
        k.mbd_check()
    k.mbd_prepare()
    assert calls[-1] == ("AptKey", "mbd_sync_data")
    k = fresh(k)
    assert k.mbd_flag == "-"


def test_saving_unchanged_object_keeps_status(db, calls):
    k = make_key()
    k.mbd_pca()
    k = fresh(k)
    k.save()
    assert fresh(k).mbd_is_active()


def test_save_does_not_overwrite_status(db, calls):
    k = make_key()
    stale = fresh(k)
    k.mbd_pca()
    stale.save()  # stale copy still says Removed
    assert fresh(k).mbd_is_active()


def test_change_marks_reverse_dependencies(db, calls):
    k = make_key()
    src = Source.objects.create(origin="Debian", codename="bookworm")
    src.apt_keys.add(k)
    src.mbd_pca()
    k = fresh(k)
    assert k.mbd_is_active() and fresh(src).mbd_is_active()
    k.key_id = "DEADBEEF03"
    k.save()
    src = fresh(src)
    assert src.status == S.STATUS_PREPARED and src.mbd_flag == "*"


def test_m2m_change_marks_changed(db, calls):
    k1, k2 = make_key("DEADBEEF11"), make_key("DEADBEEF12")
    src = Source.objects.create(origin="Debian", codename="trixie")
    src.apt_keys.add(k1)
    src.mbd_pca()
    src.apt_keys.add(k2)
    assert fresh(src).mbd_flag == "*"


def test_lethal_dependency_failure(db, calls):
    k = make_key()
    src = Source.objects.create(origin="Debian", codename="sid")
    src.apt_keys.add(k)
    calls.fail.add("mbd_prepare_data")
    with pytest.raises(StatusError, match="dependency"):
        src.mbd_prepare()
    assert fresh(src).mbd_is_removed()


def test_check_requires_active_dependencies_when_activating(db, calls):
    k = make_key()
    src = Source.objects.create(origin="Debian", codename="forky")
    src.apt_keys.add(k)
    src.mbd_pca()
    k.mbd_deactivate()
    # src is active, its key is not: check fails and src waits for reactivation.
    with pytest.raises(StatusError, match="not active"):
        src.mbd_check()
    src = fresh(src)
    assert src.status == S.STATUS_PREPARED and src.mbd_flag == "A"


def test_run_unknown_action(db):
    k = make_key()
    with pytest.raises(StatusError, match="Unknown"):
        k.mbd_run("explode")


def test_flags_display():
    k = AptKey(key_id="DEADBEEF")
    for sentinel, flag in ((S.CHECK_NONE, "-"), (S.CHECK_CHANGED, "*"), (S.CHECK_FAILED, "x"), (S.CHECK_REACTIVATE, "A")):
        k.last_checked = sentinel
        assert k.mbd_flag == flag
