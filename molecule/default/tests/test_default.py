"""After prefetch on a fresh JustNews host: the Memory agent runs offline from the shared cache."""

import jn_checks as c


def test_cache_dir(host):
    c.assert_cache_dir(host)


def test_snapshot_of_main(host):
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main")


def test_venv(host):
    r = host.run("%s -c 'import huggingface_hub; print(huggingface_hub.__version__)'", c.VENV_PY)
    assert r.rc == 0 and r.stdout.strip() == "2.4.0", r.stderr


def test_dropin(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)


def test_no_token_file(host):
    c.assert_no_token_file(host)


def test_unit_environment(host):
    c.assert_unit_env(host)


def test_ready_file(host):
    c.assert_ready(host, commit=c.COMMIT_B)


def test_unit_enabled_and_healthy(host):
    svc = host.service(c.UNIT)
    assert svc.is_enabled
    props = c.unit_props(host, "ActiveState", "SubState", "NRestarts")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
