"""How a misspelt or partly typed query is read (issue 25's bar for typo and
prefix variants): the ranker reads it as corrected and completed; a word
that lost a letter is corrected by the budget of the word it may have been;
a partly typed Chinese run is cut so its last word starts a catalogue word;
a word's correction or completion is the one that goes with the query's
other words."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shopsense.search.analysis import stem, words
from shopsense.search.catalog import Filters
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.query.plan import plan_query, typed_words
from shopsense.search.ranking.associations import TermAssociations
from shopsense.search.ranking.features import ranking_features
from shopsense.search.typo import Vocabulary

SETTINGS = SearchSettings()


@pytest.fixture(scope="module")
def engine(store, tmp_path_factory) -> SearchEngine:
    out = tmp_path_factory.mktemp("typo-reading") / "index"
    return build_index(store.items, out, store.source_events(), semantic=False)


def documents_of(
    docs: list[str],
) -> tuple[Vocabulary, Callable[[str], int], Callable[[list[list[str]], int], int]]:
    """A vocabulary, ``doc_freq`` and ``matching`` over a few titles, as an index gives them."""
    terms = [set(map(stem, words(d))) for d in docs]

    def doc_freq(term: str) -> int:
        return sum(term in d for d in terms)

    def matching(word_terms: list[list[str]], required: int) -> int:
        return sum(sum(any(t in d for t in w) for w in word_terms) >= required for d in terms)

    return Vocabulary.build([words(d) for d in docs]), doc_freq, matching


def _swapped(word: str) -> str:
    """One edit: two inner letters swapped."""
    return word[0] + word[2] + word[1] + word[3:]


def test_the_ranker_reads_a_corrected_query_as_the_clean_one(engine, store):
    """The features of a query with a misspelt word, on the clean query's
    candidates, are the clean query's: the typed word, which no title has,
    counts for nothing, its correction for the word."""
    checked = 0
    ranking = engine.ranking_context()
    no_lifts = TermAssociations({}, {})
    nouns = {n.lower() for n in store.items["category"].str.rsplit(" > ", n=1).str[-1]}
    for noun in sorted(nouns):
        *head, last = noun.split()
        typo = _swapped(last)
        if len(last) < 5 or typo in engine.vocabulary or not last.isalpha():
            continue
        if [w for w, _ in engine.vocabulary.corrections(typo)] != [last]:
            continue  # another correction would be another term the query has
        clean = engine.analyze(noun + " ")
        misspelt = engine.analyze(" ".join([*head, typo]) + " ")
        assert misspelt.corrections == {typo: last}
        assert misspelt.read_terms == clean.read_terms
        found = engine.retrieve(clean, None, Filters())
        assert len(found.rows)
        np.testing.assert_array_equal(
            ranking_features(ranking, no_lifts, misspelt, None, found),
            ranking_features(ranking, no_lifts, clean, None, found),
        )
        checked += 1
    assert checked >= 2


def test_a_partial_word_is_read_as_its_completion():
    vocabulary, doc_freq, matching = documents_of(["Quill cookbook", "Quill cookbooks"])
    plan = plan_query("quill cookb", vocabulary, doc_freq, {}, SETTINGS, True, matching)
    assert plan.completion == "cookbook"
    assert plan.read_text == "quill cookbook" and plan.read_terms == ["quill", "cookbook"]
    assert "cookb" not in plan.other_terms  # the partial word itself is in no title


def test_a_word_that_lost_a_letter_is_corrected_by_the_longer_words_budget():
    vocabulary = Vocabulary({"down": 5, "done": 2, "jacket": 9, "do": 3})
    assert vocabulary.corrections("don") == [("down", 1), ("done", 1)]
    assert vocabulary.corrections("dn") == []  # neither it nor "do" is long enough for a typo
    vocabulary = Vocabulary({"sleeping": 4, "sleeps": 2})
    assert vocabulary.corrections("slepig") == [("sleeping", 2)]  # 6 letters, 2 from 8


def test_a_typed_query_missing_a_letter_finds_the_clean_querys_first_hit(engine, store):
    checked = 0
    title_words = {w for t in store.items["title"].str.lower() for w in t.split()}
    for word in sorted(w for w in title_words if len(w) == 4 and w.isascii() and w.isalpha()):
        short = word[0] + word[2:]  # its second letter lost: 3 letters
        if short in engine.vocabulary or engine.lexical.doc_freq(stem(short)):
            continue
        fixed = engine.vocabulary.corrections(short)
        if not fixed or fixed[0][0] != word:
            continue  # another word is as near and more frequent
        clean = engine.search(word + " ", per_page=1).hits
        found = engine.search(short + " ", per_page=3)
        assert found.did_you_mean == word
        assert clean and clean[0].item_id in [h.item_id for h in found.hits], word
        checked += 1
    assert checked >= 3


def test_a_partly_typed_chinese_run_ends_in_the_start_of_a_catalogue_word():
    vocabulary, doc_freq, matching = documents_of(["步履 露营帐篷", "北境 露营帐篷", "峰顶 帐篷"])
    assert words("露营帐") == ["露", "营帐"]  # jieba's cut, unlike the whole run's
    assert typed_words("露营帐", vocabulary) == ["露营", "帐"]
    assert typed_words("步履露营帐", vocabulary) == ["步履", "露营", "帐"]
    assert typed_words("露营帐篷", vocabulary) == words("露营帐篷")  # a whole run: jieba's cut
    assert typed_words("tent 露营", vocabulary) == ["tent", "露营"]
    plan = plan_query("露营帐", vocabulary, doc_freq, {}, SETTINGS, True, matching)
    assert plan.completion == "帐篷" and plan.read_terms == ["露营", "帐篷"]
    whole = plan_query("露营帐", vocabulary, doc_freq, {}, SETTINGS, False, matching)
    assert whole.words == ["露", "营帐"]  # a query ended by a space is not being typed


def test_partly_typed_chinese_queries_find_the_whole_querys_first_hit(engine, store):
    checked = 0
    chinese = store.items["title"][store.items["attributes"].str.contains('"zh"')]
    for title in chinese.head(40):
        run = title.split()[1]
        if len(run) < 4:
            continue
        clean = engine.search(run, per_page=1).hits
        found = engine.search(run[:-1], per_page=3)
        assert clean and found.hits, run
        assert clean[0].item_id in [h.item_id for h in found.hits], run
        checked += 1
    assert checked >= 5


def test_a_completion_or_correction_is_read_with_the_other_words():
    titles = ["Voltix fast charger"] * 2 + ["Chayuan green tea", "Chayuan black tea"] * 3
    titles += ["Pulse camping tent", "Summit camping tent", "how to use", "use it"]
    titles += ["Harvest spaghetti", "chef knife", "Quill bestselling cookbook"]
    vocabulary, doc_freq, matching = documents_of(titles)
    assert vocabulary.completions("cha", 2) == ["chayuan", "charger"]

    def plan(query: str, with_context: bool = True):
        context = matching if with_context else None
        return plan_query(query, vocabulary, doc_freq, {}, SETTINGS, True, context)

    assert plan("fast cha").completion == "charger"
    assert plan("fast cha", with_context=False).completion == "chayuan"
    assert plan("cha").completion == "chayuan"  # no other word: the most frequent
    assert plan("ulse camping tent").corrections == {"ulse": "pulse"}
    assert plan("ulse camping tent", with_context=False).corrections == {"ulse": "use"}
    no_guess = plan("spaghetti chea")  # no item has chef with spaghetti
    assert no_guess.corrections == {} and no_guess.did_you_mean is None
    assert dict(no_guess.terms)["chef"] < 1.0  # still searched, below the word that matched
    assert plan("chea").corrections == {"chea": "chef"}
    assert plan("fast chargr bes").corrections == {"chargr": "charger"}  # "bes" is no context


def test_a_whole_last_word_that_does_not_go_with_the_others_is_read_as_a_completion():
    titles = ["光润 维C面膜", "光润 有机面膜", "光润 保湿面霜", "丰收 意大利面", "茶园 意大利面"]
    vocabulary, doc_freq, matching = documents_of(titles)
    assert "面" in vocabulary and vocabulary.completions("面", 3)[0] == "面"

    def plan(query: str):
        return plan_query(query, vocabulary, doc_freq, {}, SETTINGS, True, matching)

    assert plan("光润面").completion == "面膜"
    assert plan("丰收面").completion is None  # the word goes with the brand: itself
    assert plan("面").completion is None  # no other word: the word itself


def test_the_engine_reads_a_partial_word_with_the_others(engine, store):
    """Every completion the engine reads for a query's partial last word goes
    with the query's other words in some item."""
    checked = 0
    for title in store.items["title"].head(200):
        *head, last = title.lower().split()[:3]
        if len(last) < 5 or not (last.isascii() and last.isalpha()):
            continue
        plan = engine.analyze(" ".join([*head, last[:3]]))
        if plan.completion is None:
            continue
        together = [[stem(w)] for w in plan.words[:-1]] + [[stem(plan.completion)]]
        assert engine.lexical.matching(together, len(together)) > 0, (title, plan.completion)
        checked += 1
    assert checked >= 10
