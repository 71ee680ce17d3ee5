"""The OpenAPI document's texts: docstrings turned into the Markdown Swagger UI renders."""

from broker.admin.openapi import markdown


def test_rst_literals_and_roles_become_markdown_code():
    text = ("Input ``currency`` (:class:`~broker.errors.NotFound` when unknown, see "
            ":meth:`Client.invoke` and :ref:`the guide <rates-guide>`).")
    assert markdown(text) == ("Input `currency` (`NotFound` when unknown, see `Client.invoke` "
                              "and `the guide`).")


def test_plain_markdown_is_left_alone():
    assert markdown("Echo `text` back, *repeated*.") == "Echo `text` back, *repeated*."
