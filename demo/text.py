"""Text for the demo warehouse: item titles from category words and review text that follows the reviewer's sentiment.

Everything is vectorised: phrases are picked by index arrays and joined with Polars, so the cost does
not grow with a Python loop per row. The vocabulary is small on purpose: a text model must learn that
"not good" is negative while "not bad" is not, and that delivery complaints pull ratings down.
"""
from __future__ import annotations

import numpy as np
import polars as pl

TEXTLESS_REVIEW_SHARE = 0.08  # reviews with a rating and no words at all

# Per category (in demo.world.CATEGORIES order): product nouns and category adjectives.
CATEGORY_NOUNS: tuple[tuple[str, ...], ...] = (
    ("headphones", "charger", "speaker", "keyboard", "mouse", "monitor", "camera", "tablet", "smartwatch",
     "router"),
    ("jacket", "sneakers", "dress", "t-shirt", "jeans", "scarf", "hoodie", "handbag", "belt", "boots"),
    ("lamp", "pillow", "blanket", "vase", "curtain", "rug", "shelf", "mug", "towel set", "wall clock"),
    ("serum", "lipstick", "moisturizer", "shampoo", "perfume", "face mask", "mascara", "nail polish", "cleanser",
     "sunscreen"),
    ("yoga mat", "dumbbell", "running shoes", "water bottle", "resistance band", "bike helmet", "tennis racket",
     "football", "jump rope", "gym bag"),
    ("puzzle", "building blocks", "doll", "plush bear", "board game", "rc car", "train set", "kite",
     "action figure", "crayons"),
    ("novel", "cookbook", "biography", "atlas", "notebook", "comic", "poetry collection", "travel guide",
     "thriller", "textbook"),
    ("coffee beans", "olive oil", "green tea", "pasta", "honey", "dark chocolate", "granola", "spice mix", "rice",
     "almonds"),
    ("garden hose", "planter", "flower seeds", "shovel", "pruning shears", "lawn sprinkler", "bird feeder",
     "compost bin", "watering can", "garden gloves"),
    ("car charger", "floor mats", "dash cam", "wiper blades", "seat cover", "tire inflator", "jump starter",
     "phone mount", "car wax", "led bulbs"),
)
CATEGORY_ADJECTIVES: tuple[tuple[str, ...], ...] = (
    ("Wireless", "Bluetooth", "Smart", "Portable", "Digital", "USB-C", "Noise-Cancelling", "HD"),
    ("Cotton", "Leather", "Slim-Fit", "Oversized", "Vintage", "Knitted", "Denim", "Casual"),
    ("Ceramic", "Velvet", "Scandinavian", "Cozy", "Linen", "Minimalist", "Wooden", "Decorative"),
    ("Hydrating", "Organic", "Matte", "Vegan", "Fragrance-Free", "Anti-Aging", "Glow", "Gentle"),
    ("Lightweight", "Breathable", "Non-Slip", "Adjustable", "Training", "Outdoor", "Ergonomic", "Pro-Grip"),
    ("Colorful", "Educational", "Wooden", "Kids", "Interactive", "Musical", "Magnetic", "Giant"),
    ("Hardcover", "Paperback", "Illustrated", "Bestselling", "Classic", "Annotated", "Pocket", "Signed"),
    ("Organic", "Fair-Trade", "Roasted", "Gluten-Free", "Extra Virgin", "Wholegrain", "Raw", "Family-Size"),
    ("Galvanized", "Heavy-Duty", "Weatherproof", "Raised", "Solar", "Expandable", "Terracotta", "Perennial"),
    ("All-Weather", "Universal", "12V", "Magnetic", "Custom-Fit", "Compact", "High-Pressure", "Heavy-Duty"),
)
TITLE_NOUNS = tuple(tuple(noun.title() for noun in nouns) for nouns in CATEGORY_NOUNS)
BRANDS = (
    "Nordek", "Alvia", "Brixo", "Calmora", "Deltan", "Everlo", "Fenwick", "Gravo", "Helio", "Istra",
    "Junova", "Kelvo", "Lumen", "Maro", "Novik", "Orvo", "Pellan", "Quorra", "Ravel", "Solvi",
)
PREMIUM_WORDS = ("Pro", "Premium", "Deluxe", "Elite")
BUDGET_WORDS = ("Basic", "Value", "Essential", "Lite")

