"""Tests for batchscraper.extraction: structured-data parsing, mapping and coercion."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import lxml.html
import pytest

from batchscraper.extraction.coerce import coerce_to_schema, parse_number
from batchscraper.extraction.structured import (
    StructuredData,
    jsonld_from_text,
    map_to_schema,
    parse_structured_data,
    structured_data_from_tree,
)

BASE_URL = "https://shop.example/item/1"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
COVERED_MIN_ACCURACY = 0.9


def page(head: str = "", body: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def jsonld(obj: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(obj)}</script>'


def extract(html: str | bytes, schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    data, evidence = map_to_schema(parse_structured_data(html, BASE_URL), schema)
    return coerce_to_schema(data, schema), evidence


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


STR = {"type": "string"}
NUM = {"type": ["number", "null"]}
INT = {"type": ["integer", "null"]}
DATE = {"type": ["string", "null"], "format": "date"}

PRODUCT = {
    "@context": "https://schema.org",
    "@type": "Product",
    "name": "Trail Shoe X",
    "sku": "TS-42",
    "gtin13": "4006381333931",
    "brand": {"@type": "Brand", "name": "Acme"},
    "image": [{"@type": "ImageObject", "url": "https://cdn.example/x.jpg"}],
    "aggregateRating": {"@type": "AggregateRating", "ratingValue": "4.6", "reviewCount": "87"},
    "offers": [
        {"@type": "Offer", "price": "1,299.00", "priceCurrency": "USD",
         "availability": "https://schema.org/InStock"},
        {"@type": "Offer", "price": "1,399.00", "priceCurrency": "USD",
         "availability": "https://schema.org/OutOfStock"},
    ],
}
ORGANIZATION = {"@context": "https://schema.org", "@type": "Organization", "name": "Shop Inc"}


# =========================================================================== parsing
def test_parse_product_with_offers_list() -> None:
    schema = obj(name=STR, price=NUM, currency=STR, in_stock={"type": "boolean"},
                 availability={"type": "string", "enum": ["InStock", "OutOfStock"]},
                 brand=STR, gtin=STR, sku=STR, rating=NUM, review_count=INT,
                 image={"type": "string", "format": "uri"}, color=STR)
    data, evidence = extract(page(jsonld(ORGANIZATION) + jsonld(PRODUCT)), schema)
    assert data == {
        "name": "Trail Shoe X", "price": 1299.0, "currency": "USD", "in_stock": True,
        "availability": "InStock", "brand": "Acme", "gtin": "4006381333931", "sku": "TS-42",
        "rating": 4.6, "review_count": 87, "image": "https://cdn.example/x.jpg",
    }
    assert "color" not in data
    assert set(evidence.values()) == {"jsonld"}
    jsonschema.validate(data, schema)


def test_graph_is_flattened_and_references_resolved() -> None:
    graph = {"@context": "https://schema.org", "@graph": [
        {"@type": "WebSite", "@id": "https://news.example/#site", "name": "News Example"},
        {"@type": "Person", "@id": "https://news.example/#jane", "name": "Jane Doe"},
        {"@type": "Organization", "@id": "https://news.example/#org", "name": "Example Media"},
        {"@type": "NewsArticle", "headline": "Rates rise again",
         "author": [{"@id": "https://news.example/#jane"}, {"@type": "Person", "name": "Bo Li"}],
         "publisher": {"@id": "https://news.example/#org"},
         "datePublished": "2024-03-05T08:30:00+01:00"},
    ]}
    sd = parse_structured_data(page(jsonld(graph)), BASE_URL)
    assert [n["@type"] for n in sd.jsonld] == ["WebSite", "Person", "Organization",
                                                 "NewsArticle"]
    schema = obj(title=STR, author=STR, authors={"type": "array", "items": STR},
                 published_date=DATE, site_name=STR)
    data, evidence = extract(page(jsonld(graph)), schema)
    assert data == {"title": "Rates rise again", "author": "Jane Doe, Bo Li",
                    "authors": ["Jane Doe", "Bo Li"], "published_date": "2024-03-05",
                    "site_name": "Example Media"}
    assert evidence["title"] == "jsonld"


def test_microdata_only_product() -> None:
    body = """
    <div itemscope itemtype="https://schema.org/Product">
      <h1 itemprop="name">Desk Lamp</h1>
      <span itemprop="brand" itemscope itemtype="https://schema.org/Brand">
        <span itemprop="name">Lumo</span></span>
      <meta itemprop="sku" content="DL-7">
      <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
        <span itemprop="priceCurrency" content="EUR">€</span>
        <span itemprop="price" content="49.90">49,90</span>
        <link itemprop="availability" href="https://schema.org/OutOfStock">
      </div>
    </div>"""
    schema = obj(title=STR, brand=STR, offer=obj(price=NUM, currency=STR,
                                                  in_stock={"type": ["boolean", "null"]}),
                 identifiers=obj(sku=STR, mpn=STR))
    data, evidence = extract(page(body=body), schema)
    assert data == {"title": "Desk Lamp", "brand": "Lumo",
                    "offer": {"price": 49.9, "currency": "EUR", "in_stock": False},
                    "identifiers": {"sku": "DL-7"}}
    assert set(evidence.values()) == {"microdata"}


def test_jsonld_boilerplate_falls_back_to_microdata() -> None:
    body = ('<div itemscope itemtype="http://schema.org/Product">'
            '<span itemprop="name">Kettle</span><meta itemprop="sku" content="K1"></div>')
    crumbs = {"@context": "https://schema.org", "@type": "BreadcrumbList",
              "itemListElement": [{"@type": "ListItem", "position": 1, "name": "Home"}]}
    data, evidence = extract(page(jsonld(crumbs) + jsonld(ORGANIZATION), body),
                             obj(name=STR, sku=STR))
    assert data == {"name": "Kettle", "sku": "K1"}
    assert evidence == {"name": "microdata", "sku": "microdata"}


def test_opengraph_only() -> None:
    head = """
    <meta property="og:title" content="How to Brew Tea | Tea Times">
    <meta property="og:site_name" content="Tea Times">
    <meta property="og:description" content="Steep, sip, repeat.">
    <meta property="og:image" content="https://tea.example/cup.jpg">
    <meta property="article:published_time" content="2023-06-07T20:54:26Z">
    <meta property="article:author" content="https://tea.example/authors/ann">
    <meta property="product:price:amount" content="12.50">"""
    schema = obj(title=STR, description=STR, image=STR, site_name=STR,
                 published_date=DATE, author=STR, price=NUM)
    data, evidence = extract(page(head), schema)
    assert data == {"title": "How to Brew Tea", "description": "Steep, sip, repeat.",
                    "image": "https://tea.example/cup.jpg", "site_name": "Tea Times",
                    "published_date": "2023-06-07", "price": 12.5}
    assert set(evidence.values()) == {"og"}


def test_broken_jsonld_does_not_hide_other_scripts() -> None:
    broken = '<script type="application/ld+json">{"@type": "Product", "name": </script>'
    good = jsonld({"@type": "Product", "name": "Survivor", "sku": "S-1"})
    sd = parse_structured_data(page(broken + good), BASE_URL)
    assert [n.get("name") for n in sd.jsonld] == ["Survivor"]
    assert parse_structured_data(page(broken), BASE_URL).jsonld == []


@pytest.mark.parametrize("wrapped", [
    "<![CDATA[ {json} ]]>", "//<![CDATA[\n{json}\n//]]>", "<!-- {json} -->",
    "<!--//<![CDATA[\n{json}\n//]]>-->",
])
def test_jsonld_wrapped_in_cdata_or_a_comment(wrapped: str) -> None:
    node = {"@type": "NewsArticle", "headline": "Wrapped",
            "publisher": {"@type": "Organization", "name": "Voodoo Press"}}
    script = wrapped.replace("{json}", json.dumps(node))
    html = page(f'<script type="application/ld+json">{script}</script>')
    data, evidence = extract(html, obj(title=STR, site_name=STR))
    assert data == {"title": "Wrapped", "site_name": "Voodoo Press"}
    assert evidence == {"title": "jsonld", "site_name": "jsonld"}


def test_opengraph_site_name_without_its_tagline() -> None:
    html = page('<meta property="og:site_name" content="Daily Example - News you need">'
                '<meta property="og:title" content="Bridge news | Daily Example">')
    data, _ = extract(html, obj(title=STR, site_name=STR))
    assert data == {"title": "Bridge news", "site_name": "Daily Example"}


@pytest.mark.parametrize("html", ["", "   ", b"", b"\x00\xff\xfe garbage <<<>>>", "<html",
                                  "<?xml version='1.0' encoding='utf-8'?><html></html>"])
def test_unparsable_input_never_raises(html: str | bytes) -> None:
    sd = parse_structured_data(html, BASE_URL)
    assert isinstance(sd, StructuredData)
    assert map_to_schema(sd, obj(name=STR)) == ({}, {})


def test_bytes_are_decoded_with_declared_charset() -> None:
    html = page('<meta charset="windows-1250">'
                '<meta property="og:title" content="Aktuálně: Součka">').encode("windows-1250")
    data, _ = extract(html, obj(title=STR))
    assert data == {"title": "Aktuálně: Součka"}


# =========================================================================== recipes
RECIPE = {
    "@context": "https://schema.org", "@type": "Recipe", "name": "Tomato Soup",
    "author": {"@type": "Person", "name": "Ada"},
    "prepTime": "PT15M", "cookTime": "PT1H30M", "totalTime": "P0DT1H45M",
    "recipeYield": ["4", "4 servings"],
    "recipeIngredient": ["2 tomatoes", "1 onion &amp; salt"],
    "nutrition": {"@type": "NutritionInformation", "calories": "250 kcal",
                  "proteinContent": "3 grams protein"},
    "recipeInstructions": [
        {"@type": "HowToSection", "name": "Prep", "itemListElement": [
            {"@type": "HowToStep", "text": "Chop."}]},
        {"@type": "HowToSection", "name": "Cook", "itemListElement": [
            {"@type": "HowToStep", "text": "Simmer."}, {"@type": "HowToStep", "text": "Blend."}]},
    ],
}


def test_recipe_durations_yield_and_nutrition() -> None:
    schema = obj(title=STR, author=STR, total_time_minutes=INT, prep_time_minutes=INT,
                 cook_time_minutes=INT, servings=INT, yields=STR, calories=NUM,
                 ingredients={"type": "array", "items": STR},
                 nutrition=obj(calories=NUM, protein_grams=NUM))
    data, _ = extract(page(jsonld(RECIPE)), schema)
    assert data == {
        "title": "Tomato Soup", "author": "Ada", "total_time_minutes": 105,
        "prep_time_minutes": 15, "cook_time_minutes": 90, "servings": 4,
        "yields": "4 servings", "calories": 250.0,
        "ingredients": ["2 tomatoes", "1 onion & salt"],
        "nutrition": {"calories": 250.0, "protein_grams": 3.0},
    }
    jsonschema.validate(data, schema)


def test_recipe_steps_as_objects_and_strings() -> None:
    step = obj(position={"type": "integer"}, text=STR)
    step["required"] = ["position", "text"]
    schema = obj(steps={"type": "array", "items": step},
                 instructions={"type": "array", "items": STR})
    data, _ = extract(page(jsonld(RECIPE)), schema)
    assert data["steps"] == [{"position": 1, "text": "Prep"}, {"position": 2, "text": "Chop."},
                             {"position": 3, "text": "Cook"},
                             {"position": 4, "text": "Simmer."},
                             {"position": 5, "text": "Blend."}]
    assert data["instructions"] == ["Prep", "Chop.", "Cook", "Simmer.", "Blend."]
    plain = dict(RECIPE, recipeInstructions="Chop.\nSimmer.\n\nBlend.")
    data, _ = extract(page(jsonld(plain)), schema)
    assert [s["text"] for s in data["steps"]] == ["Chop.", "Simmer.", "Blend."]


# =========================================================================== nested / arrays
def _event(date: str, venue: str, city: str) -> dict[str, Any]:
    return {"@context": "http://schema.org", "@type": "MusicEvent", "name": "The Band",
            "startDate": date,
            "location": {"@type": "Place", "name": venue,
                         "address": {"@type": "PostalAddress", "addressLocality": city,
                                     "streetAddress": "1 Main St", "postalCode": None}},
            "performer": [{"@type": "MusicGroup", "name": "The Band"},
                          {"@type": "MusicGroup", "name": "Support Act"}]}


def test_nested_object_from_location() -> None:
    schema = obj(name=STR, start_date=DATE, performers={"type": "array", "items": STR},
                 venue=obj(name=STR, city=STR, street_address=STR, postal_code=STR))
    data, _ = extract(page(jsonld(_event("2017-06-12T20:00:00+0100", "Hall", "London"))),
                      schema)
    assert data == {"name": "The Band", "start_date": "2017-06-12",
                    "performers": ["The Band", "Support Act"],
                    "venue": {"name": "Hall", "city": "London", "street_address": "1 Main St"}}


def test_array_of_objects_collected_from_every_event() -> None:
    item = obj(date={"type": "string", "format": "date"}, venue=STR, city=STR)
    schema = obj(artist=STR, events={"type": "array", "items": item})
    events = [_event("2015-10-26T19:00:00+0000", "Cliffs", "Westcliff"),
              _event("2015-10-27T19:00:00+0000", "Academy", "London")]
    data, evidence = extract(page("".join(jsonld(e) for e in events)), schema)
    assert data == {"artist": "The Band", "events": [
        {"date": "2015-10-26", "venue": "Cliffs", "city": "Westcliff"},
        {"date": "2015-10-27", "venue": "Academy", "city": "London"}]}
    assert evidence == {"artist": "jsonld", "events": "jsonld"}


def test_variants_skip_incomplete_elements() -> None:
    product = {"@type": "Product", "name": "Flea Tablets", "offers": [
        {"@type": "AggregateOffer", "lowPrice": "5.29", "priceCurrency": "GBP"},
        {"@type": "Offer", "name": "6 pack", "sku": "F6", "price": "9.56"},
        {"@type": "Offer", "name": "3 pack", "sku": "F3", "price": "5.29"}]}
    variant = obj(name=STR, sku=STR, price={"type": "number"})
    variant["required"] = ["name", "price"]
    schema = obj(name=STR, currency=STR, variants={"type": "array", "items": variant})
    data, _ = extract(page(jsonld(product)), schema)
    assert data == {"name": "Flea Tablets", "currency": "GBP", "variants": [
        {"name": "6 pack", "sku": "F6", "price": 9.56},
        {"name": "3 pack", "sku": "F3", "price": 5.29}]}


def test_a_grouping_field_next_to_a_plain_value_of_a_like_named_key() -> None:
    product = {"@type": "Product", "name": "Weather Station", "sku": "WS 570 II",
               "identifier": "8592733020681", "gtin13": "8592733020681",
               "author": "Jane Doe"}
    schema = obj(name=STR, identifiers=obj(sku=STR, gtin=STR),
                 author=obj(name=STR, url=STR))
    data, evidence = extract(page(jsonld(product)), schema)
    # "identifier" holds a plain value, not the group: sku and gtin come from the product;
    # a plain "author" is not the product's own name and url
    assert data == {"name": "Weather Station",
                    "identifiers": {"sku": "WS 570 II", "gtin": "8592733020681"}}
    assert evidence == {"name": "jsonld", "identifiers": "jsonld"}


def test_description_hint_and_unrelated_entities() -> None:
    product = dict(PRODUCT, productID="pid-9")
    schema = obj(retailer_id={"type": "string", "description": "The productID of the item"},
                 name=STR)
    data, _ = extract(page(jsonld(ORGANIZATION) + jsonld(product)), schema)
    assert data == {"retailer_id": "pid-9", "name": "Trail Shoe X"}


def test_jsonld_wins_over_microdata_and_microdata_fills_gaps() -> None:
    body = ('<div itemscope itemtype="https://schema.org/Product">'
            '<span itemprop="name">Trail Shoe X</span><meta itemprop="mpn" content="M-9">'
            '<meta itemprop="sku" content="MICRO-SKU"></div>')
    data, evidence = extract(page(jsonld(PRODUCT), body), obj(name=STR, sku=STR, mpn=STR))
    assert data == {"name": "Trail Shoe X", "sku": "TS-42", "mpn": "M-9"}
    assert evidence == {"name": "jsonld", "sku": "jsonld", "mpn": "microdata"}


def test_author_url_is_not_a_name_and_text_is_cleaned() -> None:
    article = {"@type": "BlogPosting", "headline": "\uf004 Big <b>news</b>\u200b today",
               "author": "https://blog.example/authors/7", "url": "https://blog.example/p/1"}
    data, _ = extract(page(jsonld(article)), obj(title=STR, author=STR, url=STR))
    assert data == {"title": "Big news today", "url": "https://blog.example/p/1"}


def test_structured_data_from_tree_reuses_a_parsed_page() -> None:
    tree = lxml.html.document_fromstring(page(jsonld(PRODUCT)))
    sd = structured_data_from_tree(tree, BASE_URL)
    assert map_to_schema(sd, obj(sku=STR)) == ({"sku": "TS-42"}, {"sku": "jsonld"})


def test_faq_and_job_posting() -> None:
    faq = {"@type": "FAQPage", "mainEntity": [
        {"@type": "Question", "name": "Q1?", "acceptedAnswer": {"text": "<p>A1</p>"}},
        {"@type": "Question", "name": "Q2?", "acceptedAnswer": {"text": "A2"}}]}
    qa = obj(question=STR, answer=STR)
    data, _ = extract(page(jsonld(faq)), obj(questions={"type": "array", "items": qa}))
    assert data == {"questions": [{"question": "Q1?", "answer": "A1"},
                                  {"question": "Q2?", "answer": "A2"}]}
    job = {"@type": "JobPosting", "title": "Engineer", "datePosted": "2024-01-02",
           "hiringOrganization": {"@type": "Organization", "name": "Acme"},
           "jobLocation": {"@type": "Place", "address": {"addressLocality": "Berlin",
                                                         "addressCountry": "DE"}},
           "baseSalary": {"currency": "EUR", "value": {"minValue": 50000, "maxValue": 70000}}}
    schema = obj(title=STR, company=STR, location=STR, salary=NUM, date_posted=DATE)
    data, _ = extract(page(jsonld(job)), schema)
    assert data == {"title": "Engineer", "company": "Acme", "location": "Berlin, DE",
                    "salary": 50000.0, "date_posted": "2024-01-02"}


def test_no_structured_data_gives_nothing() -> None:
    assert map_to_schema(StructuredData(), obj(name=STR)) == ({}, {})
    sd = parse_structured_data(page(body="<p>Just text</p>"), BASE_URL)
    assert map_to_schema(sd, obj(name=STR, price=NUM)) == ({}, {})


# =========================================================================== coercion
@pytest.mark.parametrize(("value", "schema", "expected"), [
    ("1,299.00", NUM, 1299.0),
    ("$1,299.00", NUM, 1299.0),
    ("1.299,00 €", NUM, 1299.0),
    ("12", {"type": "integer"}, 12),
    ("12,50", {"type": "number"}, 12.5),
    ("EUR 1 299", {"type": "number"}, 1299.0),
    ("Rs. 2,433", {"type": "number"}, 2433.0),
    ("-3,5", {"type": "number"}, -3.5),
    ("4 servings", {"type": "integer"}, 4),
    (4.0, {"type": "integer"}, 4),
    ("PT1H30M", {"type": "integer"}, 90),
    ("about twelve", NUM, "about twelve"),
    ("1/2", NUM, "1/2"),
    ("true", {"type": "boolean"}, True),
    ("No", {"type": "boolean"}, False),
    ("InStock", {"type": "boolean"}, True),
    ("https://schema.org/InStock", {"type": ["boolean", "null"]}, True),
    ("in stock", {"type": "boolean"}, True),
    ("maybe", {"type": "boolean"}, "maybe"),
    (12, STR, "12"),
    (12.5, STR, "12.5"),
    ("solo", {"type": "array", "items": STR}, ["solo"]),
    ("3", {"type": "array", "items": {"type": "integer"}}, [3]),
    ("June 7, 2023", DATE, "2023-06-07"),
    ("2023-06-07T20:54:26Z", DATE, "2023-06-07"),
    ("07/06/2023", DATE, "07/06/2023"),
    ("25/06/2023", DATE, "2023-06-25"),
    ("gbp", {"type": "string", "pattern": "^[A-Z]{3}$"}, "GBP"),
    ("https://schema.org/OutOfStock", {"type": "string", "enum": ["InStock", "OutOfStock"]},
     "OutOfStock"),
    (None, NUM, None),
    ({"a": 1}, NUM, {"a": 1}),
])
def test_coerce_scalars(value: Any, schema: dict[str, Any], expected: Any) -> None:
    assert coerce_to_schema(value, schema) == expected


def test_coerce_nested_and_never_raises() -> None:
    schema = obj(offer=obj(price=NUM, in_stock={"type": "boolean"}),
                 cook_time_minutes={"type": "integer"},
                 steps={"type": "array", "items": obj(position={"type": "integer"}, text=STR)},
                 tags={"type": "array", "items": STR},
                 maybe={"anyOf": [{"type": "number"}, {"type": "null"}]})
    data = {"offer": {"price": "£34.99", "in_stock": "yes"}, "cook_time_minutes": "PT45M",
            "steps": [{"position": "1", "text": 5}], "tags": "one", "maybe": "7", "extra": "x"}
    assert coerce_to_schema(data, schema) == {
        "offer": {"price": 34.99, "in_stock": True}, "cook_time_minutes": 45,
        "steps": [{"position": 1, "text": "5"}], "tags": ["one"], "maybe": 7.0, "extra": "x"}
    weird: dict[str, Any] = {"type": object(), "properties": "nope", "pattern": "("}
    assert coerce_to_schema({"a": "1"}, weird) == {"a": "1"}
    assert coerce_to_schema("x", {"type": "string", "pattern": "(["}) == "x"


def test_parse_number_separators() -> None:
    assert parse_number("1.234.567") == 1234567.0
    assert parse_number("1'299.50 CHF") == 1299.5
    assert parse_number("Serves 4-6", lenient=True) == 4.0
    assert parse_number("Serves 4-6") is None


# =========================================================================== corpus
def _load_scorer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_score", CORPUS / "score.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _covered(meta: dict[str, Any]) -> bool:
    sd = meta.get("structured_data") or {}
    return any((sd.get(syntax) or {}).get("covers_all_fields") for syntax in ("json-ld",
                                                                             "microdata"))


@pytest.mark.skipif(not (CORPUS / "score.py").exists(), reason="labeled corpus not available")
def test_corpus_covered_cases_accuracy() -> None:
    scorer = _load_scorer()
    cases = scorer.load_cases(str(CORPUS / "dev"))
    predictions: dict[str, Any] = {}
    for case_id in cases:
        folder = CORPUS / "dev" / case_id
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if not _covered(meta):
            continue
        schema = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
        sd = parse_structured_data((folder / "page.html").read_bytes(), meta.get("url") or "")
        data, _ = map_to_schema(sd, schema)
        predictions[case_id] = coerce_to_schema(data, schema)
    assert predictions, "no covered cases found in the corpus"
    result = scorer.score({cid: case for cid, case in cases.items() if cid in predictions},
                          predictions)
    misses = {cid: {f: s for f, s in res["fields"].items() if s < 1}
              for cid, res in result["per_case"].items()}
    accuracy = result["overall"]["field_accuracy"]
    assert accuracy >= COVERED_MIN_ACCURACY, {cid: m for cid, m in misses.items() if m}


@pytest.mark.parametrize("html", [
    page(jsonld(PRODUCT)),
    page(jsonld({"@context": "https://schema.org", "@graph": [PRODUCT, {"@type": "Organization",
                                                                       "name": "Acme"}]})),
    page("<script type='application/ld+json'>[" + json.dumps(PRODUCT) + ", 7]</script>"),
    page('<SCRIPT data-x="1" type="application/ld+json" id="ld">' + json.dumps(PRODUCT)
         + "</SCRIPT >"),
    page('<script type="application/ld+json">// generated\n' + json.dumps(PRODUCT) + "</script>"),
    page('<script type="application/ld+json">{broken</script>' + jsonld(PRODUCT)),
    page("<!-- " + jsonld({"@type": "Product", "name": "commented out"}) + " -->"
         + jsonld(PRODUCT)),
    page('<script type="application/ld+json"><!-- ' + json.dumps(PRODUCT) + " --></script>"
         "<!-- a comment -->"),
    page('<script type="application/ld+json">//<![CDATA[\n' + json.dumps(PRODUCT)
         + "\n//]]></script>"),
    page('<script type="application/ld+jsonx">{"@type": "Product"}</script>'
         '<script type="text/javascript">var x = "application/ld+json";</script>'),
    page(body="<p>no structured data</p>"),
])
def test_jsonld_read_from_the_text_is_the_jsonld_of_the_tree(html: str) -> None:
    assert jsonld_from_text(html) == parse_structured_data(html, BASE_URL).jsonld
