"""Tests for batchscraper.extraction.heuristics: values read from pages without structured data."""

from __future__ import annotations

from typing import Any

import pytest

from batchscraper.demo.site import ExampleSite, product_expected
from batchscraper.extraction.coerce import coerce_to_schema
from batchscraper.extraction.heuristics import (
    collect_facts,
    extraction_method,
    fill_missing,
    wanted_properties,
)
from batchscraper.extraction.heuristics.articles import clean_author, strip_site_name
from batchscraper.extraction.heuristics.page import PageReader
from batchscraper.extraction.heuristics.products import gtin_valid
from batchscraper.extraction.validation import RecordChecker
from batchscraper.store import BatchStore
from pipelines.structured import structured_step
from tests.conftest import assert_counters_match_items, batch_id_from

URL = "https://shop.example/item/1"
STR = {"type": ["string", "null"]}
NUM = {"type": ["number", "null"]}
INT = {"type": ["integer", "null"]}
BOOL = {"type": ["boolean", "null"]}
DATE = {"type": ["string", "null"], "format": "date"}
CODE = {"type": ["string", "null"], "pattern": "^[A-Z]{3}$"}


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def page(body: str, head: str = "", title: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><title>{title}</title>{head}</head>"
            f"<body><nav><a href='/'>Home</a> <a href='/shop'>Shop</a></nav>{body}"
            "<footer><p>Example Ltd. Terms. Privacy.</p></footer></body></html>")