# Review phrases by rating 1..5 (index 0 = rating 1).
REVIEW_TITLES: tuple[tuple[str, ...], ...] = (
    ("Terrible", "Waste of money", "Do not buy", "Very disappointed", "Broke after a week", "Awful"),
    ("Not good", "Disappointing", "Poor quality", "Not worth it", "Below expectations", "Not great"),
    ("It's okay", "Average", "Decent for the price", "Mixed feelings", "Not bad, not great", "Fine"),
    ("Good value", "Pretty good", "Nice", "Happy with it", "Solid choice", "Not bad at all"),
    ("Excellent!", "Love it", "Perfect", "Highly recommend", "Five stars", "Amazing"),
)
REVIEW_VERDICTS: tuple[tuple[str, ...], ...] = (
    ("stopped working after two days.", "is cheap and flimsy.", "is not good at all.",
     "looks nothing like the photos.", "was a complete waste of money.", "broke the first time I used it."),
    ("is not great.", "feels cheap.", "is smaller than expected.", "does not work as described.",
     "was disappointing.", "is not worth the price."),
    ("is okay for the price.", "is average, nothing special.", "works but feels a bit cheap.",
     "is not bad.", "does the job.", "is fine, I guess."),
    ("works well.", "is good quality.", "is well made.", "was a good buy.",
     "is nice, not perfect but close.", "is not bad at all."),
    ("is excellent.", "is amazing quality.", "works perfectly.", "is exactly as described, love it.",
     "exceeded my expectations.", "is the best I have owned."),
)
REVIEW_CLOSINGS: tuple[tuple[str, ...], ...] = (
    ("Would not recommend.", "Returning it.", "Never again.", "Avoid this seller."),
    ("Not recommended.", "Expected better.", "I would not buy it again.", "Not happy."),
    ("Might buy again.", "It's fine.", "Could be better.", "No strong feelings."),
    ("Would recommend.", "Good value for money.", "I am happy with it.", "No complaints."),
    ("Highly recommend!", "Will buy again.", "Best purchase this year.", "Love it!"),
)
DELIVERY_COMPLAINTS = (
    "Delivery was late by a week.", "The package arrived damaged.", "Shipping took forever.",
    "The courier left it in the rain.", "It arrived late and the box was crushed.", "Delivery was a nightmare.",
)
DELIVERY_PRAISE = ("Fast delivery.", "Arrived early.", "Well packaged.", "Quick shipping.")


