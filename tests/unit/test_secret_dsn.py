"""The DSN the DW secret makes: TLS as the secret says (sslmode, the CA in a private file), failing closed on a
secret without its TLS keys."""

from __future__ import annotations

import os
import stat

import pytest
from psycopg.conninfo import conninfo_to_dict

from clickstream.analytics import secrets
from clickstream.analytics.secrets import SecretError, check_value, dsn, dsn_from_value, dw_etl_writer_value

CA = "-----BEGIN CERTIFICATE-----\nMIIBLOCAL\n-----END CERTIFICATE-----\n"
OTHER_CA = "-----BEGIN CERTIFICATE-----\nMIIBOTHER\n-----END CERTIFICATE-----\n"
ID = "clickstream/dw/etl_writer-unit"


def secret(**changes) -> dict:
    value = {**dw_etl_writer_value("pw", "10.20.10.10", 5432, CA), **changes}
    return {key: item for key, item in value.items() if item is not None}


def test_verify_full_names_a_private_file_holding_the_ca():
    params = conninfo_to_dict(dsn_from_value(secret(), ID))
    assert params["sslmode"] == "verify-full" and params["host"] == "10.20.10.10" and params["port"] == "5432"
    path = params["sslrootcert"]
    with open(path, encoding="ascii") as f:
        assert f.read() == CA
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_ca_file_is_written_once_per_process_and_again_if_deleted():
    first = secrets.ca_file(CA)
    assert secrets.ca_file(CA) == first
    assert secrets.ca_file(OTHER_CA) != first
    os.unlink(first)
    again = secrets.ca_file(CA)
    with open(again, encoding="ascii") as f:
        assert f.read() == CA


def test_another_address_keeps_the_tls_settings():
    params = conninfo_to_dict(dsn_from_value(secret(), ID, host="127.0.0.1", port=40123))
    assert (params["host"], params["port"], params["sslmode"]) == ("127.0.0.1", "40123", "verify-full")
    assert params["user"] == "etl_writer" and params["password"] == "pw"


def test_without_a_ca_the_local_value_says_disable_and_names_no_file():
    value = dw_etl_writer_value("pw", "127.0.0.1", 15432, None)
    assert value["sslmode"] == "disable" and "sslrootcert_pem" not in value
    params = conninfo_to_dict(dsn_from_value(value, ID))
    assert params["sslmode"] == "disable" and "sslrootcert" not in params


@pytest.mark.parametrize(("changes", "message"), [
    ({"sslmode": None, "sslrootcert_pem": None}, "lacks sslmode \\(the warehouse's TLS settings"),
    ({"sslmode": None}, "lacks sslmode \\("),
    ({"sslrootcert_pem": None}, "lacks sslrootcert_pem \\("),
    ({"sslmode": "verify-ca", "sslrootcert_pem": ""}, "lacks sslrootcert_pem"),
    ({"sslmode": "verify-everything"}, "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full"),
    ({"sslrootcert_pem": "not a certificate"}, "sslrootcert_pem is not a PEM certificate"),
    ({"host": None, "sslmode": None}, "lacks host, sslmode"),
])
def test_a_secret_without_its_tls_settings_fails_closed(changes, message):
    with pytest.raises(SecretError, match=f"^secret {ID}: {message}" if "must" in message or "PEM" in message
                       else f"^secret {ID} {message}"):
        dsn_from_value(secret(**changes), ID)


def test_require_needs_no_ca():
    check_value(secret(sslmode="require", sslrootcert_pem=None), ID)
    assert conninfo_to_dict(dsn_from_value(secret(sslmode="require", sslrootcert_pem=None), ID))["sslmode"] == "require"


def test_dsn_without_tls_arguments_is_as_before():
    assert conninfo_to_dict(dsn("127.0.0.1", 5432, "d", "u", "p")) == {
        "host": "127.0.0.1", "port": "5432", "dbname": "d", "user": "u", "password": "p"}
