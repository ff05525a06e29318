"""Gated repository fetched with the Hub token; the token lives only in the root-only env file."""

import os

import jn_checks as c


def token():
    path = os.environ["JUSTNEWS_TEST_HUB_TOKEN_FILE"]
    with open(path) as fh:
        return fh.read().strip()


def test_gated_snapshot(host):
    c.assert_snapshot(host, c.GATED_REPO, c.GATED_COMMIT, "main")


def test_public_snapshot(host):
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main")


def test_token_file(host):
    f = host.file(c.TOKEN_FILE)
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)
    lines = f.content_string.splitlines()
    ok = ("HF_TOKEN=" + token()) in lines and ("HF_HUB_TOKEN=" + token()) in lines
    assert ok, "token file lacks HF_TOKEN=<token> / HF_HUB_TOKEN=<token> (values not shown)"


def test_token_not_readable_by_agent_user(host):
    assert host.run("runuser -u justnews -- cat %s", c.TOKEN_FILE).rc != 0


def test_dropin_references_token_file_only(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=True)
    leaked = token() in host.file(c.DROPIN).content_string
    assert not leaked, "the token is in the drop-in"


def test_unit_environment_has_token(host):
    c.assert_unit_env(host, token=token())


def test_token_not_in_unit_properties(host):
    out = host.check_output("systemctl show %s", c.UNIT)
    leaked = token() in out
    assert not leaked, "the token appears in systemctl show (value not shown)"


def test_ready(host):
    c.assert_ready(host, commit=c.COMMIT_B)
