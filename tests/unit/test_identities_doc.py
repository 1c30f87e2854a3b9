"""docs/identities.md is the declaration of mdmbus/identities.py, word for word: the README's
"who may do what" cannot drift from what provisioning creates."""

from mdmbus.identities import markdown
from tests.conftest import REPO_ROOT


def test_the_document_is_generated_from_the_declaration():
    on_disk = (REPO_ROOT / "docs" / "identities.md").read_text(encoding="utf-8")
    assert on_disk == markdown(), ("docs/identities.md differs from mdmbus/identities.py: "
                                   "regenerate it with `python -m mdmbus.identities > "
                                   "docs/identities.md`")
