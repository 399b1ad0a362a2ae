"""schroot's files as text: parsing what the root helper checks, rendering what it writes."""

import pytest

from mini_buildd.tools import schroot_files


def test_parse_round_trips_rendered_conf():
    text = schroot_files.conf_text("mbd-x", "desc", ["type=directory", "directory=/h/var/chroots/c/a/source"],
                                   users=("u",), fstab=schroot_files.fstab_setup_name("mbd-x"))
    name, values = schroot_files.parse_conf(text)
    assert name == "mbd-x"
    assert values["users"] == values["root-users"] == values["source-root-users"] == "u"
    assert values["setup.fstab"] == "mini-buildd/fstab-mbd-x" and values["directory"] == "/h/var/chroots/c/a/source"


@pytest.mark.parametrize("text, why", [
    ("[a]\nusers=x\n[b]\nusers=y\n", "a second section"),
    ("users=x\n[a]\n", "not a 'key=value' line"),
    ("[a]\nusers=x\nusers=root\n", "given twice"),
    ("[a]\njust words\n", "not a 'key=value' line"),
    ("# only a comment\n", "no section"),
])
def test_parse_refuses_what_mini_buildd_never_writes(text, why):
    with pytest.raises(schroot_files.SchrootError, match=why):
        schroot_files.parse_conf(text)


def test_fstab_binds_only_the_extra_dirs(tmp_path):
    text = schroot_files.fstab_text([tmp_path])
    assert schroot_files.fstab_binds(text) == [tmp_path.resolve()]
    with pytest.raises(schroot_files.SchrootError, match="white space"):
        schroot_files.fstab_text([tmp_path / "a b"])