def fill(html: str, schema: dict[str, Any], data: dict[str, Any] | None = None,
         evidence: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    found, why = fill_missing(html, URL, schema, data or {}, evidence or {})
    return coerce_to_schema(found, schema), why


PARAGRAPHS = "".join(
    f"<p>Paragraph {n} of the story says something long enough to be read as content by "
    f"an extractor, with several clauses, names such as Springfield and numbers like {n}.</p>"
    for n in range(1, 9))

ARTICLE_SCHEMA = obj(title=STR, author=STR, published_date=DATE, site_name=STR,
                     article_body=STR, language=STR)


# -- articles ----------------------------------------------------------------------------


def test_article_from_meta_tags_heading_and_body() -> None:
    html = page(
        head=('<meta name="author" content="By Jane Q. Doe">'
              '<meta property="article:published_time" content="2021-03-04T10:00:00+01:00">'
              '<meta property="og:site_name" content="The Daily Example">'),
        title="Council approves the new bridge | The Daily Example",
        body=f"<article><h1>Council approves the new bridge</h1>{PARAGRAPHS}</article>")
    data, evidence = fill(html, ARTICLE_SCHEMA)
    assert {k: v for k, v in data.items() if k != "article_body"} == {
        "title": "Council approves the new bridge", "author": "Jane Q. Doe",
        "published_date": "2021-03-04", "site_name": "The Daily Example", "language": "en"}
    assert data["article_body"].startswith("Paragraph 1 of the story")
    assert "Paragraph 8" in data["article_body"] and "Privacy" not in data["article_body"]
    assert evidence == {"title": "heading", "author": "meta", "published_date": "meta",
                        "site_name": "meta", "article_body": "trafilatura", "language": "meta"}


def test_article_byline_and_date_from_the_page_text() -> None:
    html = page(title="Bridge news",
                body=("<article><h1>Bridge news</h1><p class='byline'>By <a rel='author' "
                      "href='/people/jd'>John Smith</a></p><time datetime='2019-11-20T08:00'>"
                      f"20 Nov</time>{PARAGRAPHS}</article>"))
    data, evidence = fill(html, obj(author=STR, published_date=DATE))
    assert data == {"author": "John Smith", "published_date": "2019-11-20"}
    assert evidence["author"] == "trafilatura"


def test_site_name_and_byline_from_the_markup_are_cleaned() -> None:
    html = page(head='<meta property="og:site_name" content="Daily Example - News you need">',
                title="Bridge news", body=(
                    "<article><h1>Bridge news</h1><span itemprop='author'>Jane Roe - "
                    f"Apr 16, 2015 8:02 pm UTC</span>{PARAGRAPHS}</article>"))
    data, _ = fill(html, obj(site_name=STR, author=STR))
    assert data == {"site_name": "Daily Example", "author": "Jane Roe"}


def test_title_without_heading_drops_the_site_name() -> None:
    html = page(title="How to grow tomatoes - Garden Weekly", body="<p>Short.</p>")
    assert fill(html, obj(title=STR))[0] == {"title": "How to grow tomatoes"}
    assert fill(html, obj(title=STR))[1] == {"title": "title"}


def test_a_structured_teaser_gives_way_to_the_text_it_begins() -> None:
    teaser = PARAGRAPHS.split("</p>")[0].removeprefix("<p>")[:120] + "\u2026"
    html = page(head=('<script type="application/ld+json">{"@type": "NewsArticle", '
                      f'"headline": "Bridge news", "articleBody": "{teaser}"}}</script>'),
                title="Bridge news", body=f"<article><h1>Bridge news</h1>{PARAGRAPHS}</article>")
    checker = RecordChecker(obj(title=STR, article_body=STR))
    found = structured_step(html, URL, checker, many=False)
    assert found.data["article_body"].startswith("Paragraph 1 of the story")
    assert "Paragraph 8" in found.data["article_body"]
    assert found.evidence == {"title": "jsonld", "article_body": "trafilatura"}
    # a teaser the page does not continue stays as the markup gave it
    other = page(head=('<script type="application/ld+json">{"@type": "NewsArticle", '
                       f'"articleBody": "{teaser}"}}</script>'),
                 body="<article><p>Nothing like it here, only a short note.</p></article>")
    kept = structured_step(other, URL, checker, many=False)
    assert kept.data["article_body"] == teaser
    assert kept.evidence["article_body"] == "jsonld"


@pytest.mark.parametrize(("raw", "expected"), [
    ("By Jane Doe", "Jane Doe"),
    ("Jeffrey Gettleman; JEFFREY GETTLEMAN", "Jeffrey Gettleman"),
    ("Laura June Topolsky", "Laura June Topolsky"),
    ("Laura June Topolsky July 10, 2015", "Laura June Topolsky"),
    ("Tom Gillespie, news reporter", "Tom Gillespie"),
    ("Aleš Vávra před", "Aleš Vávra"),
    ("Dan Goodin - Apr 16, 2015 8:02 pm UTC", "Dan Goodin"),
    ("Jane Roe | 2021-03-04", "Jane Roe"),
])
def test_clean_author(raw: str, expected: str) -> None:
    assert clean_author(raw) == expected


def test_strip_site_name() -> None:
    assert strip_site_name("A long headline about things | Site") == "A long headline about things"
    assert strip_site_name("No separator here") == "No separator here"


# -- products ----------------------------------------------------------------------------

PRODUCT_SCHEMA = obj(
    name=STR, brand=STR,
    offer=obj(price=NUM, currency=CODE, in_stock=BOOL),
    identifiers=obj(sku=STR, gtin=STR, mpn=STR))


def product_page(details: str, price: str = "<p class='price'>€ 1.299,00</p>") -> str:
    return page(title="Trail Shoe X | Shop",
                body=(f"<div class='related'><p>Other shoe €9.99</p></div>"
                      f"<main><h1>Trail Shoe X</h1><p>Was <del>€ 1.499,00</del></p>{price}"
                      f"<p>Shipping: €4.99</p>{details}</main>"))


def test_product_price_currency_stock_and_labels() -> None:
    html = product_page(
        "<p>Sold out</p><dl><dt>Brand</dt><dd>Acme Outdoor</dd><dt>SKU:</dt><dd>TS-42</dd>"
        "</dl><p>EAN: 4006381333931</p><p>MPN: AC-TS42</p>")
    data, evidence = fill(html, PRODUCT_SCHEMA)
    assert data == {
        "name": "Trail Shoe X", "brand": "Acme Outdoor",
        "offer": {"price": 1299.0, "currency": "EUR", "in_stock": False},
        "identifiers": {"sku": "TS-42", "gtin": "4006381333931", "mpn": "AC-TS42"}}
    assert evidence == {"name": "heading", "brand": "label", "offer": "pattern",
                        "identifiers": "label"}


def test_product_values_that_are_not_there_stay_missing() -> None:
    html = product_page("<p>Add to cart</p><p>EAN: 4006381333932</p><p>SKU: see below</p>"
                        "<p>Manufacturer's two year guarantee</p>",
                        price="<p class='price'>$25</p>")
    data, _ = fill(html, PRODUCT_SCHEMA)
    assert data == {"name": "Trail Shoe X", "offer": {"price": 25.0, "in_stock": True}}


@pytest.mark.parametrize(("details", "in_stock"), [
    ("<p>Verfügbarkeit:</p><p>Verfügbar</p><p>Sold out elsewhere</p>", True),  # labelled
    ("<dl><dt>Availability:</dt><dd>Currently unavailable</dd></dl>", False),
    ("<p>Free delivery available</p><p>Sold out</p>", False),  # stock words before "available"
    ("<p>Delivery available</p>", True),  # only "available"
    ("<button>Add to your basket</button>", True),
    ("<p>Out of stock</p><button>Add to cart</button>", False),  # "stock" ends, not labels
    ("<p>Reviews</p>", None),
])
def test_product_availability(details: str, in_stock: bool | None) -> None:
    data, _ = fill(product_page(details), obj(offer=obj(in_stock=BOOL)))
    assert data.get("offer", {}).get("in_stock") is in_stock


def test_product_dash_labels_sale_price_and_prices_that_are_not_the_price() -> None:
    html = product_page(
        "<p>Free click &amp; collect on orders over €30</p><ul><li>Product Code - 39139301"
        "</li><li>Brand - Acme Outdoor</li><li>Material - leather</li></ul>",
        price="<p class='price'>€1.2992% off</p><p>Now €1.299,00</p>")
    data, evidence = fill(html, PRODUCT_SCHEMA)
    assert data["offer"]["price"] == 1299.0  # not 1.2 from "€1.2992%" nor the €30
    assert data["identifiers"] == {"sku": "39139301"}
    assert data["brand"] == "Acme Outdoor"
    assert (evidence["identifiers"], evidence["brand"]) == ("label", "label")
    sale = page(head=('<meta property="product:price:amount" content="36.49">'
                      '<meta property="product:sale_price:amount" content="32.00">'),
                title="Panel", body="<h1>Panel</h1>")
    assert fill(sale, obj(price=NUM))[0] == {"price": 32.0}


def test_the_heading_is_placed_by_its_first_line() -> None:
    """An ``<h1>`` holding a hidden dialog: its price is still the one below its name."""
    html = page(title="Bloom Ceiling Fan 1250 mm | Shop", body=(
        "<nav><p>Fans under ₹5,000</p></nav><h1>Bloom Ceiling Fan 1250 mm<div class='dialog'>"
        "<p>Saved to your list!</p><p>Add to another list</p><p>Create a new list</p></div>"
        "</h1><p>by Usha</p><p>₹2,433</p>"))
    assert fill(html, obj(price=NUM))[0] == {"price": 2433.0}


def test_itemprop_without_itemscope_and_structured_values_win() -> None:
    html = product_page("<span itemprop='sku'>99-1</span><link itemprop='availability' "
                        "href='https://schema.org/InStock'>")
    data, evidence = fill(html, PRODUCT_SCHEMA, data={"offer": {"price": 5.0}},
                          evidence={"offer": "microdata"})
    assert data["offer"] == {"price": 5.0, "currency": "EUR", "in_stock": True}
    assert data["identifiers"] == {"sku": "99-1"}
    assert evidence["offer"] == "microdata+itemprop+pattern"
    assert evidence["identifiers"] == "itemprop"


def test_gtin_check_digit() -> None:
    assert gtin_valid("4006381333931") and gtin_valid("96385074")
    assert not gtin_valid("4006381333932")


# -- recipes -----------------------------------------------------------------------------

RECIPE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": STR, "ingredients": {"type": "array", "items": {"type": "string"}},
        "steps": {"type": "array", "items": obj(position={"type": "integer"},
                                                 text={"type": "string"})},
        "prep_time_minutes": INT, "total_time_minutes": INT, "servings": INT,
    },
}


