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
- A/B (popularity against ALS, and item-KNN against ALS for a smaller lift):
  the simulator's true lift, the users the power calculator asks for 80%
  power at that lift, and, at that size, how often the test detects it and
  how often the 95% CI covers the true lift.
- Interleaving of the same pair: the impressions it needs for 80% power,
  against the A/B test's.
- A 45/55 split of a declared 50/50 experiment, and a fair one, through the
  sample-ratio check.
- The loop, over HTTP, as a store runs it: ``serve --workers 2`` with ALS;
  the shoppers' tastes move (``LOOP_SHIFT`` of them take a new favourite
  category and brand) and a new season comes in: the ``LOOP_NEW_ITEMS``
  items the champion recommends most are withdrawn (``DELETE /items``) and
  replaced by new ones like them (``PUT /items``);
  ``shopsense simulate`` shops with the moved tastes; ``retrain`` refuses a
  deliberately worse challenger (popularity, margin 0) and registers ALS
  retrained on the live events; an A/B test of the old version against the
  new, on simulated shoppers again, with their true CTRs beside it; then
  ``experiment promote``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from bench.serving_load import wait_ready
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
from shopsense.simulation.driver import Simulation
from shopsense.simulation.shoppers import ShopperModel

USERS, ITEMS, K = 20_000, 2_000, 10
RUNS = 300
ALPHA = 0.05
LOOK_EVERY = 500
AA_USERS = 6_000
DRAFTS = 12
"""Team drafts drawn per shopper; each impression takes one of them at random."""
LOOP_USERS, LOOP_ITEMS, LOOP_DAYS, LOOP_NEW_ITEMS, LOOP_SHIFT = 8_000, 800, 14, 200, 0.5
LOOP_SHOPPERS = 8_000
LOOP_AB_VISITS = 4
KEY = "learning-loop-bench"


class Traffic:
    """Every shopper's per-position click probabilities under each arm's list."""

    def __init__(self, shoppers: ShopperModel, users: np.ndarray, lists: dict[str, np.ndarray]):
        self.users = users
        row = {u: r for r, u in enumerate(shoppers.users)}
        self.activity = shoppers.activity[[row[u] for u in users]]
        self.click = {arm: shoppers.click_probability(users, ids) for arm, ids in lists.items()}
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
    for name, model_name in (("popularity", "pop"), ("itemknn", "itemknn"), ("als", "als")):
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


def _ab(traffic: Traffic, rng: np.random.Generator, control: str, treatment: str) -> dict:
    true_lift = traffic.true_ctr(treatment) / traffic.true_ctr(control) - 1
    pilot = traffic.draw(control, rng.integers(0, USERS, 5000), rng)
    needed = users_needed(pilot, true_lift, alpha=ALPHA, power=0.8)
    detected = covered = 0
    impressions = []
    for _ in range(RUNS):
        split = _split(needed, {"control": 0.5, "treatment": 0.5}, rng)
        a = traffic.draw(control, split["control"], rng)
        b = traffic.draw(treatment, split["treatment"], rng)
        c = compare(a, b, alpha=ALPHA)
        detected += c.p_value < ALPHA and np.sign(c.relative_lift) == np.sign(true_lift)
        covered += c.relative_ci[0] <= true_lift <= c.relative_ci[1]
        impressions.append(a.denominator.sum() + b.denominator.sum())
    return {
        "control": control,
        "treatment": treatment,
        "runs": RUNS,
        "true_ctr": {arm: traffic.true_ctr(arm) for arm in (control, treatment)},
        "true_relative_lift": true_lift,
        "users_for_80_percent_power": needed,
        "impressions_for_80_percent_power": float(np.mean(impressions)),
        "detected_rate": detected / RUNS,
        "ci_coverage": covered / RUNS,
    }


