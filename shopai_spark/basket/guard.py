"""Guard against an itemset explosion: measure the search before FP-Growth runs.

Two figures per support, both from one pass over the baskets (everything is counted at the lowest
support's minimum count, then thresholded at each support of the ladder):

1. **Clique estimate.** Count the frequent items (F) and the frequent pairs (P) exactly. Every
   frequent itemset is a clique of the frequent-pair graph, so the number of frequent itemsets is
   estimated as the expected number of cliques of a random graph with F nodes and P edges (edge
   density d = P / C(F, 2)), with L the largest basket:

       estimate = F + P + Σ_{k=3..L} C(F, k) · d^C(k, 2)

   Right in order of magnitude when items meet at random, blind to baskets that repeat.

2. **Shared-core lower bound.** Items held together by c ≥ min count baskets (a *core*) make all
   their 2^s − 1 subsets frequent. Baskets are reduced to their frequent items (so baskets that
   differ only in rare items become identical), then each distinct reduced basket of at least
   ``MIN_SEED_SIZE`` items is a seed: the baskets sharing its rarest item are intersected with it,
   largest overlap first, and the running intersection after w baskets is a core of w baskets
   (seeds with the rarest anchors first, as many as a join budget allows).
   Identical baskets and supersets overlap fully and come first, so a basket occurring c times is
   a core of its own size at count c. At each support the ``MAX_CORES`` largest maximal cores are
   kept and the itemsets of ≥ 3 items inside at least one of them are counted exactly
   (inclusion–exclusion): with F + P, a lower bound of the true count.

The estimate is the larger of the two; when it exceeds ``fpgrowth.max_itemsets`` the job stops
before mining with an error that names the smallest support on a 1-1.5-2-3-5-7 ladder whose
estimate fits. Against MLlib FP-Growth (``pytest tests/test_basket_guard.py -m realdata``):

- groceries (9,835 baskets) at min count 100 / 50 / 20 / 10 / 5: estimate 312 / 899 / 4,064 /
  17,889 / 136,072 (from cliques; the core bound is lower), true 326 / 1,001 / 4,223 / 13,492 /
  49,580: the right order of magnitude, which is all a guard needs;
- UCI Online Retail, first 8,373 lines (390 baskets) at min_support 0.01 / 0.015 / 0.02 / 0.03:
  clique estimate 732 / 388 / 278 / 182, core bound 262,687 / 131,290 / 39,908 / 20,530, true
  262,732 / 131,303 / 51,783 / 26,929 (invoices of 16-19 items re-ordered with small changes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.basket.mining import min_count
from shopai_spark.errors import JobError

LADDER = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
# A seed costs a join with every basket sharing its rarest item; seeds under 10 items could add at
# most 1,023 itemsets each, which the clique estimate sees as pair density instead.
MIN_SEED_SIZE = 10
# Join rows allowed for the seeds, per basket plus a floor, taken by the seeds with the rarest
# anchors first (measured: +30% guard time on 200,000 random baskets of up to 20 items, half seeds).
SEED_JOIN_PER_BASKET = 4
SEED_JOIN_FLOOR = 200_000
MAX_CORES = 12  # inclusion–exclusion over at most 2^12 intersections per support
CORES_PER_SUPPORT = 4 * MAX_CORES  # collected per support, before nested cores are dropped

PREFIX_TYPE = "array<struct<items: array<string>, baskets: bigint>>"
# Running intersection of the seed with its sorted traces; a prefix is recorded when it shrinks.
PREFIXES = f"""aggregate(traces,
  named_struct('items', seed, 'baskets', 0L, 'done', cast(array() as {PREFIX_TYPE})),
  (acc, t) -> named_struct(
    'items', array_intersect(acc.items, t.trace),
    'baskets', acc.baskets + 1,
    'done', if(acc.baskets > 0 and size(array_intersect(acc.items, t.trace)) < size(acc.items),
               concat(acc.done, array(named_struct('items', acc.items, 'baskets', acc.baskets))),
               acc.done)),
  acc -> filter(concat(acc.done, array(named_struct('items', acc.items, 'baskets', acc.baskets))),
                p -> size(p.items) >= 3))"""


class SearchTooLargeError(JobError):
    """The requested support would produce more frequent itemsets than the configured limit."""

    exit_code = 5


@dataclass(frozen=True)
class Core:
    """Items held together by (at least) ``baskets`` baskets: all their subsets reach that count."""

    items: frozenset[str]
    baskets: int


@dataclass(frozen=True)
class SearchEstimate:
    """The measured search at one support: min count, frequent items and pairs, the clique
    estimate, the shared-core lower bound and the cores it counts (largest first)."""

    min_support: float
    min_count: int
    frequent_items: int
    frequent_pairs: int
    clique_estimate: float
    core_bound: int
    cores: tuple[Core, ...]

    @property
    def estimated_itemsets(self) -> float:
        """The larger of the clique estimate and the shared-core lower bound."""
        return max(self.clique_estimate, float(self.core_bound))


def estimate_itemsets(items: int, pairs: int, max_size: int) -> float:
    """Expected cliques (of any size up to ``max_size``) of a random graph with ``items`` nodes and
    ``pairs`` edges, counting nodes and edges themselves; inf when beyond floats."""
    if items < 2 or pairs == 0 or max_size < 3:
        return float(items + pairs)
    density = pairs / math.comb(items, 2)
    total = float(items + pairs)
    for k in range(3, min(items, max_size) + 1):
        log_term = (math.lgamma(items + 1) - math.lgamma(k + 1) - math.lgamma(items - k + 1)
                    + math.comb(k, 2) * math.log(density))
        if log_term > 700:
            return math.inf
        total += math.exp(log_term)
    return total


def support_ladder(min_support: float) -> list[float]:
    """Supports from ``min_support`` up to 1 on a 1-1.5-2-3-5-7 ladder (``min_support`` first)."""
    ladder = [min_support]
    decade = 10.0 ** math.floor(math.log10(min_support))
    while decade <= 1.0:
        ladder += [float(f"{m * decade:.12g}") for m in LADDER if min_support < m * decade <= 1.0]
        decade *= 10
    return ladder


def item_counts(baskets: DataFrame) -> DataFrame:
    """Baskets (items: array<string>, distinct) → item (string), count (long)."""
    return baskets.select(F.explode("items").alias("item")).groupBy("item").agg(F.count(F.lit(1)).alias("count"))


def reduced_baskets(baskets: DataFrame, frequent: DataFrame) -> DataFrame:
    """Baskets (order_id, items) and the frequent items (column ``item``) → one row per basket with a
    frequent item: items (array<string>: its frequent items, sorted), size (int). Identical reduced
    baskets are not grouped: the seeds are distinct (:func:`seeds`), and grouping cost a shuffle
    of every basket (about 1 s of the guard's 10 s on 1M baskets) to save rows only where baskets repeat."""
    kept = (baskets.select("order_id", F.explode("items").alias("item"))
            .join(F.broadcast(frequent.select("item")), "item")
            .groupBy("order_id").agg(F.array_sort(F.collect_list("item")).alias("items")))
    return kept.select("items", F.size("items").alias("size"))


def pairs_of(column: str) -> Column:
    """Every pair of a sorted array column: array<struct<a, b>> with a before b."""
    return F.expr(f"flatten(transform({column}, (x, i) -> "
                  f"transform(slice({column}, i + 2, size({column})), y -> named_struct('a', x, 'b', y))))")


def pair_counts(reduced: DataFrame) -> DataFrame:
    """Reduced baskets (items) → a, b (a < b), count (long) of every pair bought together."""
    return (reduced.select(F.explode(pairs_of("items")).alias("pair"))
            .groupBy("pair.a", "pair.b").agg(F.count(F.lit(1)).alias("count")))


def seeds(reduced: DataFrame, items: DataFrame) -> DataFrame:
    """Reduced baskets (items, size) and item counts (item, count) → seed (array<string>: a reduced
    basket of at least MIN_SEED_SIZE items), anchor (string: its rarest item, ties by name),
    anchor_count (long: the baskets holding the anchor)."""
    rarest = (reduced.filter(F.col("size") >= MIN_SEED_SIZE)
              .select(F.col("items").alias("seed"), F.explode("items").alias("item"))
              .join(items, "item")
              .groupBy("seed").agg(F.min(F.struct("count", "item")).alias("rarest")))
    return rarest.select("seed", F.col("rarest.item").alias("anchor"), F.col("rarest.count").alias("anchor_count"))


def anchor_limit(seeds: DataFrame, max_rows: int) -> int:
    """Seeds (seed, anchor, anchor_count) → the largest anchor count such that the seeds with
    anchors that rare together join at most ``max_rows`` rows (0: no seed is affordable, or there
    is none). Fewer seeds only weaken the lower bound. The anchor counts are one small aggregate."""
    rows, limit = 0, 0
    for row in seeds.groupBy("anchor_count").count().orderBy("anchor_count").collect():
        rows += row["anchor_count"] * row["count"]
        if rows > max_rows:
            break
        limit = row["anchor_count"]
    return limit


def seed_prefixes(seeds: DataFrame, reduced: DataFrame) -> DataFrame:
    """Seeds (seed, anchor) and reduced baskets (items) → seed, prefixes
    (array<struct<items, baskets>>): the seed's running intersection with the baskets that hold
    its anchor, largest overlap first, recorded each time it shrinks, with the number of baskets
    intersected so far (items shrink and baskets grow along the array; 3 items or more)."""
    postings = reduced.select(F.explode("items").alias("anchor"), F.col("items").alias("other"))
    trace = F.struct((-F.size("trace")).alias("rank"), "trace")
    return (seeds.join(postings, "anchor")
            .select("seed", F.array_intersect("seed", "other").alias("trace"))
            .filter(F.size("trace") >= 3)
            .groupBy("seed").agg(F.sort_array(F.collect_list(trace)).alias("traces"))
            .select("seed", F.expr(PREFIXES).alias("prefixes")))


def first_reaching(count: int) -> Column:
    """The first element of ``prefixes`` with at least ``count`` baskets (null when none)."""
    return F.try_element_at(F.filter("prefixes", lambda p: p["baskets"] >= F.lit(count)), F.lit(1))


def cores_by_count(prefixes: DataFrame, counts: Sequence[int]) -> DataFrame:
    """Seed prefixes (prefixes) and min counts → level (int: index into ``counts``), items
    (array<string>), baskets (long): each seed's largest prefix held by at least ``counts[level]``
    baskets, at most CORES_PER_SUPPORT per level (largest first)."""
    per_level = F.array(*[F.struct(F.lit(i).alias("level"), first_reaching(c).alias("core"))
                          for i, c in enumerate(counts)])
    cores = (prefixes.select(F.explode(per_level).alias("x")).filter(F.col("x.core").isNotNull())
             .groupBy("x.level", F.col("x.core.items").alias("items"))
             .agg(F.max("x.core.baskets").alias("baskets")))
    rank = F.row_number().over(Window.partitionBy("level").orderBy(F.desc(F.size("items")), F.desc("baskets"), "items"))
    return cores.withColumn("rank", rank).filter(F.col("rank") <= CORES_PER_SUPPORT).drop("rank")


def largest_maximal(cores: Sequence[Core]) -> tuple[Core, ...]:
    """The MAX_CORES largest cores not contained in a larger (or equal, earlier) one."""
    kept: list[Core] = []
    for core in sorted(cores, key=lambda c: (-len(c.items), -c.baskets, sorted(c.items))):
        if len(kept) < MAX_CORES and not any(core.items <= k.items for k in kept):
            kept.append(core)
    return tuple(kept)


def large_subsets(size: int) -> int:
    """Subsets of at least 3 items of a set of ``size`` items."""
    return 2 ** size - 1 - size - math.comb(size, 2)


def itemsets_inside(cores: Sequence[frozenset[str]]) -> int:
    """Itemsets of at least 3 items contained in at least one of ``cores``: inclusion–exclusion over
    their intersections (one under 3 items, and every extension of it, adds nothing)."""
    def union(start: int, common: frozenset[str] | None, sign: int) -> int:
        total = 0
        for i in range(start, len(cores)):
            shared = cores[i] if common is None else common & cores[i]
            if len(shared) >= 3:
                total += sign * large_subsets(len(shared)) + union(i + 1, shared, -sign)
        return total
    return union(0, None, 1)


def at_each(counted: DataFrame, counts: Sequence[int]) -> list[int]:
    """Rows of ``counted`` (column ``count``) reaching each of ``counts``: one small aggregate."""
    row = counted.agg(*[F.sum((F.col("count") >= c).cast("long")).alias(f"c{i}")
                        for i, c in enumerate(counts)]).first()
    return [int(row[f"c{i}"] or 0) for i in range(len(counts))]


@dataclass
class ReducedBaskets:
    """Baskets reduced to the items reaching a min count (cached): ``items`` (item, count of every
    item), ``baskets`` (items, size: one row per basket holding a frequent item) and ``rows`` (the
    rows of ``baskets``). FP-Growth mines them as it would the full baskets: an itemset of frequent
    items is held by the same baskets, and baskets without a frequent item hold no frequent itemset."""

    items: DataFrame
    baskets: DataFrame
    rows: int

    def unpersist(self) -> None:
        self.baskets.unpersist()
        self.items.unpersist()


def reduce_to_frequent(baskets: DataFrame, count: int) -> ReducedBaskets:
    """Baskets (order_id, items) → :class:`ReducedBaskets` at min count ``count`` (cached; the caller
    unpersists)."""
    items = item_counts(baskets).cache()
    reduced = reduced_baskets(baskets, items.filter(F.col("count") >= count)).cache()
    return ReducedBaskets(items, reduced, reduced.count())


def shared_cores(reduced: ReducedBaskets, counts: Sequence[int], max_rows: int) -> list[tuple[int, Core]]:
    """(level: index into ``counts``, core) of :func:`cores_by_count`, from the seeds whose joins fit
    ``max_rows`` rows; no Spark job beyond the anchor counts when no seed is affordable."""
    every_seed = seeds(reduced.baskets, reduced.items).persist(StorageLevel.MEMORY_AND_DISK)  # read twice
    try:
        limit = anchor_limit(every_seed, max_rows)
        if limit == 0:
            return []
        chosen = every_seed.filter(F.col("anchor_count") <= limit)
        found = cores_by_count(seed_prefixes(chosen, reduced.baskets), counts).collect()
    finally:
        every_seed.unpersist()
    return [(int(r["level"]), Core(frozenset(r["items"]), int(r["baskets"]))) for r in found]


def measure_reduced(reduced: ReducedBaskets, n_baskets: int, max_size: int,
                    supports: list[float]) -> list[SearchEstimate]:
    """The search at each support (the lowest first, reduced at its min count): exact frequent item
    and pair counts, the clique estimate and the shared-core lower bound."""
    counts = [min_count(s, n_baskets) for s in supports]
    item_totals, pair_totals = at_each(reduced.items, counts), at_each(pair_counts(reduced.baskets), counts)
    found = shared_cores(reduced, counts, SEED_JOIN_PER_BASKET * n_baskets + SEED_JOIN_FLOOR)
    cores = [[c for level, c in found if level == i] for i in range(len(counts))]
    return [search_estimate(s, c, f, p, k, max_size)
            for s, c, f, p, k in zip(supports, counts, item_totals, pair_totals, cores, strict=True)]


def measure(baskets: DataFrame, n_baskets: int, max_size: int, supports: list[float]) -> list[SearchEstimate]:
    """Baskets (order_id, items) → :func:`measure_reduced` at each support (all counted once, at the
    lowest support)."""
    reduced = reduce_to_frequent(baskets, min(min_count(s, n_baskets) for s in supports))
    try:
        return measure_reduced(reduced, n_baskets, max_size, supports)
    finally:
        reduced.unpersist()


def search_estimate(support: float, count: int, items: int, pairs: int, cores: list[Core],
                    max_size: int) -> SearchEstimate:
    """The estimate at one support from its exact item and pair counts and the cores reaching it."""
    kept = largest_maximal(cores)
    return SearchEstimate(support, count, items, pairs, estimate_itemsets(items, pairs, max_size),
                          items + pairs + itemsets_inside([c.items for c in kept]), kept)


def describe(estimate: SearchEstimate) -> str:
    """'at least N' (when the core bound is the larger figure) or 'about N' frequent itemsets."""
    if estimate.core_bound > estimate.clique_estimate:
        return f"at least {estimate.core_bound:,}"
    return f"about {estimate.clique_estimate:,.0f}"


def reason(estimate: SearchEstimate) -> str:
    """Why the search is large: the largest shared core (when the core bound is the larger
    figure), or the frequent items and pairs."""
    if estimate.core_bound <= estimate.clique_estimate:
        return f"{estimate.frequent_items:,} frequent items and {estimate.frequent_pairs:,} frequent pairs"
    core, size = estimate.cores[0], len(estimate.cores[0].items)
    text = (f"{core.baskets:,} baskets share the same {size} items (min count {estimate.min_count:,}), "
            f"so all {2 ** size - 1:,} subsets of them are frequent")
    if len(estimate.cores) > 1:
        text += f" (and the subsets of {len(estimate.cores) - 1} more such shared item sets)"
    return text


def check_search(baskets: DataFrame, n_baskets: int, max_size: int, min_support: float,
                 max_itemsets: int) -> tuple[SearchEstimate, ReducedBaskets]:
    """Measure the search at ``min_support`` and at the supports above it on the ladder (one pass),
    then :func:`check_estimates`. Returns the estimate and the baskets reduced at ``min_support``'s
    min count, for FP-Growth (cached: the caller unpersists them; on error they are released here)."""
    reduced = reduce_to_frequent(baskets, min_count(min_support, n_baskets))
    try:
        estimates = measure_reduced(reduced, n_baskets, max_size, support_ladder(min_support))
        return check_estimates(estimates, n_baskets, max_itemsets), reduced
    except BaseException:
        reduced.unpersist()
        raise


def check_estimates(estimates: Sequence[SearchEstimate], n_baskets: int, max_itemsets: int) -> SearchEstimate:
    """The first estimate (the requested support) when it fits ``max_itemsets``; otherwise raise
    SearchTooLargeError with the reason and the first later support (ladder order) that fits."""
    requested, *ladder = estimates
    if requested.estimated_itemsets <= max_itemsets:
        return requested
    workable = next((e for e in ladder if e.estimated_itemsets <= max_itemsets), None)
    message = (f"fpgrowth: at fpgrowth.min_support={requested.min_support} (min count {requested.min_count:,} "
               f"of {n_baskets:,} baskets) {describe(requested)} frequent itemsets, more than "
               f"fpgrowth.max_itemsets={max_itemsets:,}: {reason(requested)}. ")
    if workable is None:
        message += "No support up to 1 fits; raise fpgrowth.max_itemsets."
    else:
        message += (f"Suggested: --set fpgrowth.min_support={workable.min_support} "
                    f"({describe(workable)} itemsets), or raise fpgrowth.max_itemsets.")
    raise SearchTooLargeError(message)