def test_recipe_lists_under_headings_times_and_servings() -> None:
    html = page(title="Lemon cake", body=(
        "<h1>Lemon cake</h1><p>Prep time: 15 mins</p><p>Total time: 1 hr 5 mins</p>"
        "<p>Serves 8</p><h2>Ingredients</h2><h3>For the cake:</h3><ul><li>200 g flour</li>"
        "<li>2 eggs</li></ul><h3>For the icing:</h3><ul><li>1 lemon</li></ul>"
        "<h2>Method</h2><ol><li>Heat the oven.</li><li>Mix and bake.</li></ol>"
        "<h2>More recipes</h2><ul><li>Apple pie</li></ul>"))
    data, evidence = fill(html, RECIPE_SCHEMA)
    assert data == {
        "name": "Lemon cake", "ingredients": ["200 g flour", "2 eggs", "1 lemon"],
        "steps": [{"position": 1, "text": "Heat the oven."},
                  {"position": 2, "text": "Mix and bake."}],
        "prep_time_minutes": 15, "total_time_minutes": 65, "servings": 8}
    assert evidence["ingredients"] == evidence["steps"] == "structure"
    assert evidence["servings"] == "label"


@pytest.mark.parametrize(("times", "expected"), [
    ("<p>Ready in :</p><p>1:15 h</p>", 75),  # clock-style, on the line below its label
    ("<p>Prep time: 20 mins</p><p>Cook time: 1 hr</p>", 80),  # no total: their sum
    ("<p>Cook Time</p><p>30 minutes</p>", 30),  # the one given
    ("<p>Prep time</p><p>10</p><p>minutes</p><p>Cook time</p><p>4</p><p>hours</p>", 250),
])
def test_recipe_total_time(times: str, expected: int) -> None:
    html = page(title="Stew", body=f"<h1>Stew</h1>{times}<p>A hearty dish.</p>")
    data, evidence = fill(html, obj(total_time_minutes=INT))
    assert data == {"total_time_minutes": expected}
    assert evidence == {"total_time_minutes": "label"}


