"""notebooks/GLOSSARY.md: every glossary link of the notebooks lands on an entry, every entry is linked from a lesson."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from notebook_text import NOTEBOOKS, ROOT, github_anchors, headings, lessons, links, load

GLOSSARY = NOTEBOOKS / "GLOSSARY.md"
TEXT = GLOSSARY.read_text(encoding="utf-8")
ISSUE_TERMS = ["payload-format-20", "etag", "prefix", "gateway-and-interface-endpoints", "eni", "imdsv2", "rollup",
               "session", "funnel", "bounce"]
DOCS_SECTION = "AWS documentation"
# Where each service of the templates (AWS::<service>::...) is documented, as a part of the URL.
SERVICE_DOCS = {"ApiGatewayV2": "/apigateway/", "Lambda": "/lambda/", "S3": "/AmazonS3/", "EC2": "/AWSEC2/",
                "SecretsManager": "/secretsmanager/", "SSM": "/systems-manager/", "Cognito": "/cognito/",
                "CloudFront": "/AmazonCloudFront/", "Events": "/eventbridge/", "SQS": "/AWSSimpleQueueService/",
                "CloudWatch": "/AmazonCloudWatch/", "Logs": "/AmazonCloudWatch/latest/logs/", "IAM": "/IAM/"}


def entries() -> dict[str, str]:
    """{anchor: body} of each glossary entry (the level-2 headings but the documentation list)."""
    parts = re.split(r"^## (.+)\n", TEXT, flags=re.M)
    return {github_anchors(f"## {title}").pop(): body for title, body in zip(parts[1::2], parts[2::2])
            if title != DOCS_SECTION}


def notebooks() -> list[Path]:
    return sorted([*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("solutions/*.ipynb")])


def glossary_links(path: Path) -> list[tuple[str, str]]:
    """(href, anchor) of each link of a notebook's Markdown to the glossary (an anchor of "" is the whole page)."""
    found = []
    for cell in load(path):
        if cell["cell_type"] != "markdown":
            continue
        for href in links(cell["source"]):
            target, _, anchor = href.partition("#")
            if "GLOSSARY" in target.upper():
                assert (path.parent / unquote(target)).resolve() == GLOSSARY, f"{path.name}: {href} is not {GLOSSARY}"
                found.append((href, anchor))
    return found


def test_github_anchors_follow_githubs_rules():
    assert github_anchors("## Payload format 2.0\n## Gateway and interface endpoints\n## The `clickstream` CLI") == {
        "payload-format-20", "gateway-and-interface-endpoints", "the-clickstream-cli"}
    assert github_anchors("## Session\n## Session") == {"session", "session-1"}


def test_the_issue_terms_are_entries_of_two_to_five_sentences_naming_their_lesson():
    assert list(entries())[: len(ISSUE_TERMS)] == ISSUE_TERMS
    for anchor, body in entries().items():
        prose = " ".join(line for line in body.splitlines() if not line.startswith(("AWS: ", "[")))
        sentences = len(re.findall(r"[.!?](?:\s|$)", re.sub(r"`[^`]*`", "", prose)))
        assert 2 <= sentences <= 5, (anchor, sentences)
        assert re.search(r"Used in lessons? \d\d", body), f"#{anchor} does not say which lesson uses it"


def test_aws_terms_link_the_aws_documentation():
    for anchor in ["payload-format-20", "etag", "prefix", "gateway-and-interface-endpoints", "eni", "imdsv2"]:
        assert any(href.startswith("https://docs.aws.amazon.com/") for href in links(entries()[anchor])), anchor


def test_every_service_of_the_templates_is_in_the_documentation_section():
    section = TEXT.split(f"## {DOCS_SECTION}\n", 1)[1]
    declared = {match for template in (ROOT / "cloudformation").glob("*.yaml")
                for match in re.findall(r"Type: AWS::(\w+)::", template.read_text(encoding="utf-8"))}
    assert declared, "no resource types found in cloudformation/"
    hrefs = links(section)
    assert "/AWSCloudFormation/" in " ".join(hrefs)
    missing = {service for service in declared if not any(SERVICE_DOCS[service] in href for href in hrefs)}
    assert not missing, f"services of the templates without documentation links: {missing}"


def test_links_within_the_glossary_resolve():
    anchors = github_anchors(TEXT)
    for href in links(TEXT):
        if href.startswith("#"):
            assert href[1:] in anchors, href


@pytest.mark.parametrize("path", notebooks(), ids=lambda path: str(path.relative_to(NOTEBOOKS)))
def test_notebook_links_to_the_glossary_resolve(path):
    anchors = github_anchors(TEXT)
    for href, anchor in glossary_links(path):
        assert anchor == "" or anchor in anchors, f"{path.name}: {href} is not a heading of the glossary"


def test_every_entry_is_linked_from_a_lesson():
    linked = {anchor for path in lessons() for _, anchor in glossary_links(path)}
    unlinked = [anchor for anchor in entries() if anchor not in linked]
    assert not unlinked, f"glossary entries no lesson links to: {unlinked}"


def test_the_readme_and_notebook_00_link_the_glossary():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "notebooks/GLOSSARY.md" in links(readme)
    welcome = next(NOTEBOOKS.glob("00_*.ipynb"))
    assert ("GLOSSARY.md", "") in glossary_links(welcome)
    assert [h.text for h in headings(TEXT)][0] == "Glossary"
