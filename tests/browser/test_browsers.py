"""Which Chromium the browser tests find (the browser tests are skipped, with this reason, when there is none)."""

import stat

import pytest

from browsers import NO_CHROMIUM, find_chromium


@pytest.fixture
def executable(tmp_path):
    def make(name: str) -> str:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)
    return make


def test_chromium_from_the_environment_comes_first(executable):
    chosen = executable("my-chromium")
    assert find_chromium(chosen, executable("own"), debian=executable("debian")) == (chosen, "$CHROMIUM")


def test_a_chromium_variable_naming_nothing_is_the_reason_not_a_fallback(executable, tmp_path):
    missing = str(tmp_path / "absent")
    assert find_chromium(missing, None, debian=executable("debian")) == (None, f"$CHROMIUM={missing} is not an executable")


def test_debian_chromium_before_playwright_own(executable):
    debian = executable("debian")
    assert find_chromium(None, executable("own"), debian=debian) == (debian, "Debian's chromium")


def test_playwright_own_chromium_when_debian_has_none(executable, tmp_path):
    own = executable("own")
    assert find_chromium(None, own, debian=str(tmp_path / "absent")) == (own, "Playwright's chromium")


def test_no_chromium_says_how_to_get_one(tmp_path):
    assert find_chromium(None, str(tmp_path / "own"), debian=str(tmp_path / "absent")) == (None, NO_CHROMIUM)