def test_recipe_nutrition_by_label() -> None:
    html = page(title="Sausage balls", body=(
        "<h1>Sausage balls</h1><p>Amount per serving:</p><p><span>Calories: 53</span><span>"
        "Total Fat: 4g</span></p><p>Protein</p><p>3.5</p><p>g</p>"))
    schema = obj(nutrition=obj(calories=NUM, protein_grams=NUM, fat_grams=NUM))
    data, evidence = fill(html, schema)
    assert data == {"nutrition": {"calories": 53.0, "protein_grams": 3.5, "fat_grams": 4.0}}
    assert evidence == {"nutrition": "label"}


def test_recipe_lists_by_class_and_paragraphs() -> None:
    html = page(title="Soup", body=(
        "<h1>Soup</h1><div class='recipe-ingredients'><ul><li><span>1</span> <span>onion"
        "</span></li><li>1 l stock</li></ul></div><p><strong>Directions:</strong></p>"
        "<p>Chop the onion.</p><p>Simmer in the stock for 20 minutes.</p>"))
    data, _ = fill(html, RECIPE_SCHEMA)
    assert data["ingredients"] == ["1 onion", "1 l stock"]
    assert [step["text"] for step in data["steps"]] == [
        "Chop the onion.", "Simmer in the stock for 20 minutes."]


def test_recipe_lists_by_repeated_class_names() -> None:
    html = page(title="Bowl", body=(
        "<h1>Bowl</h1><div class='recipe-ingredients-instructions'>"
        "<div class='recipe-ingredients'><ul><li>1 cup beans</li><li>2 tomatoes</li></ul>"
        "</div><ul class='nutrition'><li>Calories 428</li><li>Fat 19g</li></ul>"
        "<div class='recipe-steps'><div class='step step-1'><strong>Step 1</strong> "
        "<p>Warm the beans.</p></div><div class='step step-2'><strong>Step 2</strong> "
        "<p>Char the tomatoes.</p></div></div></div>"))
    data, _ = fill(html, RECIPE_SCHEMA)
    # the container naming both lists names neither; the innermost ingredient container wins
    assert data["ingredients"] == ["1 cup beans", "2 tomatoes"]
    assert data["steps"] == [{"position": 1, "text": "Step 1 Warm the beans."},
                             {"position": 2, "text": "Step 2 Char the tomatoes."}]
    spans = page(title="Salad", body=(
        "<h1>Salad</h1><ul><li><span class='ingredient-amount'>1</span> <span "
        "class='ingredient-name'>lettuce</span></li><li><span class='ingredient-amount'>2"
        "</span> <span class='ingredient-name'>radishes</span></li></ul>"))
    # inline elements named "ingredient" stand for the list item they are in
    assert fill(spans, RECIPE_SCHEMA)[0]["ingredients"] == ["1 lettuce", "2 radishes"]


