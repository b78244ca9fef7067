"""One day of behaviour in the demo world, as parallel numpy arrays: impressions with their clicks,
add-to-carts and conversions (``simulate_sessions``), orders from conversions, organic buying and
fraud bursts with their lines and fraud probability (``simulate_orders``), and reviews of the order
lines (``simulate_reviews``). Each draws from its own random stream of the day, so the order of the
draws inside a function is part of the output: ``demo.synthetic`` documents the planted structure.
"""
from __future__ import annotations

from datetime import date

import numpy as np

from demo.text import compose_review_texts
from demo.world import (
    CATEGORIES,
    CATEGORY_BASE_PRICE,
    CHANNEL_RISK,
    COUNTRY_WEIGHTS,
    FRAUD_CHANNEL_WEIGHTS,
    FRAUD_HOUR_WEIGHTS,
    FRAUD_PAYMENT_WEIGHTS,
    LEGIT_CHANNEL_WEIGHTS,
    LEGIT_PAYMENT_WEIGHTS,
    ORDER_HOUR_WEIGHTS,
    PAYMENT_RISK,
    RATING_CUTS,
    RATING_NOISE,
    SCENARIO_CLICK_OFFSET,
    SCENARIO_CONVERT_OFFSET,
    SCENARIO_POSITION_SLOPE,
    SCENARIO_TASTE_WEIGHT,
    SCENARIO_WEIGHTS,
    SENTIMENT_NOISE,
    SESSION_HOUR_WEIGHTS,
    STATUS_WEIGHTS,
    STATUSES,
    STREAM_ORDERS,
    STREAM_REVIEWS,
    STREAM_SCENARIOS,
    STREAM_SESSIONS,
    TEXT_NOISE,
    US_PER_DAY,
    US_PER_HOUR,
    US_PER_SECOND,
    Items,
    Rings,
    SyntheticConfig,
    Users,
    day_index,
    day_start_us,
    hash_ints,
    stream_rng,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def seconds_us(seconds: np.ndarray) -> np.ndarray:
    """Seconds (float) as whole microseconds."""
    return (np.asarray(seconds) * US_PER_SECOND).astype(np.int64)


def choose(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of an index with the given (unnormalised) weights."""
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


def cumsum_within_groups(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sums restarting at each group; groups are consecutive runs of ``sizes``."""
    if len(values) == 0:
        return np.zeros(0, dtype=values.dtype)
    sizes = np.asarray(sizes)
    ends = np.cumsum(sizes)
    totals = np.cumsum(values)
    before_group = np.concatenate([[0], totals[ends[:-1] - 1]])
    return totals - np.repeat(before_group, sizes)


def sample_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of a (n, k) probability matrix, by inverse CDF (vectorised)."""
    cumulative = np.cumsum(probabilities, axis=1)
    draw = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((cumulative <= draw[:, None]).sum(axis=1), probabilities.shape[1] - 1)


def sample_items_in_categories(category: np.ndarray, items: Items, rng: np.random.Generator) -> np.ndarray:
    """Per requested LISTED category, one item index drawn by popularity within that category."""
    order = np.argsort(items.category, kind="stable")
    sorted_category = items.category[order]
    weights = np.cumsum(items.popularity[order])
    low = np.searchsorted(sorted_category, category, side="left")
    high = np.searchsorted(sorted_category, category, side="right")
    base = np.where(low > 0, weights[np.maximum(low - 1, 0)], 0.0)
    target = base + rng.random(len(category)) * (weights[high - 1] - base)
    position = np.clip(np.searchsorted(weights, target, side="right"), low, high - 1)
    return order[position]


def sample_taste_items(
    users: Users, user_index: np.ndarray, items: Items, taste_share: float, rng: np.random.Generator
) -> np.ndarray:
    """Items for users: a category from the user's taste (share ``taste_share``) or the catalogue, then an item."""
    n_categories = len(CATEGORIES)
    listed = np.bincount(items.category, weights=items.popularity, minlength=n_categories)
    available = listed > 0
    catalogue = listed / listed.sum()
    taste = users.taste[user_index] * available
    taste_total = taste.sum(axis=1, keepdims=True)
    taste = np.where(taste_total > 0, taste / np.where(taste_total > 0, taste_total, 1), catalogue)
    from_taste = rng.random(len(user_index)) < taste_share
    probabilities = np.where(from_taste[:, None], taste, catalogue[None, :])
    category = sample_rows(probabilities, rng)
    return sample_items_in_categories(category, items, rng)


def simulate_sessions(
    config: SyntheticConfig, day: date, users: Users, items: Items
) -> dict[str, np.ndarray]:
    """Impressions of one day with their clicks, add-to-carts and conversions (all as arrays)."""
    rng = stream_rng(config, day_index(day), STREAM_SESSIONS)
    start = day_start_us(day)
    n_population = len(users.user_id)
    n_active = min(int(rng.poisson(config.count(config.active_users_per_day))), n_population)
    active = rng.choice(n_population, size=n_active, replace=False, p=users.activity / users.activity.sum())
    session_user = np.repeat(active, 1 + (rng.random(n_active) < 0.15))
    n_sessions = len(session_user)
    hour = rng.choice(len(SESSION_HOUR_WEIGHTS), size=n_sessions, p=SESSION_HOUR_WEIGHTS / SESSION_HOUR_WEIGHTS.sum())
    session_start = start + hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n_sessions)
    per_session = rng.integers(5, 11, n_sessions)
    session = np.repeat(np.arange(n_sessions), per_session)
    gaps = US_PER_SECOND + np.minimum(rng.exponential(20.0, len(session)), 300.0) * US_PER_SECOND
    elapsed = cumsum_within_groups(gaps, per_session)
    user = session_user[session]
    item = sample_taste_items(users, user, items, 0.55, rng)
    shown_at = (session_start[session] + elapsed).astype(np.int64)

    # A page never shows the same item twice in one session.
    key = session.astype(np.int64) * len(items.item_id) + item
    keep = np.sort(np.unique(key, return_index=True)[1])
    session, user, item, shown_at = session[keep], user[keep], item[keep], shown_at[keep]
    index = np.arange(len(session))
    session_first = np.maximum.accumulate(np.where(np.r_[True, session[1:] != session[:-1]], index, 0))
    position = index - session_first + 1

    # Each session happens on one surface (its own stream: the draws above are as they were).
    session_scenario = choose(SCENARIO_WEIGHTS, n_sessions, stream_rng(config, day_index(day), STREAM_SCENARIOS))
    scenario = session_scenario[session]

    taste_term = np.log(len(CATEGORIES) * users.taste[user, items.true_category[item]] + 0.1)
    price_term = np.log(items.price[item] / CATEGORY_BASE_PRICE[items.true_category[item]])
    sensitivity = users.price_sensitivity[user]
    quality = items.quality[item]
    p_click = sigmoid(
        -3.25
        + SCENARIO_CLICK_OFFSET[scenario]
        + SCENARIO_TASTE_WEIGHT[scenario] * taste_term
        + 0.8 * quality
        - 0.35 * sensitivity * price_term
        - SCENARIO_POSITION_SLOPE[scenario] * (position - 1)
    )
    p_convert = sigmoid(
        -1.95 + SCENARIO_CONVERT_OFFSET[scenario] + 0.5 * taste_term + 0.7 * quality - 0.8 * sensitivity * price_term
    )
    clicked = rng.random(len(item)) < p_click
    clicked_at = shown_at + seconds_us(1.0 + np.minimum(rng.exponential(10.0, len(item)), 120.0))
    converted = clicked & (rng.random(len(item)) < p_convert)
    carted = clicked & (rng.random(len(item)) < np.where(converted, 0.6, 0.1))
    carted_at = clicked_at + seconds_us(2.0 + np.minimum(rng.exponential(40.0, len(item)), 600.0))
    # Purchase delay: exponential (mean 2 h) truncated to the rest of the day (and below 24 h), so
    # P(order within 24 h | click) is exactly p_convert and no order spills into the next day.
    mean = config.conversion_delay_hours * US_PER_HOUR
    room = np.maximum(np.minimum(start + US_PER_DAY - clicked_at, US_PER_DAY) - 2 * US_PER_SECOND, 1)
    draw = rng.random(len(item))
    delay = -mean * np.log1p(-draw * -np.expm1(-room / mean))
    ordered_at = clicked_at + US_PER_SECOND + np.minimum(delay, room - 1).astype(np.int64)
    return {
        "session": session,
        "scenario": scenario,
        "user": user,
        "item": item,
        "shown_at": shown_at,
        "position": position,
        "p_click": p_click,
        "p_convert": p_convert,
        "clicked": clicked,
        "clicked_at": clicked_at,
        "carted": carted,
        "carted_at": carted_at,
        "converted": converted,
        "ordered_at": ordered_at,
    }


def simulate_orders(
    config: SyntheticConfig,
    day: date,
    sessions: dict[str, np.ndarray],
    users: Users,
    items: Items,
    rings: Rings,
) -> dict[str, np.ndarray]:
    """Orders of one day from three sources (click conversions, organic buying, fraud) with lines and labels."""
    rng = stream_rng(config, day_index(day), STREAM_ORDERS)
    start = day_start_us(day)
    weights = users.activity / users.activity.sum()

    # 1. Conversions of clicks: the clicked item, sometimes with a second item.
    converted = sessions["converted"]
    conv_user = sessions["user"][converted]
    conv_time = sessions["ordered_at"][converted]
    conv_item = sessions["item"][converted]

    # 2. Organic orders (search, wishlist, apps without tracked impressions).
    n_organic = int(rng.poisson(config.count(config.organic_orders_per_day)))
    org_user = rng.choice(len(users.user_id), size=n_organic, p=weights)
    org_hour = choose(ORDER_HOUR_WEIGHTS, n_organic, rng)
    org_time = start + org_hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n_organic)

    # 3. Fraud: young fraudster accounts of the rings, and takeovers of established accounts. Both
    # come in bursts of orders a few tens of minutes apart.
    age_at_start = start - users.signup_us
    young = (age_at_start > 0) & (age_at_start <= config.fraudster_active_days * US_PER_DAY)
    young_fraudster = users.is_fraudster & young
    acting = np.flatnonzero(young_fraudster & (rng.random(len(users.user_id)) < 0.4))
    established = np.flatnonzero(~users.is_fraudster & (age_at_start > 60 * US_PER_DAY))
    n_takeovers = min(int(rng.poisson(config.count(config.takeovers_per_day))), len(established))
    taken = rng.choice(established, size=n_takeovers, replace=False) if n_takeovers else np.zeros(0, np.int64)
    burst_user = np.concatenate([acting, taken]).astype(np.int64)
    burst_ring = np.concatenate([users.ring[acting], rng.integers(0, len(rings.country), n_takeovers)])
    burst_size = np.minimum(1 + rng.poisson(np.where(np.arange(len(burst_user)) < len(acting), 1.3, 0.6)), 6)
    burst = np.repeat(np.arange(len(burst_user)), burst_size)
    burst_hour = choose(FRAUD_HOUR_WEIGHTS, len(burst_user), rng)
    burst_start = start + burst_hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, len(burst_user))
    gaps = (2 * 60 + rng.exponential(40 * 60, len(burst))) * US_PER_SECOND
    gaps[np.cumsum(burst_size) - burst_size] = 0.0  # a burst's first order is placed at its start
    elapsed = cumsum_within_groups(gaps, burst_size)
    risky_time = (burst_start[burst] + elapsed).astype(np.int64)
    in_day = risky_time < start + US_PER_DAY
    risky_user, risky_ring, risky_time = burst_user[burst][in_day], burst_ring[burst][in_day], risky_time[in_day]

    n_conv, n_org, n_risky = len(conv_user), n_organic, len(risky_user)
    user = np.concatenate([conv_user, org_user, risky_user]).astype(np.int64)
    created = np.concatenate([conv_time, org_time, risky_time]).astype(np.int64)
    risky = np.concatenate([np.zeros(n_conv + n_org, bool), np.ones(n_risky, bool)])
    ring = np.concatenate([np.zeros(n_conv + n_org, np.int64), risky_ring]).astype(np.int64)
    n_orders = len(user)

    # Order lines: (order index, item index, quantity).
    org_lines = 1 + (rng.random(n_org) < 0.3) + (rng.random(n_org) < 0.08)
    risky_lines = 1 + (rng.random(n_risky) < 0.4)
    conv_extra = rng.random(n_conv) < 0.15
    org_line_order = n_conv + np.repeat(np.arange(n_org), org_lines)
    extra_order = np.flatnonzero(conv_extra)
    taste_order = np.concatenate([extra_order, org_line_order]).astype(np.int64)
    taste_items = sample_taste_items(users, user[taste_order], items, 0.8, rng)
    risky_line_order = n_conv + n_org + np.repeat(np.arange(n_risky), risky_lines)
    expensive = items.popularity * items.price**1.2
    risky_items = choose(expensive, len(risky_line_order), rng)
    line_order = np.concatenate([np.arange(n_conv), taste_order, risky_line_order]).astype(np.int64)
    line_item = np.concatenate([conv_item, taste_items, risky_items]).astype(np.int64)
    line_qty = np.where(
        risky[line_order], 1 + rng.binomial(2, 0.45, len(line_order)), 1 + (rng.random(len(line_order)) < 0.12)
    )
    unique_key = line_order * len(items.item_id) + line_item
    keep = np.sort(np.unique(unique_key, return_index=True)[1])
    line_order, line_item, line_qty = line_order[keep], line_item[keep], line_qty[keep]
    discount = np.where(rng.random(len(line_item)) < 0.2, rng.uniform(0.05, 0.2, len(line_item)), 0.0)
    unit_price = np.maximum(np.round(items.price[line_item] * (1 - discount), 2), 0.5)
    amount = np.round(np.bincount(line_order, weights=line_qty * unit_price, minlength=n_orders), 2)

    # Order context: legit users use their own devices, home or mobile IPs and their habits; fraud
    # reuses the ring's devices and IPs, ships to the ring's country and pays with risky methods.
    draw = rng.random((6, n_orders))
    own_device = np.where(draw[0] < 0.85, users.device_main[user], users.device_alt[user])
    ring_device = rings.devices[ring, rng.integers(0, rings.devices.shape[1], n_orders)]
    uses_ring_device = risky & (draw[1] < 0.75)
    device = np.where(uses_ring_device, ring_device, own_device)
    mobile_ip = hash_ints(config.seed, 14, day_index(day), np.arange(n_orders))
    ring_ip = rings.ips[ring, rng.integers(0, rings.ips.shape[1], n_orders)]
    uses_ring_ip = risky & (draw[2] < 0.6)
    ip = np.where(uses_ring_ip, ring_ip, np.where(~risky & (draw[2] < 0.7), users.home_ip[user], mobile_ip))
    random_country = choose(COUNTRY_WEIGHTS, n_orders, rng)
    ship_country = np.where(
        risky,
        np.where(draw[3] < 0.6, rings.country[ring], users.country[user]),
        np.where(draw[3] < 0.03, random_country, users.country[user]),
    )
    payment = np.where(
        risky,
        choose(FRAUD_PAYMENT_WEIGHTS, n_orders, rng),
        np.where(draw[4] < 0.8, users.payment_pref[user], choose(LEGIT_PAYMENT_WEIGHTS, n_orders, rng)),
    )
    channel = np.where(
        risky,
        choose(FRAUD_CHANNEL_WEIGHTS, n_orders, rng),
        np.where(draw[5] < 0.7, users.channel_pref[user], choose(LEGIT_CHANNEL_WEIGHTS, n_orders, rng)),
    )
    status = choose(STATUS_WEIGHTS, n_orders, rng)

    # Velocity: the user's earlier orders of the day (all within 24 h).
    by_user = np.lexsort((created, user))
    sorted_user = user[by_user]
    index = np.arange(n_orders)
    group_first = np.maximum.accumulate(np.where(np.r_[True, sorted_user[1:] != sorted_user[:-1]], index, 0))
    velocity = np.empty(n_orders, np.int64)
    velocity[by_user] = index - group_first
    age_days = (created - users.signup_us[user]) / US_PER_DAY
    night = ((created - start) // US_PER_HOUR) < 6
    logit = (
        -5.6
        + 2.4 * np.exp(-age_days / 3.0)
        + 1.5 * uses_ring_device
        + 1.0 * uses_ring_ip
        + 0.6 * np.minimum(velocity, 3)
        + 0.8 * np.clip(np.log(np.maximum(amount, 1.0) / 150.0), 0.0, 3.0)
        + 1.3 * (ship_country != users.country[user])
        + PAYMENT_RISK[payment]
        + CHANNEL_RISK[channel]
        + 0.8 * night
        + 0.6 * risky
    )
    p_fraud = sigmoid(logit)
    is_fraud = rng.random(n_orders) < p_fraud
    labeled_at = created + (rng.uniform(1.0, 30.0, n_orders) * US_PER_DAY).astype(np.int64)
    return {
        "user": user,
        "created": created,
        "amount": amount,
        "payment": payment,
        "device": device,
        "ip": ip,
        "channel": channel,
        "ship_country": ship_country,
        "status": status,
        "p_fraud": p_fraud,
        "is_fraud": is_fraud,
        "labeled_at": labeled_at,
        "line_order": line_order,
        "line_item": line_item,
        "line_qty": line_qty,
        "unit_price": unit_price,
    }


def cuts_passed(values: np.ndarray) -> np.ndarray:
    """How many of the rating's cut points each value passes (0..4)."""
    return (values[:, None] > RATING_CUTS[None, :]).sum(axis=1)


def simulate_reviews(
    config: SyntheticConfig, day: date, orders: dict[str, np.ndarray], users: Users, items: Items
) -> dict[str, np.ndarray | list]:
    """Reviews of the order lines of one day: rating, truth P(rating <= 2 | sentiment), text and time.

    One latent sentiment per review drives both its rating and its words, each through noise of its
    own (``demo.world.SENTIMENT_NOISE``, ``RATING_NOISE``, ``TEXT_NOISE``): the rating is independent of
    the text given the sentiment, so ``p_negative`` is the best any model of the text can do.
    """
    rng = stream_rng(config, day_index(day), STREAM_REVIEWS)
    line_order, line_item = orders["line_order"], orders["line_item"]
    cancelled = orders["status"][line_order] == STATUSES.index("cancelled")
    chance = np.where(orders["is_fraud"][line_order], 0.02, 0.30)
    reviewed = np.flatnonzero(~cancelled & (rng.random(len(line_order)) < chance))
    order, item = line_order[reviewed], line_item[reviewed]
    user = orders["user"][order]
    delivery_issue = rng.random(len(reviewed)) < 0.1
    taste = np.log(len(CATEGORIES) * users.taste[user, items.true_category[item]] + 0.1)
    score = 1.1 * items.quality[item] - 0.5 * users.harshness[user] + 0.25 * taste - 2.2 * delivery_issue
    sentiment = score + rng.logistic(0.0, SENTIMENT_NOISE, len(reviewed))
    rating = 1 + cuts_passed(sentiment + rng.logistic(0.0, RATING_NOISE, len(reviewed)))
    p_negative = sigmoid((RATING_CUTS[1] - sentiment) / RATING_NOISE)
    text_level = cuts_passed(sentiment + rng.logistic(0.0, TEXT_NOISE, len(reviewed)))  # 0..4: the words' stars - 1
    created = orders["created"][order] + (rng.uniform(1.0, 14.0, len(reviewed)) * US_PER_DAY).astype(np.int64)
    without_order = rng.random(len(reviewed)) < 0.03
    titles, bodies = compose_review_texts(text_level, delivery_issue, items.true_category[item], rng)
    return {
        "order": order,
        "item": item,
        "user": user,
        "rating": rating,
        "p_negative": p_negative,
        "created": created,
        "without_order": without_order,
        "title": titles,
        "body": bodies,
    }
