"""QA letters in event rows (issue #18): per architecture B(uild), L(intian), P(iuparts),
A(utopkgtest), coloured by the result word sbuild reported and linking to that build log."""

import datetime

from mini_buildd.events import Event, Type
from mini_buildd.webapp import eventrows

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
KEY = "mbd-qa/1.0/20260102:030405:000000"


def _installed():
    return Event(Type.INSTALLED, "bookworm-test-unstable", "mbd-qa", "1.0", T0, {"buildresults": {
        "amd64": {"sbuild_status": "successful", "sbuild_lintian": "pass", "sbuild_piuparts": "pass", "sbuild_autopkgtest": "no tests",
                  "buildlog": f"{KEY}/amd64/mbd-qa_1.0_amd64.buildlog"},
        "i386": {"sbuild_status": "successful", "sbuild_lintian": "fail", "buildlog": f"{KEY}/i386/mbd-qa_1.0_i386.buildlog"},
        "arm64": {"sbuild_status": "failed"},
    }})


def test_letters_per_architecture_link_to_the_build_log():
    html = eventrows.row(_installed(), cache=False)
    amd64 = html.split('data-arch="amd64"', 1)[1].split("</span>", 1)[0]
    assert 'class="qa qa-pass" title="amd64 build: successful" href="/mini_buildd/events-dir/mbd-qa/1.0/20260102:030405:000000/amd64/' in amd64
    assert 'class="qa qa-pass" title="amd64 lintian: pass"' in amd64 and 'class="qa qa-warn" title="amd64 autopkgtest: no tests"' in amd64
    i386 = html.split('data-arch="i386"', 1)[1].split("</span>", 1)[0]
    assert 'class="qa qa-fail" title="i386 lintian: fail"' in i386 and 'class="qa qa-none" title="i386 piuparts: none"' in i386
    arm64 = html.split('data-arch="arm64"', 1)[1].split("</span>\n", 1)[0]
    assert '<span class="qa qa-fail" title="arm64 build: failed">B</span>' in arm64 and "<a " not in arm64.split("</span>")[0]
    assert "successful" not in html.split("<td>")[-1].split('<span class="qa-arch"')[0]  # the letters replace the text


def test_built_event_and_events_without_results():
    extra = {"architecture": "amd64", "sbuild_status": "skipped", "buildlog": "s/1/t/amd64/<x>.buildlog"}
    built = Event(Type.BUILT, "d", "s", "1", T0, extra)
    html = eventrows.row(built, cache=False)
    assert 'class="qa qa-none" title="amd64 build: skipped"' in html and "%3Cx%3E.buildlog" in html and "<x>" not in html
    assert "[amd64]" not in html
    assert eventrows.qa_html(Event(Type.PACKAGING, "d", "s", "1", T0, {})) == ""
    assert eventrows.qa_state("sbuild_lintian", "Warn ") == "warn" and eventrows.qa_state("sbuild_lintian", "unknown") == "none"