def test_recipe_ingredients_end_at_prose_and_steps_follow_them() -> None:
    html = page(title="Ribs", body=(
        "<h1>Ribs</h1><p>Ingredients</p><ul><li>1 rack of ribs</li><li>1 cup sugar</li></ul>"
        "<p><span>Optional</span><br></p><ul><li>Your favourite sauce</li></ul>"
        "<p>Prepare the smoker at 275 degrees and let it settle for a while.</p>"
        "<footer><ul><li>Facebook</li><li>Twitter</li></ul></footer>"))
    data, _ = fill(html, RECIPE_SCHEMA)
    assert data["ingredients"] == ["1 rack of ribs", "1 cup sugar", "Your favourite sauce"]
    numbered = page(title="Sandwich", body=(
        "<h1>Sandwich</h1><h4>INGREDIENTS</h4><ul><li><p>Baguette</p></li><li><p>Bacon</p>"
        "</li></ul><h4>RECIPE</h4><ol><li><p>Cook the bacon</p></li><li><p>Fill the "
        "baguette</p></li></ol><h4>MORE</h4><ul><li>Wraps</li><li>Salads</li></ul>"))
    data, evidence = fill(numbered, RECIPE_SCHEMA)
    assert data["ingredients"] == ["Baguette", "Bacon"]
    assert data["steps"] == [{"position": 1, "text": "Cook the bacon"},
                             {"position": 2, "text": "Fill the baguette"}]
    assert evidence["steps"] == "structure"
    # an unnumbered list of a few words after the ingredients is not a method
    links = numbered.replace("<ol>", "<ul>").replace("</ol>", "</ul>")
    assert "steps" not in fill(links, RECIPE_SCHEMA)[0]


def test_a_structured_list_of_one_item_gives_way_to_the_pages_steps() -> None:
    first = "Place the beans in a bowl and heat a small skillet over medium-high heat."
    second = "Add the tomatoes and cook until charred, about 3 minutes, then serve."
    recipe = ('<script type="application/ld+json">{"@type": "Recipe", "name": "Bowl", '
              f'"recipeInstructions": [{{"@type": "HowToStep", "text": "{first} {second}"}}]}}'
              '</script>')
    body = (f"<h1>Bowl</h1><div class='instructions'><div class='step'><p>{first}</p></div>"
            f"<div class='step'><p>{second}</p></div></div>")
    checker = RecordChecker(RECIPE_SCHEMA)
    found = structured_step(page(body, head=recipe, title="Bowl"), URL, checker, many=False)
    assert found.data["steps"] == [{"text": first, "position": 1},
                                   {"text": second, "position": 2}]
    assert found.evidence["steps"] == "structure"
    # a page list of other words leaves the markup's one step as it was
    other = body.replace(second, "Subscribe to our newsletter for more recipes every week.")
    kept = structured_step(page(other, head=recipe, title="Bowl"), URL, checker, many=False)
    assert kept.data["steps"] == [{"text": f"{first} {second}", "position": 1}]
    assert kept.evidence["steps"] == "jsonld"


# -- what runs, and the pipeline hook -------------------------------------------------------


def test_nothing_runs_when_structured_data_answered_everything() -> None:
    data = {"title": "T", "author": "A", "published_date": "2020-01-01", "site_name": "S",
            "article_body": "B", "language": "en"}
    assert wanted_properties(ARTICLE_SCHEMA, data) == set()
    evidence = dict.fromkeys(data, "jsonld")
    assert fill_missing("<html", URL, ARTICLE_SCHEMA, data, evidence) == (data, evidence)


def test_only_the_finders_a_missing_field_needs_run() -> None:
    reader = PageReader(product_page("<p>SKU: 12-34</p>"), URL)
    facts = collect_facts(reader, wanted_properties(PRODUCT_SCHEMA, {
        "name": "X", "brand": "Y", "offer": {"price": 1.0, "currency": "EUR", "in_stock": True},
        "identifiers": {"gtin": "4006381333931", "mpn": "M"}}))
    assert facts["sku"] == ("12-34", "label")
    assert "article" not in reader.__dict__  # trafilatura never ran
    assert "offers.price" not in facts


@pytest.mark.parametrize(("evidence", "method"), [
    ({"a": "jsonld", "b": "og"}, "structured"),
    ({"a": "heading", "b": "label"}, "heuristic"),
    ({"a": "microdata+pattern"}, "structured+heuristic"),
    ({}, "structured"),
])
def test_extraction_method(evidence: dict[str, str], method: str) -> None:
    assert extraction_method(evidence) == method