def _pick(options: tuple[str, ...] | np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.asarray(options, dtype=object)[index]


def _pick_nested(table: tuple[tuple[str, ...], ...], row: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One phrase per element: table[row[i]][random column] (rows may have different lengths)."""
    width = np.array([len(options) for options in table])
    column = np.floor(rng.random(len(row)) * width[row]).astype(np.int64)
    flat = np.array([phrase for options in table for phrase in options], dtype=object)
    offsets = np.concatenate([[0], np.cumsum(width)[:-1]])
    return flat[offsets[row] + column]


def _join_words(parts: list[np.ndarray], separator: str = " ") -> list[str | None]:
    """Join per-row phrases (None = absent) into one string per row."""
    columns = {
        f"p{i}": pl.Series(np.asarray(part, dtype=object).tolist(), dtype=pl.String) for i, part in enumerate(parts)
    }
    frame = pl.DataFrame(columns)
    joined = frame.select(pl.concat_str(pl.all(), separator=separator, ignore_nulls=True).alias("text"))
    return joined["text"].to_list()


def compose_item_titles(category: np.ndarray, quality: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Item titles from the words of the item's TRUE category; quality tilts premium vs budget words."""
    n = len(category)
    brand = _pick(BRANDS, rng.integers(0, len(BRANDS), n))
    adjective = _pick_nested(CATEGORY_ADJECTIVES, category, rng)
    noun = _pick_nested(TITLE_NOUNS, category, rng)
    # Better items are more often sold as "Pro"/"Premium": a weak, learnable text signal of quality.
    tier_draw = rng.random(n)
    premium = tier_draw < 0.35 * (1 / (1 + np.exp(-1.5 * quality)))
    budget = ~premium & (tier_draw > 1 - 0.35 * (1 / (1 + np.exp(1.5 * quality))))
    tier = np.where(
        premium,
        _pick(PREMIUM_WORDS, rng.integers(0, len(PREMIUM_WORDS), n)),
        np.where(budget, _pick(BUDGET_WORDS, rng.integers(0, len(BUDGET_WORDS), n)), None),
    )
    letters = np.array(list("ABCDEFGHKLMRSTXZ"), dtype=object)
    model = _pick(letters, rng.integers(0, len(letters), n)) + rng.integers(10, 1000, n).astype(str).astype(object)
    return [str(title) for title in _join_words([brand, tier, adjective, noun, model])]


def compose_review_texts(
    text_level: np.ndarray,
    delivery_issue: np.ndarray,
    category: np.ndarray,
    rng: np.random.Generator,
    title_missing_share: float = 0.15,
    body_missing_share: float = 0.05,
    textless_share: float = TEXTLESS_REVIEW_SHARE,
) -> tuple[list[str | None], list[str | None]]:
    """(titles, bodies) whose wording follows ``text_level`` (0..4, the words of a 1..5-star review: the
    reviewer's sentiment as the words tell it, not the rating); delivery issues add a complaint; a
    ``textless_share`` of reviews has neither title nor body."""
    n = len(text_level)
    level = np.clip(text_level.astype(np.int64), 0, 4)
    # Reviewers are not perfectly consistent: some phrases come from a neighbouring rating.
    wobble = np.where(rng.random(n) < 0.12, rng.choice([-1, 1], n), 0)
    phrase_level = np.clip(level + wobble, 0, 4)
    title = _pick_nested(REVIEW_TITLES, level, rng)
    noun = _pick_nested(CATEGORY_NOUNS, category, rng)
    opener = np.where(rng.random(n) < 0.5, "The", "This")
    verdict = _pick_nested(REVIEW_VERDICTS, phrase_level, rng)
    first = np.array(_join_words([opener, noun, verdict]), dtype=object) if n else np.array([], dtype=object)
    closing = np.where(rng.random(n) < 0.7, _pick_nested(REVIEW_CLOSINGS, level, rng), None)
    delivery = np.where(
        delivery_issue.astype(bool),
        _pick(DELIVERY_COMPLAINTS, rng.integers(0, len(DELIVERY_COMPLAINTS), n)),
        np.where(
            (level >= 3) & (rng.random(n) < 0.2),
            _pick(DELIVERY_PRAISE, rng.integers(0, len(DELIVERY_PRAISE), n)),
            None,
        ),
    )
    # Complaints go first or last, so position alone does not give them away.
    delivery_first = rng.random(n) < 0.5
    body = _join_words(
        [np.where(delivery_first, delivery, None), first, closing, np.where(delivery_first, None, delivery)]
    )
    textless = rng.random(n) < textless_share
    title_kept = (rng.random(n) >= title_missing_share) & ~textless
    body_kept = (rng.random(n) >= body_missing_share) & ~textless
    titles = [str(text) if keep else None for text, keep in zip(title, title_kept, strict=True)]
    bodies = [text if keep else None for text, keep in zip(body, body_kept, strict=True)]
    return titles, bodies
