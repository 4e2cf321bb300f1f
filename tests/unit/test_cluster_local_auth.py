"""up-local's MLflow login, without starting a cluster: the admin password file, the basic-auth
app's settings, the exports that read the password from its file, and the reset of a lost password
in MLflow's own user store. tests/integration/test_local_cluster.py checks the running server."""

from __future__ import annotations

import configparser
import subprocess

import pytest

from ausweep.cluster import cli, local


def _files(dir, notes=None):
    return local._mlflow_auth_files(dir, log=(notes.append if notes is not None else lambda m: None))


def test_password_file_is_private_kept_and_named_in_the_settings(tmp_path):
    d = tmp_path / "a%b"  # configparser would read a bare '%' as interpolation
    d.mkdir()
    password = _files(d)
    pw_file, ini = d / local.MLFLOW_PASSWORD_FILE, d / local.MLFLOW_AUTH_INI
    assert pw_file.read_text().strip() == password and len(password) >= 12
    assert pw_file.stat().st_mode & 0o777 == 0o600 and ini.stat().st_mode & 0o777 == 0o600
    config = configparser.ConfigParser()
    assert config.read(ini)
    assert config["mlflow"]["database_uri"] == f"sqlite:///{d / local.MLFLOW_AUTH_DB}"
    assert config["mlflow"]["admin_username"] == local.MLFLOW_ADMIN
    assert int(config["mlflow"]["auth_cache_ttl_seconds"]) > 0  # else ~1 request/s on a loaded machine
    assert password not in ini.read_text()

    # Kept across up-local runs (the users' database keeps the admin's hash).
    assert _files(d) == password
    pw_file.chmod(0o644)
    notes = []
    assert _files(d, notes) == password
    assert pw_file.stat().st_mode & 0o777 == 0o600 and "readable by other users" in notes[0]


def test_a_short_password_is_refused_naming_the_file(tmp_path):
    (tmp_path / local.MLFLOW_PASSWORD_FILE).write_text("short\n")
    with pytest.raises(local.ClusterError, match=str(tmp_path / local.MLFLOW_PASSWORD_FILE)):
        _files(tmp_path)


def test_a_lost_password_is_reset_in_mlflows_user_store(tmp_path):
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{tmp_path / local.MLFLOW_AUTH_DB}"
    store = SqlAlchemyStore()
    store.init_db(uri)
    store.create_user(local.MLFLOW_ADMIN, "the-old-password-1", is_admin=True)
    store.engine.dispose()

    notes = []
    password = _files(tmp_path, notes)
    assert any("new password" in n for n in notes), notes
    store = SqlAlchemyStore()
    store.init_db(uri)
    assert store.authenticate_user(local.MLFLOW_ADMIN, password)
    assert not store.authenticate_user(local.MLFLOW_ADMIN, "the-old-password-1")
    store.engine.dispose()


def _state(tmp_path, auth: bool) -> dict:
    mlflow = {"tracking_uri": "http://127.0.0.1:5999", "port": 5999, "backend_store_uri": f"sqlite:///{tmp_path}/m.db",
              "artifacts_destination": str(tmp_path / "art"), "auth": "basic" if auth else "none"}
    if auth:
        mlflow.update(username=local.MLFLOW_ADMIN, password_file=str(tmp_path / "my dir" / local.MLFLOW_PASSWORD_FILE))
    return {"ray": {"dashboard_url": "http://127.0.0.1:8265", "auth": "disabled"}, "mlflow": mlflow}


def test_exports_read_the_password_from_its_file_and_never_print_it(tmp_path):
    state = _state(tmp_path, auth=True)
    (tmp_path / "my dir").mkdir()
    secret = "s3cret-Pa55word-with 'quote' and $dollar"
    local._write_secret(tmp_path / "my dir" / local.MLFLOW_PASSWORD_FILE, secret + "\n")

    text = local.format_exports(state)
    assert secret not in text and "PASSWORD" in text
    shell = subprocess.run(["bash", "-c", text + '\nprintf "%s|%s" "$MLFLOW_TRACKING_USERNAME" "$MLFLOW_TRACKING_PASSWORD"'],
                           capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert shell.stdout == f"{local.MLFLOW_ADMIN}|{secret}"
    assert "MLFLOW_TRACKING_PASSWORD" not in local.exports(state)
    assert local.exports(state, password=True)["MLFLOW_TRACKING_PASSWORD"] == secret
    assert "--app-name" in local._mlflow_server(state)


def test_no_mlflow_auth_starts_the_plain_server_and_exports_no_login(tmp_path):
    state = _state(tmp_path, auth=False)
    assert "--app-name" not in local._mlflow_server(state)
    assert "MLFLOW_TRACKING" not in local.format_exports(state).replace("MLFLOW_TRACKING_URI", "")


def test_cli_login_is_on_unless_opted_out():
    parser = cli.build_parser()
    assert parser.parse_args(["up-local"]).auth_mlflow is True
    assert parser.parse_args(["up-local", "--no-mlflow-auth"]).auth_mlflow is False
    assert local.LocalClusterConfig().auth_mlflow is True