def test_structured_step_keeps_structured_values_and_fills_the_rest() -> None:
    html = page(head='<meta property="og:title" content="From OpenGraph">',
                title="Page title", body="<h1>Heading</h1><p>Brand: Acme</p><p>€5.00</p>")
    checker = RecordChecker(obj(name=STR, brand=STR, price=NUM))
    found = structured_step(html, URL, checker, many=False)
    assert found.data == {"name": "From OpenGraph", "brand": "Acme", "price": 5.0}
    assert found.evidence == {"name": "og", "brand": "label", "price": "pattern"}


def test_structured_step_reads_the_page_tree_only_for_what_json_ld_lacks() -> None:
    """JSON-LD that answers every field is the record; JSON-LD that lacks one is completed
    from the page's microdata and text, JSON-LD values kept."""
    ld = '<script type="application/ld+json">{"@type": "Product", "name": "LD name"}</script>'
    microdata = ('<div itemscope itemtype="https://schema.org/Product">'
                 '<span itemprop="name">LD name</span><span itemprop="brand">Acme</span>'
                 "</div>")
    html = page(head=ld, body=microdata + "<p>\u20ac5.00</p>")
    found = structured_step(html, URL, RecordChecker(obj(name=STR)), many=False)
    assert (found.data, found.evidence) == ({"name": "LD name"}, {"name": "jsonld"})
    found = structured_step(html, URL, RecordChecker(obj(name=STR, brand=STR, price=NUM)),
                            many=False)
    assert found.data == {"name": "LD name", "brand": "Acme", "price": 5.0}
    assert found.evidence == {"name": "jsonld", "brand": "microdata", "price": "pattern"}


@pytest.mark.parametrize("html", ["", "<<<>>>", "<html><body></body></html>", "\x00" * 10])
def test_unusable_pages_never_raise(html: str) -> None:
    assert fill_missing(html, URL, PRODUCT_SCHEMA, {}, {}) == ({}, {})


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_crawl_without_llm_fills_plain_pages(crawl, site: ExampleSite, store: BatchStore,
                                             tmp_path) -> None:
    """OpenGraph-only product pages: the rest of the record comes from the page text."""
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["name", "price"], "properties": {'
                      '"name": {"type": "string"}, "price": {"type": "number"}, '
                      '"sku": {"type": ["string", "null"]}, "brand": {"type": ["string", "null"]}, '
                      '"in_stock": {"type": ["boolean", "null"]}}}')
    numbers = (3, 7)  # product 7 is out of stock
    result = crawl(urls=",".join(site.url(f"/plain/{n}") for n in numbers),
                   schema=f"@{schema}", render_js="never",
                   settings={"BATCH_LLM_ENABLED": False})
    batch_id = batch_id_from(result)
    items = list(store.iter_items(batch_id))
    assert [item["status"] for item in items] == ["completed", "completed"]
    for n, item in zip(numbers, items, strict=True):
        expected = product_expected(n)
        assert item["data"] == {"name": f"Plain {n}", "price": expected["price"],
                                "sku": expected["sku"], "brand": expected["brand"],
                                "in_stock": expected["in_stock"]}
        assert item["evidence"] == {"name": "og", "price": "pattern", "sku": "label",
                                    "brand": "label", "in_stock": "pattern"}
        assert item["extraction"]["method"] == "structured+heuristic"
        assert item["llm_calls"] == 0
    assert assert_counters_match_items(store, batch_id)["counters"]["completed"] == 2


@pytest.mark.slow
def test_crawl_without_llm_says_null_for_a_required_nullable_field_it_cannot_find(
        crawl, site: ExampleSite, store: BatchStore, tmp_path) -> None:
    """A field the schema requires but lets be null, absent from the page: the record is
    complete with a null there (not VALIDATION_FAILED for want of the field)."""
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["name", "warranty"], "properties": {'
                      '"name": {"type": "string"}, "warranty": {"type": ["string", "null"]}}}')
    result = crawl(urls=site.url("/plain/3"), schema=f"@{schema}", render_js="never",
                   settings={"BATCH_LLM_ENABLED": False})
    batch_id = batch_id_from(result)
    (item,) = store.iter_items(batch_id)
    assert item["status"] == "completed", item.get("error")
    assert item["data"] == {"name": "Plain 3", "warranty": None}
    assert item["evidence"] == {"name": "og"}
    assert assert_counters_match_items(store, batch_id)["counters"]["completed"] == 1
