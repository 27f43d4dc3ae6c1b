"""clickstream.analytics.secrets: the DW connection comes from a Secrets Manager secret, with clear errors when it cannot."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from clickstream.analytics.secrets import SecretError, dsn_from_secret, dw_etl_writer_value, put_secret

NAME = "clickstream/dw/etl_writer-unit"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def secretsmanager(aws_credentials):
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_dsn_from_an_rds_style_secret(secretsmanager):
    value = dw_etl_writer_value("p@ss w'rd=;", "127.0.0.1", 15432, CA)
    secretsmanager.create_secret(Name=NAME, SecretString=json.dumps(value))
    params = conninfo_to_dict(dsn_from_secret(secretsmanager, NAME))
    with open(params.pop("sslrootcert"), encoding="ascii") as f:
        assert f.read() == CA
    assert params == {
        "host": "127.0.0.1", "port": "15432", "dbname": "clickstream_dw", "user": "etl_writer",
        "password": "p@ss w'rd=;", "sslmode": "verify-full",
    }


def test_a_missing_secret_says_how_to_create_it(secretsmanager):
    with pytest.raises(SecretError, match=f"secret {NAME} not found: locally `clickstream up` creates it"):
        dsn_from_secret(secretsmanager, NAME)
    with pytest.raises(SecretError, match="DW_SECRET_ID is empty"):
        dsn_from_secret(secretsmanager, "")


@pytest.mark.parametrize(("secret", "message"), [
    ("not json", "is not a JSON object"),
    ('["etl_writer"]', "is not a JSON object"),
    ('{"username": "etl_writer", "host": "h", "port": 5432, "dbname": "d", "sslmode": "require"}', "lacks password$"),
    ('{"username": "etl_writer", "password": "x", "host": "h", "port": "five", "dbname": "d", "sslmode": "require"}',
     "port must be a number"),
])
def test_an_unusable_secret_is_named_without_its_values(secretsmanager, secret, message):
    secretsmanager.create_secret(Name=NAME, SecretString=secret)
    with pytest.raises(SecretError, match=message) as raised:
        dsn_from_secret(secretsmanager, NAME)
    assert '"x"' not in str(raised.value) and "password\": " not in str(raised.value)


def test_put_secret_creates_then_updates_only_on_change(secretsmanager):
    first = dw_etl_writer_value("one", "127.0.0.1", 15432, CA)
    assert put_secret(secretsmanager, NAME, first) is True
    assert put_secret(secretsmanager, NAME, first) is False
    assert put_secret(secretsmanager, NAME, {**first, "port": 25432}) is True
    stored = json.loads(secretsmanager.get_secret_value(SecretId=NAME)["SecretString"])
    assert stored["port"] == 25432 and stored["password"] == "one" and stored["engine"] == "postgres"
