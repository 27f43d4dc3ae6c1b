"""clickstream.infra.dbprobe on the test stack's two servers: each role gets into its own database, every
crossing is refused with the server's reason, and a server lists what the role sees."""

from psycopg.conninfo import make_conninfo

from clickstream.infra import dbprobe
from clickstream.local import stack


def test_each_role_reaches_its_own_database_only(local_stack):
    status = stack.status(local_stack)
    reader, shop = stack.warehouse_dsn(local_stack, "dashboard_reader"), stack.shop_dsn(local_stack)
    oltp_port = status["services"]["oltp"]["port"]
    assert dbprobe.try_connect(reader) == f"connected as dashboard_reader to {stack.DW_DATABASE}"
    assert dbprobe.try_connect(shop) == f"connected as shop_app to {stack.OLTP_DATABASE}"
    wrong_database = dbprobe.try_connect(make_conninfo(reader, dbname=stack.OLTP_DATABASE))
    assert wrong_database == f'refused: database "{stack.OLTP_DATABASE}" does not exist'
    other_server = dbprobe.try_connect(make_conninfo(reader, port=oltp_port, dbname=stack.OLTP_DATABASE))
    assert other_server.startswith("refused: password authentication failed for user \"dashboard_reader\"")


def test_server_contents_list_databases_and_login_roles(local_stack):
    contents = dbprobe.server_contents(stack.warehouse_dsn(local_stack, "dashboard_reader"))
    assert contents["logged in as"] == f"dashboard_reader on {stack.DW_DATABASE}"
    assert contents["databases"] == stack.DW_DATABASE
    assert {"dashboard_reader", "etl_writer"} <= set(contents["login roles"].split(", "))
    assert "shop_app" not in contents["login roles"].split(", ")