def _power_curve(trial: Callable[[int], tuple[bool, int]]) -> dict:
    """Grow the number of shoppers by half each step until ``trial(users)``
    (detected?, impressions spent) detects in at least 80% of its runs."""
    found = {}
    users = 20
    while True:
        runs = [trial(users) for _ in range(RUNS // 2)]
        power = float(np.mean([detected for detected, _ in runs]))
        found[users] = {"power": power, "impressions": float(np.mean([n for _, n in runs]))}
        if power >= 0.8 or users > 4 * USERS:
            break
        users = int(users * 1.5)
    return {"users_for_80_percent_power": users,
            "impressions_for_80_percent_power": found[users]["impressions"],
            "power_by_users": found}  # fmt: skip


def _interleaving(traffic: Traffic, rng: np.random.Generator) -> dict:
    """The impressions team-draft interleaving of popularity and ALS needs to
    detect ALS's preference with 80% power, against those an A/B test of the
    same pair needs (both found by simulation, not by a formula)."""
    drafts = _drafts(traffic, rng)

    def interleaved(users: int) -> tuple[bool, int]:
        rows = rng.integers(0, USERS, users)
        credit_pop, credit_als, shown = _interleaved_credit(traffic, drafts, rows, rng)
        result = preference_test(credit_pop, credit_als, alpha=ALPHA)
        return bool(result.p_value < ALPHA and result.prefer_b > result.prefer_a), shown

    def ab(users: int) -> tuple[bool, int]:
        split = _split(users, {"control": 0.5, "treatment": 0.5}, rng)
        a = traffic.draw("popularity", split["control"], rng)
        b = traffic.draw("als", split["treatment"], rng)
        c = compare(a, b, alpha=ALPHA)
        spent = int(a.denominator.sum() + b.denominator.sum())
        return bool(c.p_value < ALPHA and c.relative_lift > 0), spent

    out = {"interleaving": _power_curve(interleaved), "ab": _power_curve(ab)}
    out["fewer_impressions_than_ab"] = (
        out["ab"]["impressions_for_80_percent_power"]
        / out["interleaving"]["impressions_for_80_percent_power"]
    )
    return out


def _drafts(traffic: Traffic, rng: np.random.Generator) -> np.ndarray:
    """For each shopper ``DRAFTS`` team drafts: each position's click probability
    and team (0 popularity, 1 ALS), shape (users, DRAFTS, K, 2)."""
    out = np.zeros((len(traffic.users), DRAFTS, K, 2))
    pop, als = traffic.lists["popularity"], traffic.lists["als"]
    for d in range(DRAFTS):
        merged = []
        for u in range(len(traffic.users)):
            items, teams = team_draft(list(pop[u]), list(als[u]), K, rng)
            merged.append(items)
            out[u, d, :, 1] = [t == "b" for t in teams]
        out[:, d, :, 0] = traffic.shoppers.click_probability(traffic.users, merged)
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


def _new_season(shoppers: ShopperModel, raw: Path, lists: np.ndarray, n: int):
    """The ``n`` items the champion recommends most are withdrawn, each
    replaced by a new item like it (a copy under a new id, its title marked
    new, with its traits): what a store's new season does to a model trained
    on the last one. Returns the withdrawn ids, the catalogue rows to PUT and
    the shoppers who know the new shelves."""
    ids, counts = np.unique(lists, return_counts=True)
    withdrawn = ids[np.argsort(-counts, kind="stable")[:n]]
    catalogue = pd.read_parquet(raw / "items.parquet").set_index("item_id")
    new_ids = [f"new{k:05d}" for k in range(n)]
    rows = catalogue.loc[withdrawn].reset_index()
    rows = rows.assign(item_id=new_ids, title="New " + rows["title"].astype(str))
    items = [
        {"item_id": row.item_id, "title": row.title, "category": row.category,
         "brand": row.brand, "price": float(row.price)}
        for row in rows.itertuples()
    ]  # fmt: skip
    traits = shoppers.traits.set_index("item_id").loc[withdrawn].reset_index()
    traits = traits.assign(item_id=new_ids, price=rows["price"].to_numpy(float))
    return withdrawn, items, shoppers.restocked(withdrawn, traits, rows)


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "shopsense", *args], capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    if check and done.returncode != 0:
        raise RuntimeError(f"shopsense {' '.join(args)}: {done.stderr[-2000:]}")
    return done


def _loop(rng: np.random.Generator) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = StoreConfig(users=LOOP_USERS, items=LOOP_ITEMS, days=LOOP_DAYS, seed=11)
        write_store(config, root / "raw")
        ingest("parquet", [root / "raw"], root / "data", progress=False)
        dataset = Dataset.load(root / "data")
        champion = create_model("als").fit(dataset)
        champion.save(root / "models" / "v0001")
        shown = (
            dataset.items["item_id"]
            .astype(str)
            .to_numpy()[champion.recommend(np.arange(dataset.n_users), K)[0]]
        )
        shoppers = ShopperModel.from_raw(root / "raw").shifted(LOOP_SHIFT, rng)
        withdrawn, items, moved = _new_season(shoppers, root / "raw", shown, LOOP_NEW_ITEMS)
        (root / "key").write_text(KEY)
        state, port = str(root / "state.db"), 8766
        common = ["--data", str(root / "data"), "--models", str(root / "models"), "--state", state]
        server = subprocess.Popen(
            [sys.executable, "-m", "shopsense", "serve", *common, "--port", str(port),
             "--workers", "2", "--api-key-file", str(root / "key")],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(port)
            admin = {"Authorization": f"Bearer {KEY}"}
            httpx.put(f"{url}/items", json=items, timeout=60, headers=admin).raise_for_status()
            for item_id in withdrawn:
                httpx.delete(f"{url}/items/{item_id}", headers=admin, timeout=60).raise_for_status()
            live = Simulation(url, moved, LOOP_SHOPPERS, seed=1, seconds=600).run()
            out["live_traffic"] = {
                "shoppers": live.shoppers,
                "events": live.events_posted,
                "requests_per_second": round(live.requests_per_second, 1),
            }
            worse = _cli("retrain", *common, "--model", "pop", "--margin", "0", "--json",
                         check=False)  # fmt: skip
            out["worse_challenger"] = {"exit_status": worse.returncode,
                                       "refused": worse.returncode == 3,
                                       "report": _json_or_text(worse.stdout)}  # fmt: skip
            better = _cli("retrain", *common, "--json")
            out["challenger"] = _json_or_text(better.stdout)
            version = out["challenger"]["version"]
            _cli("experiment", "create", "old-vs-new", "--state", state, "--placement",
                 "recommendations", "--arm", "control=v0001", "--arm", f"treatment={version}",
                 "--models", str(root / "models"))  # fmt: skip
            httpx.get(f"{url}/health/ready", timeout=10)
            time.sleep(2)  # every worker follows the log within a second
            truth: dict[str, dict] = {}
            for seed in range(2, 2 + LOOP_AB_VISITS):  # the shoppers come back a few times
                tested = Simulation(url, moved, LOOP_SHOPPERS, seed=seed, seconds=600).run()
                for arm in (a for a in tested.arms if a["experiment"] == "old-vs-new"):
                    empty = {"arm": arm["arm"], "impressions": 0, "clicks": 0, "true_clicks": 0.0}
                    row = truth.setdefault(arm["arm"], empty)
                    row["impressions"] += arm["impressions"]
                    row["clicks"] += arm["clicks"]
                    row["true_clicks"] += arm["true"]["clicks"]
            time.sleep(1)  # the last impressions are written
            for row in truth.values():
                row["ctr"] = row["clicks"] / row["impressions"]
                row["true_ctr"] = row["true_clicks"] / row["impressions"]
            out["ab_truth"] = sorted(truth.values(), key=lambda row: row["arm"])
            report = json.loads(_cli("experiment", "show", "old-vs-new", "--state", state,
                                     "--json").stdout)  # fmt: skip
            out["ab_report"] = {"arms": report["arms"],
                                "ctr": report["comparisons"]["treatment"]["ctr"],
                                "sample_ratio": report["sample_ratio"]}  # fmt: skip
            promoted = _cli("experiment", "promote", "old-vs-new", "--state", state,
                            "--models", str(root / "models"), check=False)  # fmt: skip
            out["promoted_by_the_always_valid_test"] = promoted.returncode == 0
            out["promote_output"] = (promoted.stdout or promoted.stderr).strip()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return out


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def run() -> dict:
    out = statistics()
    out["loop"] = retrain_loop()["loop"]
    return out


def statistics() -> dict:
    """The statistics alone (``python -m bench learning-loop-statistics``)."""
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
    out["ab"] = _ab(traffic, rng, "popularity", "als")
    # The same checks at a lift a store meets more often than popularity's
    # (the simulated shoppers' tastes are narrow: popular items they have not
    # seen are seldom in their categories).
    out["ab_moderate"] = _ab(traffic, rng, "itemknn", "als")
    out["interleaving"] = _interleaving(traffic, rng)
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
    for ab in (out["ab"], out["ab_moderate"]):
        control, treatment = ab["control"], ab["treatment"]
        print(f"  A/B, {control} → {treatment}: true CTR {ab['true_ctr'][control]:.4f} → "
              f"{ab['true_ctr'][treatment]:.4f} (lift {ab['true_relative_lift']:+.1%}); "
              f"{ab['users_for_80_percent_power']:,} shoppers for 80% power: detected in "
              f"{ab['detected_rate']:.1%} of {ab['runs']} runs (bar ≥ 80%), CI covers the true "
              f"lift in {ab['ci_coverage']:.1%} (bar ≥ 90%)")  # fmt: skip
    tdi_80, ab_80 = tdi["interleaving"], tdi["ab"]
    print(f"  interleaving, popularity against ALS: 80% power at "
          f"{tdi_80['users_for_80_percent_power']:,} shoppers, "
          f"{tdi_80['impressions_for_80_percent_power']:,.0f} impressions; the A/B test of the "
          f"pair at {ab_80['users_for_80_percent_power']:,} shoppers, "
          f"{ab_80['impressions_for_80_percent_power']:,.0f} impressions (both simulated): "
          f"{tdi['fewer_impressions_than_ab']:.1f}× fewer (bar ≥ 5×)")  # fmt: skip
    for users, s in out["srm"].items():
        print(f"  sample ratio check at {users:,} shoppers: a 45/55 split flagged in "
              f"{s['flagged_45_55']:.1%}, a fair one in {s['flagged_fair']:.1%}")  # fmt: skip


def _print_loop(loop: dict) -> None:
    worse, ctr = loop["worse_challenger"], loop["ab_report"]["ctr"]
    print(f"  the loop: {loop['live_traffic']['shoppers']:,} simulated shoppers with moved "
          f"tastes posted {loop['live_traffic']['events']:,} events; a popularity challenger "
          f"{'refused' if worse['refused'] else 'NOT refused'} (exit {worse['exit_status']}); "
          f"ALS retrained as {loop['challenger']['version']}")  # fmt: skip
    for arm in loop["ab_truth"]:
        print(f"    {arm['arm']}: {arm['impressions']:,} lists, observed CTR {arm['ctr']:.4f}, "
              f"true {arm['true_ctr']:.4f}")  # fmt: skip
    lo, hi = (float("nan") if x is None else x for x in ctr["relative_ci"])  # None: unbounded
    print(f"    old → new CTR lift {ctr['relative_lift']:+.1%} [{lo:+.1%}, {hi:+.1%}], "
          f"p {ctr['p_value']:.3g}, always-valid p {ctr['sequential_p_value']:.3g}; "
          f"promote: {loop['promote_output']}")  # fmt: skip


def retrain_loop() -> dict:
    """The loop alone (``python -m bench learning-loop-retrain``)."""
    loop = _loop(np.random.default_rng(2027))
    _print_loop(loop)
    return {"loop": loop}
