"""Words and patterns that label values on ordinary web pages, for the page heuristics.

Everything the page heuristics "know" about how sites write prices, labels
and section headings lives here, so the code stays generic. Labels are the
common shop and recipe vocabulary of several languages, matched
case-insensitively at a word boundary and followed by an optional ``:``.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- meta tags
#: schema.org property -> ``<meta name|property|itemprop>`` keys, in order of trust.
META_KEYS: dict[str, tuple[str, ...]] = {
    "headline": ("og:title", "twitter:title", "headline", "title", "dc.title"),
    "author": ("author", "article:author", "byl", "parsely-author", "sailthru.author",
               "dc.creator", "dcterms.creator", "citation_author", "book:author"),
    "datePublished": ("article:published_time", "article:published", "og:published_time",
                      "datepublished", "pubdate", "publishdate", "publish-date",
                      "parsely-pub-date", "sailthru.date", "dc.date", "dcterms.date",
                      "dc.date.issued", "citation_publication_date", "date"),
    "dateModified": ("article:modified_time", "og:updated_time", "datemodified",
                     "last-modified", "dcterms.modified"),
    "publisher": ("og:site_name", "application-name", "publisher", "dc.publisher"),
    "description": ("description", "og:description", "twitter:description",
                    "dc.description"),
    "inLanguage": ("og:locale", "content-language", "language", "dc.language"),
    "price": ("product:sale_price:amount", "og:sale_price:amount", "product:price:amount",
              "og:price:amount", "price"),
    "priceCurrency": ("product:price:currency", "og:price:currency", "pricecurrency"),
    "availability": ("product:availability", "og:availability", "availability"),
    "brand": ("product:brand", "og:brand", "brand"),
    "sku": ("product:retailer_item_id", "sku"),
    "gtin": ("product:ean", "product:upc", "product:isbn", "gtin13", "gtin", "ean", "isbn"),
    "mpn": ("product:mfr_part_no", "mpn"),
}

# --------------------------------------------------------------------------- titles
#: Separators between a page title and the site name in ``<title>``.
TITLE_SEPARATORS = re.compile(r"\s+(?:[|\u2013\u2014\u00b7\u2022:~/\\-]|::|>>|\u00bb)\s+")

# --------------------------------------------------------------------------- bylines
BYLINE_PREFIX = re.compile(
    r"^\s*(?:by|from|von|par|por|di|door|av|af|autor(?:ka)?|written by|posted by)\b[:\s]*",
    re.IGNORECASE)
#: Trailing words of a byline that are not part of the name: a role, or a date.
BYLINE_TAIL = re.compile(
    r"(?:\s+(?:(?:senior|staff|chief|special|contributing|news|political|science|"
    r"sports?)\s+)?(?:reporter|correspondent|editor|writer|journalist|columnist|"
    r"contributor|staff|producer)\b.*$)"
    r"|(?:\s+(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
    r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
    r"(?:\s+\d.*)?$)"
    r"|(?:\s+[-\u2013\u2014|\u00b7\u2022]\s+(?=.*\d).*$)",  # "- Apr 16, 2015 8:02 pm"
    re.IGNORECASE)
AUTHOR_SPLIT = re.compile(r"\s*(?:;|,|\band\b|&|\bund\b|\bet\b|\by\b)\s*")

# --------------------------------------------------------------------------- prices
CURRENCY_SYMBOLS: dict[str, str | None] = {
    "€": "EUR", "£": "GBP", "₹": "INR", "₽": "RUB", "₺": "TRY", "₴": "UAH", "₩": "KRW",
    "₪": "ILS", "₫": "VND", "₱": "PHP", "฿": "THB", "zł": "PLN", "Kč": "CZK", "Ft": "HUF",
    "lei": "RON", "лв": "BGN", "R$": "BRL", "US$": "USD", "CA$": "CAD", "C$": "CAD",
    "AU$": "AUD", "A$": "AUD", "NZ$": "NZD", "HK$": "HKD", "S$": "SGD", "Rs.": "INR",
    "Rs": "INR", "CHF": "CHF", "Fr.": "CHF",
    # ambiguous: a price, but no currency code
    "$": None, "¥": None, "kr": None, "kr.": None,
}
ISO_CURRENCIES = frozenset((
    "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "PLN", "CZK", "HUF", "RON", "BGN", "SEK",
    "NOK", "DKK", "ISK", "INR", "JPY", "CNY", "HKD", "SGD", "BRL", "MXN", "ARS", "CLP", "COP",
    "ZAR", "TRY", "RUB", "UAH", "ILS", "KRW", "THB", "PHP", "VND", "IDR", "MYR", "AED", "SAR",
))
_SYMBOLS = "|".join(re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
_CODES = "|".join(sorted(ISO_CURRENCIES))
#: An amount that is not the start of a longer number (``2,4332%`` holds none).
_AMOUNT = (r"\d{1,3}(?:[ .,\u00a0\u202f']\d{3})*(?:[.,]\d{1,2})?(?![.,]?\d)"
           r"|\d+(?:[.,]\d{1,2})?(?![.,]?\d)")
#: A currency-marked amount: ``£34.99``, ``3,56 €``, ``EUR 12.00``, ``1.899,00 zł``.
PRICE = re.compile(
    rf"(?:(?P<pre>{_SYMBOLS}|\b(?:{_CODES})\b)\s?(?P<a1>{_AMOUNT})"
    rf"|(?<![\w.,])(?P<a2>{_AMOUNT})\s?(?P<post>{_SYMBOLS}|\b(?:{_CODES})\b|,-|\.-))",
)
#: Words on a price line that make it not the selling price.
NOT_SELLING_PRICE = re.compile(
    r"\b(?:was|save|saving|rrp|msrp|uvp|statt|list price|compare at|instead of|"
    r"shipping|delivery|postage|versand|livraison|envío|spedizione|doprava|poštnina|"
    r"from|ab|dès|desde|per month|/\s?mo|monthly|a month|financ\w*|credit|nectar|points|"
    r"orders? over|spend over|collect(?:ion)?)\b",
    re.IGNORECASE)

# --------------------------------------------------------------------------- availability
OUT_OF_STOCK = re.compile(
    r"\b(?:out of stock|sold out|currently unavailable|no longer available|not available|"
    r"unavailable|ausverkauft|nicht (?:mehr )?(?:verfügbar|lieferbar|vorrätig)|épuisé|"
    r"rupture de stock|indisponible|agotado|sin stock|no disponible|esaurito|"
    r"non disponibile|niet (?:op voorraad|leverbaar|beschikbaar)|uitverkocht|"
    r"brak w magazynie|niedostępny|wyprzedany|vypredané|nedostupn[éý]|není skladem|"
    r"nie je skladom|ni na zalogi|razprodano|slut(?:såld| i lager)?|udsolgt|utsolgt|"
    r"loppuunmyyty|esgotado|indisponível|nem elérhető|elfogyott|stoc epuizat)\b",
    re.IGNORECASE)
IN_STOCK = re.compile(
    r"\b(?:in stock|add to (?:your |my )?(?:cart|basket|bag|trolley)|buy now|available now|"
    r"auf lager|sofort lieferbar|lieferbar|vorrätig|in den (?:warenkorb|einkaufswagen)|"
    r"en stock|ajouter au panier|disponible|en existencia|añadir al carrito|"
    r"disponibile|aggiungi al carrello|op voorraad|in winkelwagen|leverbaar|"
    r"dostępny|do koszyka|skladom|do košíka|skladem|do košíku|na zalogi|v košarico|"
    r"i lager|på lager|lägg i varukorgen|em estoque|adicionar ao carrinho|raktáron|"
    r"kosárba|în stoc)\b",
    re.IGNORECASE)
#: Words that say "available" without saying "in stock": read only when no stock words are
#: below the heading.
AVAILABLE = re.compile(
    r"\b(?:available|verfügbar|disponível|beschikbaar|dostępna|"
    r"dostupn[éýáoa]|dobavljiv[oa]?|na voljo|elérhető|tilgængelig|tillgänglig|"
    r"tilgjengelig|saatavilla)\b",
    re.IGNORECASE)

# --------------------------------------------------------------------------- labels
def label(words: str, *, colon: bool = False) -> re.Pattern[str]:
    """A label (``|``-separated alternatives), capturing the text after it.

    With ``colon`` the label must be followed by ``:`` or be its line's only text
    (``Brand: Acme``, not ``Manufacturer's guarantee`` nor ``Out of stock``). A
    label that starts its line may also be followed by a dash (``Brand - Acme``,
    a specification table read as text).
    """
    end = r"(?![^\W\d_])" + (
        r"\s*(?:(?::|(?(alone)[-\u2013\u2014](?=\s)|(?!)))\s*(?P<value>.*)|(?(alone)$|(?!)))"
        if colon else
        r"\s*(?:[:#.]|[-\u2013\u2014](?=\s)|\bno\.?\b|\bnr\.?\b)?\s*(?P<value>.*)$")
    return re.compile(rf"(?:(?P<alone>^)|(?<=[\s(|,;]))(?:{words}){end}", re.IGNORECASE)


SKU_LABEL = label(
    r"sku|item\s?(?:#|no\.?|number|id|code)|article\s?(?:no\.?|number)|art\.?\s?-?\s?nr\.?|"
    r"art\.?\s?no\.?|artikel\s?-?\s?(?:nr\.?|nummer)|product\s?(?:code|id|number|no\.?)|"
    r"stock\s?code|catalog(?:ue)?\s?(?:#|no\.?|number)|ref(?:erence)?\.?|réf(?:érence)?\.?|"
    r"código|cód\.?|codice|cod\.?|kod(?:\s?produktu)?|kód(?:\s?produktu)?|šifra|koda|"
    r"nr\s?kat(?:alogowy)?\.?|indeks|katalógové číslo|katalogové číslo|"
    r"(?:ad|listing|post)\s?id|varenummer|artikelnr\.?|cikkszám")
GTIN_LABEL = label(r"ean(?:\s?-?\s?(?:13|8|code))?|gtin(?:\s?-?\s?\d+)?|upc|isbn(?:-1[03])?|"
                   r"barcode|bar code|čiarový kód|čárový kód|kod kreskowy")
MPN_LABEL = label(r"mpn|(?:manufacturer\s?)?part\s?(?:#|no\.?|number)|model\s?(?:#|no\.?|number)|"
                  r"hersteller\s?-?\s?(?:nr\.?|nummer|artikelnummer)|référence fabricant|"
                  r"kod producenta|codice produttore|número de pieza|produktové číslo|"
                  r"typové označenie")
BRAND_LABEL = label(r"brand|(?:make\s?/\s?)?manufacturer|make|marke|hersteller|marque|"
                    r"fabricant|marca|fabricante|produttore|merk|fabrikant|producent|marka|"
                    r"výrobca|výrobce|značka|proizvajalec|znamka|gyártó|märke|mærke", colon=True)
AVAILABILITY_LABEL = label(
    r"availability|stock status|stock|verfügbarkeit|lieferstatus|disponibilité|"
    r"disponibilidad|disponibilità|disponibilidade|beschikbaarheid|voorraad|dostępność|"
    r"dostupnost|dostupnosť|razpoložljivost|zaloga|elérhetőség|készlet|lagerstatus",
    colon=True)
#: A label value that is itself the next label (``Brand: SKU: 123``).
NEXT_LABEL = re.compile(r"\s+\S[^:]{0,25}:\s.*$")

# --------------------------------------------------------------------------- recipes
INGREDIENT_WORDS = re.compile(
    r"ingredient|zutaten|ingrédients|ingredientes|ingredienti|ingrediënten|składniki|"
    r"suroviny|ingredience|sestavine|ingredienser|hozzávalók", re.IGNORECASE)
STEP_WORDS = re.compile(
    r"instruction|direction|method|preparation|steps|how to make|zubereitung|anleitung|"
    r"préparation|instrucciones|preparación|elaboración|procedimento|preparazione|"
    r"bereiding|przygotowanie|postup|priprava|fremgangsmåde|tillagning|elkészítés",
    re.IGNORECASE)
#: Class/id words of list containers (``wprm-recipe-ingredient``, ``recipe-steps``).
INGREDIENT_CLASS = re.compile(r"ingredient", re.IGNORECASE)
STEP_CLASS = re.compile(r"instruction|direction|method|step", re.IGNORECASE)
LIST_BULLET = re.compile("^\\s*(?:[-\u2013\u2022*\u00b7\u25aa\u25cf\u25e6]|\\d{1,2}[.)])\\s+")
TOTAL_TIME_LABEL = label(r"total\s?time|ready in|total|gesamtzeit|temps total|tiempo total|"
                         r"tempo totale|totale tijd|czas całkowity")
PREP_TIME_LABEL = label(r"prep(?:aration)?\s?time|prep|vorbereitung(?:szeit)?|"
                        r"temps de préparation|tiempo de preparación|tempo di preparazione|"
                        r"bereidingstijd|czas przygotowania")
COOK_TIME_LABEL = label(r"cook(?:ing)?\s?time|cook|kochzeit|backzeit|temps de cuisson|"
                        r"tiempo de cocción|tempo di cottura|kooktijd|czas gotowania")
SERVINGS_LABEL = label(r"servings|serves|serving size|yields?|makes|portions?|portionen|"
                       r"personen|pour|porciones|raciones|porzioni|porcje|personnes")
CALORIES_LABEL = label(r"calories|energy|kalorien|calorías|calorie|kalorie|energia|"
                       r"energie|kcal", colon=True)
PROTEIN_LABEL = label(r"protein|proteins|eiweiß|eiweiss|protéines|proteínas|proteine|"
                      r"białko|bílkoviny", colon=True)
FAT_LABEL = label(r"(?:total\s)?fat|fett|lipides|grasas|grassi|tłuszcz|tuky", colon=True)
CARBOHYDRATE_LABEL = label(r"(?:total\s)?carbohydrates?|carbs|kohlenhydrate|glucides|"
                           r"carbohidratos|carboidrati|węglowodany|sacharidy", colon=True)
DURATION_TEXT = re.compile(
    r"^(?:(?:about|around|approx\.?|approximately|ca\.?|circa|~)\s*)?"
    r"(?:\d{1,3}:[0-5]\d(?::[0-5]\d)?(?:\s*(?:h|hrs?|hours?)\b)?"
    r"|(?:\d+(?:[.,]\d+)?\s*(?:d|days?|h|hrs?|hours?|m|mins?|minutes?)\b[\s,and]*)+)",
    re.IGNORECASE)
