"""checks.etl_writer_connects_over_tls_only on broken copies of the templates: each way the warehouse's user data can
let etl_writer in without TLS, or leave the ETL unverified, is found and named."""

from __future__ import annotations

import pytest

from clickstream.infra.breakages import broken_copy
from clickstream.infra.checks import Templates, etl_writer_connects_over_tls_only
from clickstream.settings import project_root

TEMPLATES = project_root() / "cloudformation"


def replacing(old: str, new: str):
    def change(templates):
        body = templates["analytics.yaml"].props("DwInstance")["UserData"]["Fn::Base64"]["Fn::Sub"]
        assert old in body[0]
        body[0] = body[0].replace(old, new)
    return change


def findings(tmp_path, change) -> list[str]:
    return [finding.message for finding in etl_writer_connects_over_tls_only(Templates(
        broken_copy(TEMPLATES, tmp_path / "templates", change)))]


def test_the_real_templates_pass():
    assert etl_writer_connects_over_tls_only(Templates(TEMPLATES)) == []


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('sed -i "s/^#\\?ssl = .*/ssl = on/"', "true", "does not set ssl = on with ssl_cert_file and ssl_key_file"),
    ("hostssl clickstream_dw etl_writer 127.0.0.1/32 scram-sha-256", "hostssl clickstream_dw etl_writer 127.0.0.1/32 trust",
     "admits etl_writer with a hostssl entry (trust): only hostssl with scram-sha-256"),
    ("local all etl_writer reject", "local all etl_writer peer", "admits etl_writer with a local entry (peer)"),
    ("host all etl_writer all reject", "", "does not refuse etl_writer's other TCP connections"),
    ("aws secretsmanager put-secret-value", "echo", "does not write sslmode verify-full and its CA (sslrootcert_pem) "
                                                    "into the DW secret"),
    ("sslrootcert_pem: $ca", "ca: $ca", "does not write sslmode verify-full"),
])
def test_each_way_around_tls_is_found(tmp_path, old, new, problem):
    messages = findings(tmp_path, replacing(old, new))
    assert len(messages) == 1 and messages[0].startswith(problem), messages


def test_without_hostssl_entries_both_problems_are_named(tmp_path):
    messages = findings(tmp_path, replacing("hostssl clickstream_dw etl_writer", "host clickstream_dw etl_writer"))
    assert "has no hostssl entry for etl_writer" in messages
    assert sum(message.startswith("admits etl_writer with a host entry (scram-sha-256)") for message in messages) == 3
