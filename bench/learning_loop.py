"""``bench learning-loop``: are the experiment statistics honest, on simulated shoppers?

The shoppers are the synthetic store's users acting by the tastes it was
generated with (``shopsense.simulation.ShopperModel``), so each arm's true CTR
is known and every estimate can be checked against it. Every experiment here
is simulated in process, with the product's own pieces: the arms' top-10
lists come from the trained models, shoppers are assigned by
``Experiment.assign`` (a fresh salt per experiment), lists are interleaved by
``team_draft``, and the figures are ``compare``, ``users_needed``,
``preference_test`` and ``sample_ratio_p_value``. What is simulated is the
traffic: each shopper sees their arm's list ``1 + Poisson(2 × activity)``
times and clicks each position by the position-based model.

- A/A (ALS against ALS): the fixed-horizon false-positive rate at α = 0.05
  over ``RUNS`` experiments, and the always-valid test's when looked at after
  every 500 shoppers (beside the fixed-horizon test peeked at the same way).
- A/B (popularity against ALS): the simulator's true lift, the users the power
  calculator asks for 80% power at that lift, and, at that size, how often the
  test detects it and how often the 95% CI covers the true lift.
- Interleaving of the same pair: the impressions it needs for 80% power,
  against the A/B test's.
- A 45/55 split of a declared 50/50 experiment, and a fair one, through the
  sample-ratio check.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store
from shopsense.evaluation.interleaving import preference_test, team_draft
from shopsense.evaluation.online import (
    SRM_ALPHA,
    UserMetric,
    compare,
    sample_ratio_p_value,
    users_needed,
)
from shopsense.models.registry import create_model
from shopsense.serving.experiments import Experiment
from shopsense.simulation.shoppers import ShopperModel

USERS, ITEMS, K = 20_000, 2_000, 10
RUNS = 300
ALPHA = 0.05
LOOK_EVERY = 500
AA_USERS = 6_000
DRAFTS = 12
"""Team drafts drawn per shopper; each impression takes one of them at random."""


class Traffic:
    """Every shopper's per-position click probabilities under each arm's list."""

    def __init__(self, shoppers: ShopperModel, users: np.ndarray, lists: dict[str, np.ndarray]):
        self.users = users
        row = {u: r for r, u in enumerate(shoppers.users)}
        self.activity = shoppers.activity[[row[u] for u in users]]
        examined = shoppers.examination(K)
        self.click = {
            arm: examined
            * np.stack([shoppers.attraction([u], s)[0] for u, s in zip(users, ids, strict=True)])
            for arm, ids in lists.items()
        }
        self.lists = lists
        self.shoppers = shoppers

    def true_ctr(self, arm: str) -> float:
        """Clicks per impression over the population, impressions weighted by activity."""
        weight = 1 + 2 * self.activity
        return float((weight * self.click[arm].sum(axis=1)).sum() / weight.sum())

    def draw(self, arm: str, rows: np.ndarray, rng: np.random.Generator) -> UserMetric:
        """The shoppers ``rows`` in ``arm``: impressions, clicks, and a pre-period of
        the same length under the popularity list (CUPED's covariate)."""
        impressions = 1 + rng.poisson(2 * self.activity[rows])
        p = self.click[arm][rows]
        clicks = rng.binomial(impressions[:, None], p).sum(axis=1)
        before = 1 + rng.poisson(2 * self.activity[rows])
        pre = rng.binomial(before[:, None], self.click["popularity"][rows]).sum(axis=1) / before
        return UserMetric(clicks.astype(float), impressions.astype(float), pre)


def _store(root: Path) -> tuple[ShopperModel, np.ndarray, dict[str, np.ndarray]]:
    write_store(StoreConfig(users=USERS, items=ITEMS, days=60, seed=7), root / "raw")
    ingest("parquet", [root / "raw"], root / "data", progress=False)
    dataset = Dataset.load(root / "data")
    item_ids = dataset.items["item_id"].astype(str).to_numpy()
    users = dataset.users["user_id"].astype(str).to_numpy()
    lists = {}
    for name, model_name in (("popularity", "pop"), ("als", "als")):
        model = create_model(model_name).fit(dataset)
        top = np.concatenate([model.recommend(np.arange(s, min(s + 4096, len(users))), K)[0]
                              for s in range(0, len(users), 4096)])  # fmt: skip
        lists[name] = item_ids[top]
    return ShopperModel.from_raw(root / "raw"), users, lists


def _split(n: int, shares: dict[str, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shoppers drawn from the population and split by ``Experiment.assign``."""
    experiment = Experiment(name="bench", placement="recommendations",
                            arms={a: a for a in shares}, shares=shares,
                            salt=secrets.token_hex(8))  # fmt: skip
    rows = rng.integers(0, USERS, n)
    arms = np.array([experiment.assign(f"shopper-{r}-{i}") for i, r in enumerate(rows)])
    return {arm: rows[arms == arm] for arm in shares}


def _aa(traffic: Traffic, rng: np.random.Generator) -> dict:
    fixed = sequential = peeked = 0
    for _ in range(RUNS):
        split = _split(AA_USERS, {"a": 0.5, "b": 0.5}, rng)
        a, b = traffic.draw("als", split["a"], rng), traffic.draw("als", split["b"], rng)
        fixed += compare(a, b, alpha=ALPHA).p_value < ALPHA
        seen_seq = seen_fixed = False
        for look in range(LOOK_EVERY, AA_USERS + 1, LOOK_EVERY):
            na, nb = _arrived(split, look)
            c = compare(_head(a, na), _head(b, nb), alpha=ALPHA)
            seen_seq |= c.sequential_p_value < ALPHA
            seen_fixed |= c.p_value < ALPHA
        sequential += seen_seq
        peeked += seen_fixed
    return {
        "runs": RUNS,
        "users": AA_USERS,
        "false_positive_rate": fixed / RUNS,
        "sequential_false_positive_rate": sequential / RUNS,
        "fixed_horizon_peeked_false_positive_rate": peeked / RUNS,
        "looks": AA_USERS // LOOK_EVERY,
    }


def _arrived(split: dict[str, np.ndarray], look: int) -> tuple[int, int]:
    """How many of each arm had arrived after ``look`` shoppers (arms alternate
    at random, so each arm's share of the first ``look`` follows its size)."""
    total = len(split["a"]) + len(split["b"])
    na = round(look * len(split["a"]) / total)
    return na, look - na


def _head(metric: UserMetric, n: int) -> UserMetric:
    pre = None if metric.pre is None else metric.pre[:n]
    return UserMetric(metric.numerator[:n], metric.denominator[:n], pre)


def _ab(traffic: Traffic, rng: np.random.Generator) -> dict:
    true_lift = traffic.true_ctr("als") / traffic.true_ctr("popularity") - 1
    pilot = traffic.draw("popularity", rng.integers(0, USERS, 5000), rng)
    needed = users_needed(pilot, true_lift, alpha=ALPHA, power=0.8)
    detected = covered = 0
    impressions = []
    for _ in range(RUNS):
        split = _split(needed, {"control": 0.5, "treatment": 0.5}, rng)
        control = traffic.draw("popularity", split["control"], rng)
        treatment = traffic.draw("als", split["treatment"], rng)
        c = compare(control, treatment, alpha=ALPHA)
        detected += c.p_value < ALPHA and c.relative_lift > 0
        covered += c.relative_ci[0] <= true_lift <= c.relative_ci[1]
        impressions.append(control.denominator.sum() + treatment.denominator.sum())
    return {
        "runs": RUNS,
        "true_ctr": {arm: traffic.true_ctr(arm) for arm in ("popularity", "als")},
        "true_relative_lift": true_lift,
        "users_for_80_percent_power": needed,
        "impressions_for_80_percent_power": float(np.mean(impressions)),
        "detected_rate": detected / RUNS,
        "ci_coverage": covered / RUNS,
    }


def _interleaving(traffic: Traffic, rng: np.random.Generator, ab_impressions: float) -> dict:
    """Power of team-draft interleaving against shoppers' numbers, to the first
    size at which it detects ALS's preference in at least 80% of runs."""
    drafts = _drafts(traffic, rng)
    found = {}
    users = 20
    while users <= USERS:
        wins = 0
        spent = []
        for _ in range(RUNS // 2):
            rows = rng.integers(0, USERS, users)
            credit_pop, credit_als, shown = _interleaved_credit(traffic, drafts, rows, rng)
            result = preference_test(credit_pop, credit_als, alpha=ALPHA)
            wins += result.p_value < ALPHA and result.prefer_b > result.prefer_a
            spent.append(shown)
        power = wins / (RUNS // 2)
        found[users] = {"power": power, "impressions": float(np.mean(spent))}
        if power >= 0.8:
            break
        users = int(users * 1.5)
    impressions = found[users]["impressions"]
    return {
        "users_for_80_percent_power": users,
        "impressions_for_80_percent_power": impressions,
        "fewer_impressions_than_ab": ab_impressions / impressions,
        "power_by_users": found,
    }


def _drafts(traffic: Traffic, rng: np.random.Generator) -> np.ndarray:
    """For each shopper ``DRAFTS`` team drafts: each position's click probability
    and team (0 popularity, 1 ALS), shape (users, DRAFTS, K, 2)."""
    out = np.zeros((len(traffic.users), DRAFTS, K, 2))
    examined = traffic.shoppers.examination(K)
    pop, als = traffic.lists["popularity"], traffic.lists["als"]
    for u, user in enumerate(traffic.users):
        for d in range(DRAFTS):
            merged, teams = team_draft(list(pop[u]), list(als[u]), K, rng)
            out[u, d, : len(merged), 0] = (
                traffic.shoppers.attraction([user], merged)[0] * (examined[: len(merged)])
            )
            out[u, d, : len(merged), 1] = [t == "b" for t in teams]
    return out


def _interleaved_credit(
    traffic: Traffic, drafts: np.ndarray, rows: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    impressions = 1 + rng.poisson(2 * traffic.activity[rows])
    credit = np.zeros((len(rows), 2))
    for n in range(int(impressions.max())):
        live = impressions > n
        chosen = drafts[rows[live], rng.integers(0, DRAFTS, live.sum())]
        clicked = rng.random(chosen.shape[:2]) < chosen[..., 0]
        credit[live, 1] += (clicked & (chosen[..., 1] == 1)).sum(axis=1)
        credit[live, 0] += (clicked & (chosen[..., 1] == 0)).sum(axis=1)
    return credit[:, 0], credit[:, 1], int(impressions.sum())


def _srm(rng: np.random.Generator) -> dict:
    out = {}
    for users in (2_000, 10_000):
        broken = fair = 0
        for _ in range(RUNS):
            split = _split(users, {"a": 0.45, "b": 0.55}, rng)
            broken += (
                sample_ratio_p_value([len(split["a"]), len(split["b"])], [0.5, 0.5]) < SRM_ALPHA
            )
            split = _split(users, {"a": 0.5, "b": 0.5}, rng)
            fair += sample_ratio_p_value([len(split["a"]), len(split["b"])], [0.5, 0.5]) < SRM_ALPHA
        out[users] = {"flagged_45_55": broken / RUNS, "flagged_fair": fair / RUNS}
    return out


def run() -> dict:
    rng = np.random.default_rng(2026)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        shoppers, users, lists = _store(Path(tmp))
    traffic = Traffic(shoppers, users, lists)
    out: dict = {
        "shoppers": USERS,
        "items": ITEMS,
        "setup_seconds": round(time.perf_counter() - started, 1),
    }
    out["aa"] = _aa(traffic, rng)
    out["ab"] = _ab(traffic, rng)
    out["interleaving"] = _interleaving(traffic, rng, out["ab"]["impressions_for_80_percent_power"])
    out["srm"] = _srm(rng)
    out["seconds"] = round(time.perf_counter() - started, 1)
    _print(out)
    return out


def _print(out: dict) -> None:
    aa, ab, tdi = out["aa"], out["ab"], out["interleaving"]
    print(f"simulated shoppers: {out['shoppers']:,} users × {out['items']:,} items")
    print(
        f"  A/A, {aa['runs']} experiments of {aa['users']:,} shoppers: false-positive rate "
        f"{aa['false_positive_rate']:.3f} (bar 0.03-0.07); always-valid test looked at "
        f"{aa['looks']} times {aa['sequential_false_positive_rate']:.3f} (bar ≤ 0.05), the "
        f"fixed-horizon test peeked as often {aa['fixed_horizon_peeked_false_positive_rate']:.3f}"
    )
    print(
        f"  A/B, popularity → ALS: true CTR {ab['true_ctr']['popularity']:.4f} → "
        f"{ab['true_ctr']['als']:.4f} (lift {ab['true_relative_lift']:+.1%}); "
        f"{ab['users_for_80_percent_power']:,} shoppers for 80% power: detected in "
        f"{ab['detected_rate']:.1%} of {ab['runs']} runs (bar ≥ 80%), CI covers the true lift "
        f"in {ab['ci_coverage']:.1%} (bar ≥ 90%)"
    )
    print(
        f"  interleaving: 80% power at {tdi['users_for_80_percent_power']:,} shoppers, "
        f"{tdi['impressions_for_80_percent_power']:,.0f} impressions against the A/B test's "
        f"{ab['impressions_for_80_percent_power']:,.0f}: {tdi['fewer_impressions_than_ab']:.1f}× "
        f"fewer (bar ≥ 5×)"
    )
    for users, s in out["srm"].items():
        print(f"  sample ratio check at {users:,} shoppers: a 45/55 split flagged in "
              f"{s['flagged_45_55']:.1%}, a fair one in {s['flagged_fair']:.1%}")  # fmt: skip
