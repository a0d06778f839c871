"""Every GraphQL document the Linear source sends is valid against Linear's published schema."""

from __future__ import annotations

import pytest
from gql import GraphQLRequest
from graphql import parse, validate

from bot.context import linear
from tests.fakes.linear_api import linear_schema

# Found by scanning the module, so a document added later cannot be left out.
_DOCUMENTS = {
    name: value for name, value in vars(linear).items() if isinstance(value, GraphQLRequest)
}


def test_the_module_has_documents_to_check() -> None:
    assert {"ISSUE_QUERY", "TEAM_IN_PROGRESS_QUERY", "TEAM_QUERY"} <= set(_DOCUMENTS)


@pytest.mark.parametrize("name", sorted(_DOCUMENTS))
def test_document_is_valid_against_linears_schema(name: str) -> None:
    errors = validate(linear_schema(), _DOCUMENTS[name].document)
    assert errors == [], [error.message for error in errors]


def test_a_misspelt_field_is_caught() -> None:
    """Proves the check above can fail: Linear's Issue has `title`, not `titel`."""
    errors = validate(linear_schema(), parse('{ issue(id: "PAY-1") { identifier titel } }'))
    assert len(errors) == 1
    assert errors[0].message.startswith("Cannot query field 'titel' on type 'Issue'.")
