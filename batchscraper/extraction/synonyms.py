"""Lookup tables that drive the structured-data -> JSON Schema mapping.

Everything the mapper "knows" about schema.org and OpenGraph lives here, so the
mapping code in :mod:`batchscraper.extraction.structured` stays generic.

Field names are canonicalised to lower-case tokens joined by ``_`` before they
are looked up (``datePublished``, ``date-published`` and ``date_published`` all
become ``date_published``).  Paths are dotted schema.org property paths; a
numeric segment selects a list element (``performer.0.name``), any other
segment applied to a list applies to every element.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- entity types
#: schema.org types grouped by the kind of record a user schema usually asks for.
TYPE_FAMILIES: dict[str, frozenset[str]] = {
    "product": frozenset({
        "product", "productgroup", "productmodel", "individualproduct", "vehicle", "car",
        "someproducts", "softwareapplication", "mobileapplication", "book",
    }),
    "article": frozenset({
        "article", "newsarticle", "blogposting", "reportagenewsarticle", "analysisnewsarticle",
        "opinionnewsarticle", "reviewnewsarticle", "backgroundnewsarticle", "scholarlyarticle",
        "techarticle", "report", "liveblogposting", "socialmediaposting", "posting",
        "medicalscholarlyarticle", "advertisercontentarticle", "satiricalarticle",
    }),
    "recipe": frozenset({"recipe", "howto"}),
    "event": frozenset({
        "event", "musicevent", "sportsevent", "theaterevent", "comedyevent", "festival",
        "businessevent", "educationevent", "screeningevent", "exhibitionevent", "socialevent",
        "danceevent", "literaryevent", "childrensevent", "foodevent", "saleevent",
        "visualartsevent", "courseinstance", "deliveryevent", "hackathon",
    }),
    "job": frozenset({"jobposting"}),
    "faq": frozenset({"faqpage", "qapage"}),
    "business": frozenset({
        "localbusiness", "restaurant", "store", "hotel", "foodestablishment", "cafeorcoffeeshop",
        "barorpub", "medicalbusiness", "dentist", "autodealer", "lodgingbusiness",
    }),
    "review": frozenset({"review", "criticreview", "employerreview"}),
    "video": frozenset({"videoobject", "movie", "tvseries", "tvepisode"}),
    "course": frozenset({"course"}),
}

#: Words in a user schema (property names, title) that hint at a family.
FAMILY_KEYWORDS: dict[str, frozenset[str]] = {
    "product": frozenset({
        "product", "products", "price", "currency", "sku", "gtin", "mpn", "ean", "upc", "brand",
        "availability", "stock", "offer", "offers", "variants", "variant", "identifiers", "model",
    }),
    "article": frozenset({
        "article", "headline", "byline", "author", "authors", "published", "body", "site",
        "section", "news", "blog", "post",
    }),
    "recipe": frozenset({
        "recipe", "ingredients", "ingredient", "steps", "instructions", "servings", "yields",
        "yield", "prep", "cook", "nutrition", "calories", "cuisine", "directions",
    }),
    "event": frozenset({
        "event", "events", "venue", "performers", "performer", "artist", "start", "tickets",
        "concert", "organizer", "lineup",
    }),
    "job": frozenset({
        "job", "salary", "employer", "hiring", "employment", "company", "vacancy", "remote",
    }),
    "faq": frozenset({"faq", "faqs", "question", "questions", "answer", "answers"}),
    "business": frozenset({"opening", "hours", "telephone", "phone", "restaurant", "business"}),
    "review": frozenset({"review", "reviewer", "verdict"}),
    "video": frozenset({"video", "movie", "director", "duration", "actors"}),
    "course": frozenset({"course", "instructor", "syllabus"}),
}

#: Site furniture that is never the page's main record unless the schema asks for it.
BOILERPLATE_TYPES: frozenset[str] = frozenset({
    "website", "webpage", "organization", "breadcrumblist", "breadcrumb", "listitem",
    "imageobject", "searchaction", "readaction", "sitenavigationelement", "wpheader",
    "wpfooter", "wpsidebar", "wpadblock", "person", "collectionpage", "itempage",
    "aboutpage", "contactpage", "searchresultspage", "entrypoint", "corporation",
    "newsmediaorganization", "speakablespecification", "findaction", "commentaction",
    "propertyvalue", "blog", "creativework",
})

#: Keys whose value nests the page's real record (``WebPage.mainEntity``).
MAIN_ENTITY_KEYS: tuple[str, ...] = ("mainEntity", "mainEntityOfPage", "about", "itemReviewed")

#: Leading tokens dropped from a field name when they repeat the record kind
#: (``recipe_name`` -> ``name``, ``product_title`` -> ``title``).
FAMILY_PREFIX_TOKENS: frozenset[str] = frozenset({
    "recipe", "product", "article", "event", "job", "item", "page", "post", "main",
})

# --------------------------------------------------------------------------- units
#: Trailing field-name tokens that name a unit, mapped to the unit they mean.
UNIT_TOKENS: dict[str, str] = {
    "minutes": "minutes", "minute": "minutes", "mins": "minutes", "min": "minutes",
    "hours": "hours", "hour": "hours", "hrs": "hours", "hr": "hours",
    "seconds": "seconds", "second": "seconds", "secs": "seconds", "sec": "seconds",
    "days": "days", "day": "days",
    "grams": "grams", "gram": "grams", "g": "grams", "mg": "milligrams",
    "kcal": "kcal", "cal": "kcal", "kg": "kg", "percent": "percent", "pct": "percent",
}

#: Units that are durations, expressed in seconds.
DURATION_UNIT_SECONDS: dict[str, int] = {
    "seconds": 1, "minutes": 60, "hours": 3600, "days": 86400,
}

# --------------------------------------------------------------------------- field synonyms
_ADDRESS_PARTS: dict[str, str] = {
    "street_address": "streetAddress", "street": "streetAddress", "address_line": "streetAddress",
    "city": "addressLocality", "locality": "addressLocality", "town": "addressLocality",
    "region": "addressRegion", "state": "addressRegion", "province": "addressRegion",
    "postal_code": "postalCode", "postcode": "postalCode", "zip": "postalCode",
    "zip_code": "postalCode", "zipcode": "postalCode",
    "country": "addressCountry", "country_code": "addressCountry",
}
_ADDRESS_PREFIXES: tuple[str, ...] = ("", "address.", "location.address.", "jobLocation.address.")

_NUTRIENTS: dict[str, str] = {
    "calories": "calories", "energy": "calories", "protein": "proteinContent",
    "fat": "fatContent", "total_fat": "fatContent", "saturated_fat": "saturatedFatContent",
    "carbs": "carbohydrateContent", "carbohydrates": "carbohydrateContent",
    "carbohydrate": "carbohydrateContent", "sugar": "sugarContent", "sugars": "sugarContent",
    "fiber": "fiberContent", "fibre": "fiberContent", "sodium": "sodiumContent",
    "salt": "sodiumContent", "cholesterol": "cholesterolContent",
}

_PUBLISHED = ("datePublished", "dateCreated", "uploadDate", "datePosted")
_TITLE = ("headline", "name", "alternativeHeadline")
_AUTHOR = ("author", "creator", "byArtist")
_PRICE = ("offers.price", "offers.lowPrice", "offers.priceSpecification.price",
          "priceSpecification.price", "lowPrice")
_CURRENCY = ("priceCurrency", "offers.priceCurrency",
             "offers.priceSpecification.priceCurrency", "priceSpecification.priceCurrency")
_AVAILABILITY = ("availability", "offers.availability")
_GTIN = ("gtin13", "gtin", "gtin12", "gtin14", "gtin8", "isbn", "offers.gtin13", "offers.gtin")
_INSTRUCTIONS = ("recipeInstructions", "step", "steps")
_YIELD = ("recipeYield", "yield")

#: canonical field name -> schema.org paths tried in order (after exact key matches).
FIELD_PATHS: dict[str, tuple[str, ...]] = {
    # names and text
    "title": _TITLE, "headline": _TITLE, "name": ("name", "headline", "title"),
    "subtitle": ("alternativeHeadline",), "summary": ("description", "abstract"),
    "description": ("description", "abstract"), "excerpt": ("description", "abstract"),
    "body": ("articleBody", "text"), "content": ("articleBody", "text"),
    "text": ("text", "articleBody"), "article_body": ("articleBody", "text"),
    "author": _AUTHOR, "authors": _AUTHOR, "byline": _AUTHOR, "writer": _AUTHOR,
    "creator": _AUTHOR, "site_name": ("publisher", "isPartOf.name", "sourceOrganization"),
    "publisher": ("publisher",), "publication": ("publisher",), "site": ("publisher",),
    "section": ("articleSection",), "category": ("recipeCategory", "category", "articleSection"),
    "categories": ("recipeCategory", "category", "articleSection"),
    "tags": ("keywords",), "keywords": ("keywords",), "language": ("inLanguage",),
    "word_count": ("wordCount",), "url": ("url", "mainEntityOfPage", "@id"),
    "link": ("url", "mainEntityOfPage"), "canonical_url": ("url", "mainEntityOfPage"),
    "image": ("image", "thumbnailUrl", "thumbnail"), "images": ("image",),
    "image_url": ("image", "thumbnailUrl"), "thumbnail": ("thumbnailUrl", "thumbnail", "image"),
    # dates
    "date": ("startDate", *_PUBLISHED), "published": _PUBLISHED, "published_date": _PUBLISHED,
    "date_published": _PUBLISHED, "publish_date": _PUBLISHED, "publication_date": _PUBLISHED,
    "published_at": _PUBLISHED, "posted": _PUBLISHED, "created": ("dateCreated", *_PUBLISHED),
    "modified": ("dateModified",), "updated": ("dateModified",),
    "modified_date": ("dateModified",), "updated_date": ("dateModified",),
    "last_updated": ("dateModified",), "updated_at": ("dateModified",),
    # products
    "price": ("price", *_PRICE), "current_price": _PRICE, "sale_price": _PRICE,
    "low_price": ("offers.lowPrice", "lowPrice"), "min_price": ("offers.lowPrice", "lowPrice"),
    "high_price": ("offers.highPrice", "highPrice"), "max_price": ("offers.highPrice", "highPrice"),
    "currency": _CURRENCY, "price_currency": _CURRENCY, "currency_code": _CURRENCY,
    "availability": _AVAILABILITY, "in_stock": _AVAILABILITY, "available": _AVAILABILITY,
    "is_available": _AVAILABILITY, "stock": _AVAILABILITY, "stock_status": _AVAILABILITY,
    "offer": ("offers",), "offers": ("offers",),
    "variants": ("hasVariant", "offers"), "options": ("hasVariant", "offers"),
    "brand": ("brand", "manufacturer"), "manufacturer": ("manufacturer", "brand"),
    "sku": ("sku", "offers.sku"), "gtin": _GTIN, "ean": ("gtin13", *_GTIN),
    "upc": ("gtin12", *_GTIN), "isbn": ("isbn", "gtin13"), "mpn": ("mpn", "offers.mpn"),
    "model": ("model", "mpn"), "condition": ("itemCondition", "offers.itemCondition"),
    "seller": ("offers.seller", "seller"), "color": ("color",), "colour": ("color",),
    "rating": ("aggregateRating.ratingValue", "reviewRating.ratingValue"),
    "average_rating": ("aggregateRating.ratingValue",),
    "rating_value": ("aggregateRating.ratingValue", "reviewRating.ratingValue"),
    "review_count": ("aggregateRating.reviewCount", "aggregateRating.ratingCount"),
    "reviews_count": ("aggregateRating.reviewCount", "aggregateRating.ratingCount"),
    "num_reviews": ("aggregateRating.reviewCount", "aggregateRating.ratingCount"),
    "rating_count": ("aggregateRating.ratingCount", "aggregateRating.reviewCount"),
    "reviews": ("review",),
    # recipes
    "ingredients": ("recipeIngredient", "ingredients", "supply"),
    "ingredient_list": ("recipeIngredient", "ingredients"),
    "steps": _INSTRUCTIONS, "instructions": _INSTRUCTIONS, "directions": _INSTRUCTIONS,
    "method": _INSTRUCTIONS, "instructions_list": _INSTRUCTIONS,
    "servings": _YIELD, "serves": _YIELD, "yield": _YIELD, "yields": _YIELD, "portions": _YIELD,
    "total_time": ("totalTime",), "ready_in": ("totalTime",), "prep_time": ("prepTime",),
    "preparation_time": ("prepTime",), "cook_time": ("cookTime", "performTime"),
    "cooking_time": ("cookTime", "performTime"), "cuisine": ("recipeCuisine",),
    "nutrition": ("nutrition",),
    # events and places
    "start_date": ("startDate",), "start": ("startDate",), "starts_at": ("startDate",),
    "start_time": ("startDate",), "event_date": ("startDate",), "end_date": ("endDate",),
    "end": ("endDate",), "ends_at": ("endDate",), "end_time": ("endDate",),
    "doors": ("doorTime",), "door_time": ("doorTime",),
    "venue": ("location",), "venue_name": ("location.name",), "place": ("location",),
    "location": ("location", "jobLocation", "address"),
    "performers": ("performer",), "artists": ("performer", "byArtist"), "lineup": ("performer",),
    "artist": ("byArtist", "performer.0", "name"), "organizer": ("organizer",),
    "address": ("address", "location.address"), "latitude": ("geo.latitude",
                                                          "location.geo.latitude"),
    "longitude": ("geo.longitude", "location.geo.longitude"),
    "phone": ("telephone",), "telephone": ("telephone",), "email": ("email",),
    "price_range": ("priceRange",), "opening_hours": ("openingHours",),
    # jobs
    "company": ("hiringOrganization",), "company_name": ("hiringOrganization",),
    "employer": ("hiringOrganization",), "hiring_organization": ("hiringOrganization",),
    "job_location": ("jobLocation",), "employment_type": ("employmentType",),
    "date_posted": ("datePosted",), "posted_date": ("datePosted",),
    "valid_through": ("validThrough",), "deadline": ("validThrough",),
    "salary": ("baseSalary.value.value", "baseSalary.value.minValue", "baseSalary.value",
               "estimatedSalary.value"),
    "salary_currency": ("baseSalary.currency", "salaryCurrency"),
    # FAQ
    "questions": ("mainEntity",), "faq": ("mainEntity",), "faqs": ("mainEntity",),
    "question": ("name", "text"), "answer": ("acceptedAnswer.text", "acceptedAnswer",
                                             "suggestedAnswer.text"),
    # media
    "duration": ("duration",), "director": ("director",), "genre": ("genre",),
    "video_url": ("contentUrl", "embedUrl"),
}
FIELD_PATHS.update({
    name: tuple(prefix + key for prefix in _ADDRESS_PREFIXES)
    for name, key in _ADDRESS_PARTS.items()
})
FIELD_PATHS.update({
    name: (key, f"nutrition.{key}") for name, key in _NUTRIENTS.items()
})

#: canonical field name -> OpenGraph / product / article meta properties, in order.
OG_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("og:title",), "headline": ("og:title",), "name": ("og:title",),
    "description": ("og:description",), "summary": ("og:description",),
    "excerpt": ("og:description",),
    "image": ("og:image", "og:image:url", "og:image:secure_url"),
    "image_url": ("og:image", "og:image:url", "og:image:secure_url"),
    "thumbnail": ("og:image",), "url": ("og:url",), "link": ("og:url",),
    "canonical_url": ("og:url",), "site_name": ("og:site_name",), "site": ("og:site_name",),
    "publisher": ("og:site_name",), "publication": ("og:site_name",),
    "price": ("product:price:amount", "og:price:amount", "product:sale_price:amount"),
    "current_price": ("product:price:amount", "og:price:amount"),
    "currency": ("product:price:currency", "og:price:currency"),
    "price_currency": ("product:price:currency", "og:price:currency"),
    "availability": ("product:availability", "og:availability"),
    "in_stock": ("product:availability", "og:availability"),
    "brand": ("product:brand", "og:brand"), "sku": ("product:retailer_item_id",),
    "condition": ("product:condition",),
    "published": ("article:published_time", "article:published", "og:published_time"),
    "published_date": ("article:published_time", "article:published", "og:published_time"),
    "date_published": ("article:published_time", "article:published"),
    "publish_date": ("article:published_time", "article:published"),
    "publication_date": ("article:published_time", "article:published"),
    "date": ("article:published_time", "article:published"),
    "modified": ("article:modified_time", "og:updated_time"),
    "updated": ("article:modified_time", "og:updated_time"),
    "modified_date": ("article:modified_time", "og:updated_time"),
    "author": ("article:author", "book:author"), "byline": ("article:author",),
    "authors": ("article:author",), "section": ("article:section",),
    "tags": ("article:tag",), "keywords": ("article:tag",), "language": ("og:locale",),
}

# --------------------------------------------------------------------------- value tables
#: Keys tried, in order, when a node must become a plain string.
TEXT_KEYS: tuple[str, ...] = ("name", "headline", "text", "@value", "value", "caption",
                              "description")
#: Keys tried, in order, when a node must become a URL.
URL_KEYS: tuple[str, ...] = ("url", "contentUrl", "embedUrl", "@id")
#: PostalAddress parts, in the order they are joined into one line.
ADDRESS_KEYS: tuple[str, ...] = ("streetAddress", "addressLocality", "addressRegion",
                                 "postalCode", "addressCountry")
#: Keys naming a person/organisation: a bare URL there is a reference, not a name.
REFERENCE_KEYS: frozenset[str] = frozenset({
    "author", "creator", "publisher", "brand", "manufacturer", "performer", "organizer",
    "byArtist", "hiringOrganization", "seller", "sourceOrganization",
})
#: Field-name tokens meaning "this string is a link": lists pick their first element.
URL_FIELD_TOKENS: frozenset[str] = frozenset({"url", "image", "images", "link", "logo",
                                              "thumbnail", "photo", "picture", "href", "src"})
#: Source keys whose string values are comma-separated lists.
COMMA_LIST_KEYS: frozenset[str] = frozenset({"keywords", "recipeCategory", "recipeCuisine"})
#: Integer item properties filled with the element's 1-based rank when absent.
POSITION_FIELDS: frozenset[str] = frozenset({"position", "index", "step", "number", "order",
                                             "rank", "step_number"})
#: schema.org containers whose elements are the list (HowToSection, ItemList).
LIST_CONTAINER_KEYS: tuple[str, ...] = ("itemListElement", "steps", "step")

#: Words ignored when a property's description is scanned for schema.org keys.
HINT_STOPWORDS: frozenset[str] = frozenset({
    "the", "and", "for", "with", "from", "this", "that", "page", "main", "number", "text",
    "value", "list", "item", "items", "each", "one", "all", "per", "as", "of", "or", "in",
    "type", "id", "not", "without", "any", "its",
})
